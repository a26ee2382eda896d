# Reference values from R metafor 3.8-1 for influence diagnostics, leave-one-out and cumulative meta-analysis.
# Usage: Rscript metafor_influence.R OUTDIR   (OUTDIR = tests/reference)
# Reads OUTDIR/data/{bcg,assink2016,konstantopoulos2011}.csv; writes OUTDIR/metafor_influence.json.
# - bcg: rma(yi, vi) by REML with a tightened control; leave1out(), influence() (with dfbetas), cumul() by year.
# - assink2016: rma.mv(yi, vi, random = ~ 1 | study/esid) by REML. nlminb's default stopping rule leaves sigma2
#   errors up to ~1e-6 relative, so the full fit and every leave-one-study-out refit are polished as in
#   metafor_model_queries.R (Newton steps on log(sigma2), central-difference gradients, then sigma2 held at the
#   polished values); Cook's distances are cooks.distance.rma.mv's formula, (b - b(-c))' Vb^-1 (b - b(-c)), on those
#   refits; hatvalues(res) needs no refit.
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
UNI <- list(threshold = 1e-12, maxiter = 100000, tol = 1e-13, stepadj = 0.5)
args <- commandArgs(TRUE); out <- args[1]
rd <- function(f) read.csv(file.path(out, "data", paste0(f, ".csv")))
bcg <- rd("bcg"); as <- rd("assink2016")
num <- function(x) unname(as.numeric(x))

polish <- function(res, data) {
  ll <- function(x) as.numeric(logLik(rma.mv(yi, vi, random = ~ 1 | study/esid, data = data, sigma2 = exp(x))))
  grad <- function(x, h = 1e-3) sapply(seq_along(x), function(i) {
    e <- replace(0 * x, i, h)
    (8 * (ll(x + e) - ll(x - e)) - (ll(x + 2 * e) - ll(x - 2 * e))) / (12 * h)
  })
  x <- log(res$sigma2)
  for (it in 1:20) {
    g <- grad(x)
    H <- sapply(seq_along(x), function(i) { e <- replace(0 * x, i, 1e-2); (grad(x + e) - grad(x - e)) / 2e-2 })
    step <- solve((H + t(H)) / 2, g); x <- x - step
    if (max(abs(step)) < 1e-12) break
  }
  stopifnot(max(abs(grad(x))) < 1e-8)
  exp(x)
}
fit_mv <- function(data, init = NULL) {
  ctrl <- if (is.null(init)) list() else list(sigma2.init = init)
  res0 <- rma.mv(yi, vi, random = ~ 1 | study/esid, data = data, control = ctrl)
  rma.mv(yi, vi, random = ~ 1 | study/esid, data = data, sigma2 = polish(res0, data))
}

# --- univariate: bcg ---
uni <- rma(yi, vi, data = bcg, method = "REML", control = UNI)
l1 <- leave1out(uni)
inf <- influence(uni)
cu <- cumul(uni, order = bcg$year)
# cumul() names the p-values "pvals", leave1out() "pval"
tab <- function(x, cols) setNames(lapply(cols, function(c) num(if (is.null(x[[c]])) x[[paste0(c, "s")]] else x[[c]])),
                                  gsub("\\.", "_", cols))
uni_cols <- c("estimate", "se", "zval", "pval", "ci.lb", "ci.ub", "Q", "Qp", "tau2", "I2", "H2")
bcg_case <- list(
  r_call = "rma(yi, vi, data = bcg, method = 'REML', control = UNI); leave1out(res); influence(res); cumul(res, order = year)",
  fit = list(beta = num(uni$beta), tau2 = num(uni$tau2)),
  leave1out = tab(l1, uni_cols),
  influence = c(tab(inf$inf, c("rstudent", "dffits", "cook.d", "cov.r", "tau2.del", "QE.del", "hat", "weight")),
                list(dfbetas = num(inf$dfbs$intrcpt))),
  cumul = c(tab(cu, uni_cols), list(order = num(bcg$trial[order(bcg$year)]))))

# --- three-level: assink2016 ---
mv <- fit_mv(as)
studies <- unique(as$study)
svb <- chol2inv(chol(mv$vb))
l1mv <- lapply(studies, function(s) {
  d <- as[as$study != s, ]
  r <- fit_mv(d, init = mv$sigma2)
  dfb <- mv$beta - r$beta
  c(estimate = num(r$beta), se = r$se, zval = r$zval, pval = r$pval, ci_lb = r$ci.lb, ci_ub = r$ci.ub,
    Q = r$QE, Qp = r$QEp, sigma2_1 = r$sigma2[1], sigma2_2 = r$sigma2[2], cook_d = num(crossprod(dfb, svb) %*% dfb))
})
l1mv <- as.data.frame(do.call(rbind, l1mv))
mv_case <- list(
  r_call = "rma.mv(yi, vi, random = ~ 1 | study/esid, data = assink2016) polished; refits without each study; hatvalues(res)",
  fit = list(beta = num(mv$beta), sigma2 = num(mv$sigma2)),
  clusters = num(studies),
  leave1out = lapply(as.list(l1mv[, setdiff(names(l1mv), "cook_d")]), num),
  cooks_distance = num(l1mv$cook_d),
  cooks_distance_metafor = num(cooks.distance(mv, cluster = as$study)),
  hatvalues = num(hatvalues(mv)))
# --- multilevel rstudent, dfbetas, Cook's distances, hat values (by effect and by cluster) ---
# Every deleted fit (and the full fit) is REML with sigma2 polished by Newton on an exact dense restricted
# log-likelihood (analytic gradient, Hessian by central differences of it; k <= 100 here), then refitted by
# rma.mv with sigma2 fixed there. The diagnostics follow metafor:::.rstudent.rma.mv and .dfbetas.rma.mv:
# rstudent: resid = y_i - X_i b(-c), se = sqrt(diag(M[c, c] + X_c Vb(-c) X_c')), z = resid / se and (clusters)
#   X2 = resid' (M[c, c] + X_c Vb(-c) X_c')^-1 resid, k = rows in the cluster; M the full data's marginal
#   covariance at sigma2(-c);
# dfbetas: (b - b(-c)) / sqrt(diag(Vb)), Vb of the full data at sigma2(-c);
# cook_d: (b - b(-c))' Vb^-1 (b - b(-c)), Vb of the full fit.
# Clusters are listed in order of first appearance. metafor's own rstudent()/dfbetas() with nlminb's default
# stopping rule are printed beside them (agreement ~1e-5, the optimizer's tolerance).
reml_polish <- function(X, y, v, Z, start) {
  n <- length(y)
  parts <- function(s2) {
    V <- diag(v, n); for (j in seq_along(Z)) V <- V + s2[j] * Z[[j]]
    Vi <- chol2inv(chol(V)); XtVi <- crossprod(X, Vi)
    P <- Vi - t(XtVi) %*% solve(XtVi %*% X, XtVi)
    list(P = P, Py = P %*% y)
  }
  grad <- function(s2) { q <- parts(s2); sapply(Z, function(Zj) -0.5 * (sum(q$P * Zj) - c(crossprod(q$Py, Zj %*% q$Py)))) }
  s2 <- start
  for (it in 1:100) {
    g <- grad(s2)
    free <- !(s2 <= 0 & g < 0)
    if (!any(free)) break
    H <- sapply(seq_along(s2), function(j) { h <- 1e-6 * max(s2[j], 1e-4); e <- replace(0 * s2, j, h)
      (grad(s2 + e) - grad(s2 - e)) / (2 * h) })
    H <- (H + t(H)) / 2
    step <- rep(0, length(s2)); step[free] <- -solve(H[free, free, drop = FALSE], g[free])
    s2 <- pmax(s2 + step, 0)
    if (max(abs(step) / (1 + s2)) < 1e-14) break
  }
  g <- grad(s2); stopifnot(all(abs(g[s2 > 0]) < 1e-7), all(g[s2 <= 0] <= 1e-7))
  s2
}
ml_case <- function(data, outer, inner, mods = NULL) {
  random <- as.formula(paste("~ 1 |", outer, "/", inner))
  mf <- if (is.null(mods)) ~ 1 else as.formula(paste("~", mods))
  X <- model.matrix(mf, data)
  zs <- function(d) { a <- d[[outer]]; b <- paste(a, d[[inner]], sep = "/")
    list(outer(a, a, "==") * 1, outer(b, b, "==") * 1) }
  fit_fixed <- function(d, s2) rma.mv(yi, vi, mods = mf, random = random, data = d, sigma2 = s2)
  fit <- function(d, start) {
    ctrl <- if (is.null(start)) list() else list(sigma2.init = start)
    init <- rma.mv(yi, vi, mods = mf, random = random, data = d, control = ctrl)$sigma2
    fit_fixed(d, reml_polish(model.matrix(mf, d), d$yi, d$vi, zs(d), init))
  }
  full <- fit(data, NULL)
  svb <- chol2inv(chol(full$vb))
  deletion <- function(drop) {
    r <- fit(data[!drop, ], full$sigma2)
    tmp <- fit_fixed(data, r$sigma2)
    Xc <- X[drop, , drop = FALSE]
    resid <- c(data$yi[drop] - Xc %*% r$beta)
    S <- tmp$M[drop, drop, drop = FALSE] + Xc %*% r$vb %*% t(Xc)
    dfb <- c(full$beta - r$beta)
    list(resid = resid, se = sqrt(diag(S)), X2 = c(crossprod(resid, solve(S, resid))), k = sum(drop),
         dfbetas = dfb / sqrt(diag(tmp$vb)), cook_d = c(crossprod(dfb, svb) %*% dfb), sigma2 = r$sigma2)
  }
  collect <- function(dels, cluster) {
    out <- list(resid = num(unlist(lapply(dels, `[[`, "resid"))), se = num(unlist(lapply(dels, `[[`, "se"))))
    out$z <- out$resid / out$se
    if (cluster) { out$X2 <- num(sapply(dels, `[[`, "X2")); out$k <- num(sapply(dels, `[[`, "k")) }
    dfbs <- do.call(rbind, lapply(dels, `[[`, "dfbetas"))
    out$dfbetas <- setNames(lapply(seq_len(ncol(X)), function(j) num(dfbs[, j])), colnames(X))
    out$cook_d <- num(sapply(dels, `[[`, "cook_d"))
    s2 <- do.call(rbind, lapply(dels, `[[`, "sigma2"))
    out$sigma2_1 <- num(s2[, 1]); out$sigma2_2 <- num(s2[, 2])
    out
  }
  ids <- unique(data[[outer]])
  by_effect <- collect(lapply(seq_len(nrow(data)), function(i) deletion(seq_len(nrow(data)) == i)), FALSE)
  by_cluster <- collect(lapply(ids, function(s) deletion(data[[outer]] == s)), TRUE)
  # the same rows in data order (clusters are contiguous in these data sets)
  stopifnot(identical(unlist(lapply(ids, function(s) which(data[[outer]] == s))), seq_len(nrow(data))))
  # metafor's own functions (default optimizer tolerance), printed as a check of the formulas
  mf0 <- rma.mv(yi, vi, mods = mf, random = random, data = data)
  rs <- rstudent(mf0, cluster = data[[outer]])
  x2 <- rs$cluster$X2[match(ids, rs$cluster$slab)]
  db <- dfbetas(mf0, cluster = data[[outer]])[as.character(ids), , drop = FALSE]
  cat(sprintf("%s %s: max rel. diff. to metafor's rstudent z %.1e, X2 %.1e, dfbetas %.1e\n", outer, mods %||% "",
              max(abs(rs$obs$z / by_cluster$z - 1)), max(abs(x2 / by_cluster$X2 - 1)),
              max(abs(as.matrix(db) / do.call(cbind, by_cluster$dfbetas) - 1))))
  list(r_call = paste0("rma.mv(yi, vi, mods = ", deparse(mf), ", random = ", deparse(random), ") by REML, polished"),
       cluster = outer, within = inner, mods = mods, clusters = num(ids),
       fit = list(beta = num(full$beta), sigma2 = num(full$sigma2)),
       hat = num(hatvalues(full)), by_effect = by_effect, by_cluster = by_cluster)
}
`%||%` <- function(a, b) if (is.null(a)) b else a
kon <- rd("konstantopoulos2011")
multilevel <- list(
  assink2016 = ml_case(as, "study", "esid"),
  assink2016_year = ml_case(as, "study", "esid", mods = "year"),
  konstantopoulos2011 = ml_case(kon, "district", "school"))
write_json(list(bcg = bcg_case, assink2016 = mv_case, multilevel = multilevel),
           file.path(out, "metafor_influence.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
