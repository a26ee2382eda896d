# Reference values from R metafor 3.8-1 for influence diagnostics, leave-one-out and cumulative meta-analysis.
# Usage: Rscript metafor_influence.R OUTDIR   (OUTDIR = tests/reference)
# Reads OUTDIR/data/{bcg,assink2016}.csv; writes OUTDIR/metafor_influence.json.
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
write_json(list(bcg = bcg_case, assink2016 = mv_case), file.path(out, "metafor_influence.json"), digits = NA,
           auto_unbox = TRUE, pretty = TRUE)
