# Reference values from R metafor 3.8-1 for small-study effects and publication bias: regtest (every predictor,
# models "rma" and "lm"), ranktest, trimfill (L0/R0, each side) and the step-function selection model (selmodel).
# Usage: Rscript metafor_bias.R OUTDIR   (OUTDIR = tests/reference)
# Writes OUTDIR/data/bias_*.csv (metadat data sets with yi/vi) and OUTDIR/metafor_bias.json. Every case names its
# data file, the model the Python side refits (`model`), the call's options and metafor's answer (`result`).
# Tight convergence: rma.uni as in metafor_reference.R; selmodel's optim (BFGS) with reltol 1e-15, checked against
# nlminb from several starting values (the case stops if the two optima disagree).
suppressPackageStartupMessages({library(metafor); library(metadat); library(clubSandwich); library(jsonlite)})
UNI <- list(threshold = 1e-12, maxiter = 100000, tol = 1e-13, stepadj = 0.5)
args <- commandArgs(TRUE); out <- args[1]
dir.create(file.path(out, "data"), recursive = TRUE, showWarnings = FALSE)
num <- function(x) unname(as.numeric(x))
write_data <- function(data, name) {
  write.csv(data, file.path(out, "data", paste0("bias_", name, ".csv")), row.names = FALSE)
  paste0("data/bias_", name, ".csv")
}

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bcg <- as.data.frame(bcg); bcg$yi <- num(bcg$yi); bcg$vi <- num(bcg$vi)
bcg$ni <- with(bcg, tpos + tneg + cpos + cneg)
hs <- as.data.frame(dat.hackshaw1998); hs$yi <- num(hs$yi); hs$vi <- num(hs$vi)
ml <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
ml <- as.data.frame(ml); ml$yi <- num(ml$yi); ml$vi <- num(ml$vi)
as <- dat.assink2016
sets <- list(bcg = list(data = bcg, file = write_data(bcg, "bcg"), ni = "ni"),
             hackshaw1998 = list(data = hs, file = write_data(hs, "hackshaw1998"), ni = NULL),
             molloy2014 = list(data = ml, file = write_data(ml, "molloy2014"), ni = "ni"),
             assink2016 = list(data = as, file = write_data(as, "assink2016"), ni = NULL))

fit <- function(set, method = "REML", mods = NULL, test = "z") {
  d <- sets[[set]]$data
  if (is.null(mods)) rma(yi, vi, data = d, method = method, test = test, control = UNI)
  else rma(yi, vi, mods = as.formula(paste("~", paste(mods, collapse = " + "))), data = d, method = method,
           test = test, control = UNI)
}
spec <- function(set, method = "REML", mods = NULL, test = "z")
  list(data = sets[[set]]$file, yi = "yi", vi = "vi", method = method, mods = if (is.null(mods)) list() else as.list(mods),
       test = test)

# --- regtest -----------------------------------------------------------------------------------------------------
regtest_cases <- list()
add_regtest <- function(name, set, method = "REML", mods = NULL, test = "z", predictor = "sei", model = "rma") {
  res <- fit(set, method, mods, test)
  ni <- if (is.null(sets[[set]]$ni)) NULL else sets[[set]]$data[[sets[[set]]$ni]]
  r <- if (is.null(ni)) regtest(res, model = model, predictor = predictor)
       else regtest(res, model = model, predictor = predictor, ni = ni)
  f <- r$fit
  slope <- if (model == "rma") list(estimate = num(f$beta)[res$p + 1], se = num(f$se)[res$p + 1])
           else { cf <- coef(summary(f)); list(estimate = num(cf[res$p + 1, 1]), se = num(cf[res$p + 1, 2])) }
  out <- list(zval = num(r$zval), pval = num(r$pval), ddf = if (is.null(r$ddf) || is.na(r$ddf)) NULL else num(r$ddf),
              slope = slope)
  if (!is.null(r$est)) out$limit <- list(estimate = num(r$est), ci_lb = num(r$ci.lb), ci_ub = num(r$ci.ub))
  if (model == "rma") out$tau2 <- num(f$tau2)
  regtest_cases[[name]] <<- list(case = name, model = spec(set, method, mods, test),
                                 options = list(predictor = predictor, model = model, ni = sets[[set]]$ni), result = out)
}
for (model in c("rma", "lm")) {
  for (pred in c("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")) {
    add_regtest(paste("bcg", model, pred, sep = "_"), "bcg", predictor = pred, model = model)
    add_regtest(paste("molloy2014", model, pred, sep = "_"), "molloy2014", predictor = pred, model = model)
  }
  for (pred in c("sei", "vi")) add_regtest(paste("hackshaw1998", model, pred, sep = "_"), "hackshaw1998", predictor = pred, model = model)
}
for (m in c("EE", "DL", "ML", "PM")) add_regtest(paste0("bcg_rma_sei_", tolower(m)), "bcg", method = m)
add_regtest("bcg_rma_sei_knha", "bcg", test = "knha")
add_regtest("bcg_rma_sei_ablat", "bcg", mods = "ablat")
add_regtest("bcg_lm_sei_ablat", "bcg", mods = "ablat", model = "lm")
add_regtest("hackshaw1998_rma_sei_dl", "hackshaw1998", method = "DL")

# multilevel Egger-type test: the predictor added to the three-level model, model-based and CR2 (clubSandwich)
mv <- rma.mv(yi, vi, mods = ~ sqrt(vi), random = ~ 1 | study/esid, data = as)
rb <- robust(mv, cluster = as$study, clubSandwich = TRUE)
multilevel <- list(case = "assink2016_3level_sei", model = list(data = sets$assink2016$file, yi = "yi", vi = "vi",
                   cluster = "study", within = "esid", method = "REML", mods = list(), test = "z"),
                   options = list(predictor = "sei", robust = "study"),
                   result = list(zval = num(mv$zval[2]), pval = num(mv$pval[2]), slope = num(mv$beta[2]),
                                 sigma2 = num(mv$sigma2), robust = list(tval = num(rb$zval[2]), df = num(rb$ddf[2]),
                                                                        pval = num(rb$pval[2]), se = num(rb$se[2]))))

# --- ranktest ----------------------------------------------------------------------------------------------------
ranktest_cases <- list()
for (set in c("bcg", "hackshaw1998", "molloy2014")) {
  r <- ranktest(fit(set))
  d <- sets[[set]]$data
  ranktest_cases[[set]] <- list(case = set, model = spec(set), result = list(tau = num(r$tau), pval = num(r$pval),
                                ties = length(unique(d$vi)) < nrow(d)))
}

# --- trimfill ----------------------------------------------------------------------------------------------------
trimfill_cases <- list()
for (set in c("bcg", "hackshaw1998", "molloy2014")) for (method in c("REML", "EE", "DL")) for (est in c("L0", "R0"))
  for (side in c("auto", "left", "right")) {
    res <- fit(set, method)
    tf <- if (side == "auto") trimfill(res, estimator = est, control = UNI)
          else trimfill(res, estimator = est, side = side, control = UNI)
    name <- paste(set, tolower(method), est, side, sep = "_")
    trimfill_cases[[name]] <- list(case = name, model = spec(set, method), options = list(estimator = est, side = side),
      result = list(k0 = num(tf$k0), se_k0 = num(tf$se.k0), side = tf$side, p_k0 = if (is.na(tf$p.k0)) NULL else num(tf$p.k0),
                    beta = num(tf$beta), se = num(tf$se), ci_lb = num(tf$ci.lb), ci_ub = num(tf$ci.ub),
                    pval = num(tf$pval), tau2 = num(tf$tau2), k = tf$k, yi = num(tf$yi), vi = num(tf$vi), fill = tf$fill))
  }

# --- selmodel ----------------------------------------------------------------------------------------------------
selmodel_cases <- list()
# metafor's optim/nlminb runs use finite-difference gradients and stop ~1e-5 (relative) short of the maximum.
# polish() takes Newton steps on metafor's own log-likelihood (.selmodel.ll.stepfun, untransformed parameters),
# with Richardson-extrapolated numDeriv gradients and Hessians, from selmodel's estimate until the gradient is
# ~1e-10; every reported value (estimates, logLik, LRTs, SEs from the inverse Hessian as in selmodel) is then
# evaluated at the polished optimum with metafor's code. The case stops if polishing lowers the likelihood.
sel_ll <- function(sel, X, tau2.val) {
  function(par) metafor:::.selmodel.ll.stepfun(par = par, yi = c(sel$yi), vi = sel$vi, X = X, preci = rep(1, sel$k),
    k = sel$k, pX = ncol(X), pvals = sel$pvals, deltas = sel$deltas, delta.val = c(1, rep(NA, sel$deltas - 1)),
    delta.transf = FALSE, mapfun = rep(NA, sel$deltas), delta.min = sel$delta.min, delta.max = sel$delta.max,
    tau2.val = tau2.val, tau2.transf = FALSE, tau2.max = Inf, beta.val = rep(NA, ncol(X)), wi.fun = sel$wi.fun,
    steps = sel$steps, pgrp = sel$pgrp, alternative = sel$alternative, pval.min = sel$pval.min, intCtrl = NULL,
    verbose = FALSE, digits = sel$digits)
}
polish <- function(f, par, free) {
  start <- f(par)
  for (i in 1:100) {
    g <- numDeriv::grad(f, par)[free]
    if (max(abs(g)) < 1e-10) break
    H <- numDeriv::hessian(f, par)[free, free, drop = FALSE]
    step <- solve(H, g); t <- 1
    repeat { trial <- par; trial[free] <- par[free] - t * step
             ft <- f(trial); if ((is.finite(ft) && ft <= f(par) + 1e-14 * abs(f(par))) || t < 1e-8) break; t <- t / 2 }
    if (!is.finite(ft) || ft > f(par) + 1e-14 * abs(f(par))) break
    par <- trial
  }
  if (f(par) > start + 1e-12) stop("polishing lowered the likelihood")
  list(par = par, gradient = max(abs(numDeriv::grad(f, par)[free])))
}
add_selmodel <- function(name, set, method = "REML", mods = NULL, steps = 0.025, alternative = "greater") {
  res <- fit(set, method, mods)
  sel <- selmodel(res, type = "stepfun", steps = steps, alternative = alternative,
                  control = list(reltol = 1e-15, maxit = 100000))
  # a second optimiser from several starts: the reference must be the global optimum
  for (init in c(0.2, 1, 4)) {
    alt <- try(selmodel(res, type = "stepfun", steps = steps, alternative = alternative,
                        control = list(optimizer = "nlminb", delta.init = init, rel.tol = 1e-15, eval.max = 10000,
                                       iter.max = 10000)), silent = TRUE)
    if (!inherits(alt, "try-error") && alt$ll > sel$ll + 1e-8) stop(paste(name, ": optim did not find the optimum"))
  }
  X <- model.matrix(res); p <- ncol(X); tau2.fix <- method == "EE"
  f <- sel_ll(sel, X, if (tau2.fix) 0 else NA)
  free <- c(rep(TRUE, p), !tau2.fix, FALSE, rep(TRUE, sel$deltas - 1))
  pol <- polish(f, c(num(sel$beta), sel$tau2, num(sel$delta)), free)
  par <- pol$par; ll <- -f(par)
  V <- solve(numDeriv::hessian(f, par, method.args = list(r = 6))[free, free, drop = FALSE])
  se <- sqrt(diag(V)); crit <- qnorm(0.975)
  beta <- par[1:p]; delta <- par[(p + 2):(p + 1 + sel$deltas)]
  se_beta <- se[1:p]; se_tau2 <- if (tau2.fix) NULL else se[p + 1]; se_delta <- c(NA, tail(se, sel$deltas - 1))
  LRT <- max(0, -2 * (sel$ll0 - ll)); LRTp <- pchisq(LRT, df = sel$LRTdf, lower.tail = FALSE)
  out <- list(beta = beta, se = se_beta, zval = beta / se_beta, pval = 2 * pnorm(-abs(beta / se_beta)),
              ci_lb = beta - crit * se_beta, ci_ub = beta + crit * se_beta, tau2 = par[p + 1], se_tau2 = se_tau2,
              delta = delta, se_delta = se_delta, ll = ll, ll0 = num(sel$ll0), LRT = LRT, LRTdf = num(sel$LRTdf),
              LRTp = LRTp, ptable = num(sel$ptable$k), parms = sel$parms, AIC = -2 * ll + 2 * sel$parms,
              gradient = pol$gradient, metafor_unpolished = list(beta = num(sel$beta), tau2 = num(sel$tau2),
              delta = num(sel$delta), ll = num(sel$ll), LRT = num(sel$LRT)))
  if (!tau2.fix) {
    f0 <- sel_ll(sel, X, 0)
    free0 <- c(rep(TRUE, p), FALSE, FALSE, rep(TRUE, sel$deltas - 1))
    pol0 <- polish(f0, c(beta, 0, delta), free0)
    out$LRT_tau2 <- max(0, 2 * (ll + f0(pol0$par)))
    out$LRTp_tau2 <- pchisq(out$LRT_tau2, df = 1, lower.tail = FALSE)
    if (!is.na(sel$LRT.tau2) && abs(out$LRT_tau2 - sel$LRT.tau2) > 1e-4 * max(1, sel$LRT.tau2)) stop(paste(name, ": LRT tau2"))
  }
  selmodel_cases[[name]] <<- list(case = name, model = spec(set, method, mods),
    options = list(steps = as.list(steps), alternative = alternative), result = out)
}
add_selmodel("bcg_reml_less", "bcg", alternative = "less")
add_selmodel("hackshaw1998_reml", "hackshaw1998")
add_selmodel("hackshaw1998_ee", "hackshaw1998", method = "EE")
add_selmodel("molloy2014_reml", "molloy2014")
add_selmodel("molloy2014_ml_two_steps", "molloy2014", method = "ML", steps = c(0.025, 0.5))
add_selmodel("bcg_reml_ablat", "bcg", mods = "ablat", alternative = "less")

cases <- list(regtest = regtest_cases, multilevel_regtest = list(multilevel), ranktest = ranktest_cases,
              trimfill = trimfill_cases, selmodel = selmodel_cases)
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(out, "metafor_bias.json"))
cat(sapply(cases, length), "cases\n")
