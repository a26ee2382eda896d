# Reference values from R metafor 3.8-1 and clubSandwich 0.5.8 for the correlated-and-hierarchical-effects
# (CHE) working model: sampling errors of the effects of one study correlate with a known rho.
# Usage: Rscript metafor_che.R OUTDIR   (OUTDIR = tests/reference)
# Reads OUTDIR/data/assink2016.csv (metadat's dat.assink2016, checked below); writes OUTDIR/metafor_che.json.
# - V <- vcalc(vi, cluster = study, obs = esid, rho = rho, data = dat)
#   (= clubSandwich::impute_covariance_matrix(vi, study, r = rho), checked);
#   rma.mv(yi, V, random = ~ 1 | study/esid, mods = , method = , sigma2 = ) at rho = 0.2 and 0.6, REML and ML,
#   without and with the moderator deltype; one CE model (sigma2 = c(NA, 0)).
# - nlminb's default stopping rule leaves sigma2 errors up to ~1e-6 relative, so every fit is polished as in
#   metafor_influence.R (Newton steps on log(sigma2) with central-difference gradients, then the fit is redone with
#   sigma2 held at the polished values; AIC counts the estimated components of the unconstrained fit).
# - clubSandwich: coef_test(fit, vcov = "CR2", cluster = study) and, with the moderator,
#   Wald_test(fit, constraints = constrain_zero(2:3), vcov = "CR2", test = "HTZ").
# - predict() at one moderator value, ranef() of the first case, QE, and I2 by the formula of the metafor web site
#   for multilevel models (W = solve(V), the sampling covariance).
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
args <- commandArgs(TRUE); out <- args[1]
dat <- read.csv(file.path(out, "data", "assink2016.csv"))
stopifnot(isTRUE(all.equal(dat$yi, metadat::dat.assink2016$yi)), isTRUE(all.equal(dat$vi, metadat::dat.assink2016$vi)),
          isTRUE(all.equal(dat$study, metadat::dat.assink2016$study)))
num <- function(x) unname(as.numeric(x))

fit_che <- function(V, mods, method, sigma2) {
  if (is.null(mods)) {
    rma.mv(yi, V, random = ~ 1 | study/esid, data = dat, method = method, sigma2 = sigma2)
  } else {
    rma.mv(yi, V, mods = mods, random = ~ 1 | study/esid, data = dat, method = method, sigma2 = sigma2)
  }
}

polish <- function(res, V, mods, method, sigma2) {
  free <- is.na(sigma2)
  full <- function(x) { s <- sigma2; s[free] <- exp(x); s }
  ll <- function(x) as.numeric(logLik(fit_che(V, mods, method, full(x))))
  grad <- function(x, h = 1e-3) sapply(seq_along(x), function(i) {
    e <- replace(0 * x, i, h)
    (8 * (ll(x + e) - ll(x - e)) - (ll(x + 2 * e) - ll(x - 2 * e))) / (12 * h)
  })
  x <- log(res$sigma2[free])
  for (it in 1:20) {
    g <- grad(x)
    H <- sapply(seq_along(x), function(i) { e <- replace(0 * x, i, 1e-2); (grad(x + e) - grad(x - e)) / 2e-2 })
    H <- matrix(H, length(x))
    step <- solve((H + t(H)) / 2, g); x <- x - step
    if (max(abs(step)) < 1e-12) break
  }
  stopifnot(max(abs(grad(x))) < 1e-8)
  full(x)
}

case <- function(rho, method, mods = NULL, sigma2 = c(NA, NA), newmods = NULL) {
  V <- vcalc(vi, cluster = study, obs = esid, rho = rho, data = dat)
  V2 <- impute_covariance_matrix(dat$vi, cluster = dat$study, r = rho, return_list = FALSE)
  stopifnot(max(abs(as.matrix(V) - as.matrix(V2))) < 1e-15)
  res0 <- fit_che(V, mods, method, sigma2)
  res <- fit_che(V, mods, method, polish(res0, V, mods, method, sigma2))
  n_par <- res0$parms
  ct <- coef_test(res, vcov = "CR2", cluster = dat$study)
  W <- solve(V)
  X <- model.matrix(res)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  typical <- (res$k - res$p) / sum(diag(P))
  pr <- if (is.null(newmods)) predict(res) else predict(res, newmods = newmods)
  out <- list(
    rho = rho, method = method, mods = if (is.null(mods)) NULL else deparse(mods),
    sigma2_fixed = !is.na(sigma2),
    r_call = paste0("rma.mv(yi, vcalc(vi, cluster = study, obs = esid, rho = ", rho, "), random = ~ 1 | study/esid",
                    if (is.null(mods)) "" else paste0(", mods = ", deparse(mods)), ", method = '", method, "'",
                    if (any(!is.na(sigma2))) ", sigma2 = c(NA, 0)" else "", ")"),
    coef_names = I(rownames(res$beta)),
    b = num(res$beta), se = num(res$se), zval = num(res$zval), pval = num(res$pval),
    ci_lb = num(res$ci.lb), ci_ub = num(res$ci.ub),
    sigma2 = num(res$sigma2), logLik = as.numeric(logLik(res)),
    AIC = -2 * as.numeric(logLik(res)) + 2 * n_par,
    QE = num(res$QE), QEp = num(res$QEp),
    I2 = 100 * sum(res$sigma2) / (sum(res$sigma2) + typical), typical_v = typical,
    cr2 = list(se = num(ct$SE), df = num(ct$df_Satt), pval = num(ct$p_Satt), tstat = num(ct$tstat)),
    predict = list(newmods = if (is.null(newmods)) NULL else num(newmods),
                   pred = num(pr$pred), se = num(pr$se), ci_lb = num(pr$ci.lb), ci_ub = num(pr$ci.ub),
                   pi_lb = num(pr$pi.lb), pi_ub = num(pr$pi.ub)),
    V_study1 = unname(as.matrix(V)[dat$study == 1, dat$study == 1])
  )
  if (!is.null(mods)) {
    wt <- Wald_test(res, constraints = constrain_zero(2:3), vcov = "CR2", test = "HTZ", cluster = dat$study)
    out$wald_htz <- list(Fstat = num(wt$Fstat), df_num = num(wt$df_num), df_denom = num(wt$df_denom),
                         pval = num(wt$p_val))
  }
  out
}

cases <- list()
for (rho in c(0.2, 0.6)) for (method in c("REML", "ML")) {
  cases[[sprintf("rho%s-%s", rho, method)]] <- case(rho, method)
  cases[[sprintf("rho%s-%s-deltype", rho, method)]] <- case(rho, method, mods = ~ deltype, newmods = c(1, 0))
}
cases[["rho0.6-REML-CE"]] <- case(0.6, "REML", sigma2 = c(NA, 0))
# ranef() of the first case
V <- vcalc(vi, cluster = study, obs = esid, rho = 0.2, data = dat)
res <- rma.mv(yi, V, random = ~ 1 | study/esid, data = dat, sigma2 = cases[["rho0.2-REML"]]$sigma2)
re <- ranef(res)
cases[["rho0.2-REML"]]$ranef <- list(
  study = list(label = rownames(re$study), intrcpt = num(re$study$intrcpt), se = num(re$study$se)),
  esid = list(label = rownames(re$`study/esid`), intrcpt = num(re$`study/esid`$intrcpt),
              se = num(re$`study/esid`$se)))
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")),
                       clubSandwich = as.character(packageVersion("clubSandwich")),
                       cases = cases), digits = NA, auto_unbox = TRUE, null = "null"),
           file.path(out, "metafor_che.json"))
