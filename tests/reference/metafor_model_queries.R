# Reference values from R metafor 3.8-1 / clubSandwich 0.5.8 for model queries: formula moderators
# (factors, interactions, I(), no intercept), predict(), fitted()/blup()/ranef(), Wald tests (anova btt/X),
# likelihood-ratio tests, heterogeneity CIs and SEs, pseudo-R2, and clubSandwich CR2 Wald tests (HTZ).
# Usage: Rscript metafor_model_queries.R OUTDIR   (OUTDIR = tests/reference)
# Reads the existing OUTDIR/data/{bcg,assink2016,konstantopoulos2011}.csv (written by metafor_reference.R), so R and
# Python fit identical numbers; writes OUTDIR/metafor_model_queries.json. Every case: `model` (spec the Python side
# replays; `mods` in Python formula syntax), `r_call`, `query` (what to ask the fitted model), `fit` (the model's
# coefficients, variance components, fit statistics) and `result` (the query's answer).
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
UNI <- list(threshold = 1e-12, maxiter = 100000, tol = 1e-13, stepadj = 0.5)
args <- commandArgs(TRUE); out <- args[1]
rd <- function(f) read.csv(file.path(out, "data", paste0(f, ".csv")))
bcg <- rd("bcg"); as <- rd("assink2016"); kd <- rd("konstantopoulos2011")
num <- function(x) unname(as.numeric(x))

# rma.mv: nlminb's default stopping rule (objective relative change 1e-10) leaves sigma2 errors up to ~1e-6 relative
# here (and the uncentred-year konstantopoulos model's log-likelihood is noisy at ~1e-11). polish() takes Newton steps
# on log(sigma2) with 4-point central-difference gradients of the log-likelihood, evaluated on an orthonormal basis of
# the moderator matrix (same ML/REML optimum, well conditioned), to a gradient of ~1e-10. The model is then refitted
# from the polished values; if nlminb still drifts away (> 1e-9 relative), sigma2 is fixed at the polished values for
# everything that depends on it, and fit statistics / parameter counts come from the free refit (they are
# second-order in the sigma2 error).
polish <- function(res, data, random, method) {
  Q <- qr.Q(qr(model.matrix(res))); free <- !res$vc.fix$sigma2
  full <- function(x) { s <- res$sigma2; s[free] <- exp(x); s }
  ll <- function(x) as.numeric(logLik(rma.mv(yi, vi, mods = Q, intercept = FALSE, random = random, data = data,
                                             method = method, sigma2 = full(x))))
  grad <- function(x, h = 1e-3) sapply(seq_along(x), function(i) {
    e <- replace(0 * x, i, h)
    (8 * (ll(x + e) - ll(x - e)) - (ll(x + 2 * e) - ll(x - 2 * e))) / (12 * h)
  })
  x <- log(res$sigma2[free])
  for (it in 1:20) {
    g <- grad(x)
    H <- sapply(seq_along(x), function(i) { e <- replace(0 * x, i, 1e-2); (grad(x + e) - grad(x - e)) / 2e-2 })
    step <- solve((H + t(H)) / 2, g); x <- x - step
    if (max(abs(step)) < 1e-12) break
  }
  stopifnot(max(abs(grad(x))) < 1e-8)
  full(x)
}
fit_mv <- function(data, mods, random, method = "REML", test = "z", sigma2 = NA, cvvc = FALSE) {
  if (is.null(mods)) mods <- ~ 1
  res0 <- rma.mv(yi, vi, mods = mods, random = random, data = data, method = method, test = test, sigma2 = sigma2)
  s2 <- polish(res0, data, random, method)
  res <- rma.mv(yi, vi, mods = mods, random = random, data = data, method = method, test = test, sigma2 = sigma2,
                cvvc = cvvc, control = list(sigma2.init = ifelse(res0$vc.fix$sigma2, 1, s2)))
  if (max(abs(res$sigma2 / s2 - 1), na.rm = TRUE) <= 1e-9) return(res)
  fixed <- rma.mv(yi, vi, mods = mods, random = random, data = data, method = method, test = test, sigma2 = s2)
  attr(fixed, "free_fit") <- res
  fixed
}
free_fit <- function(res) if (is.null(attr(res, "free_fit"))) res else attr(res, "free_fit")

py_names <- function(x) gsub("factor\\((\\w+)\\)", "\\1", x)  # Python: C(alloc)random -> allocrandom, like alloc
summ <- function(res) {
  fs <- fitstats(free_fit(res))
  o <- list(coef_names = I(py_names(rownames(res$beta))), r_coef_names = I(rownames(res$beta)), beta = num(res$beta),
            se = num(res$se), stat = num(res$zval), pval = num(res$pval), ci_lb = num(res$ci.lb), ci_ub = num(res$ci.ub))
  if (res$test != "z") o$df <- rep(num(res$ddf), length.out = res$p)  # rma.uni stores one ddf, rma.mv one per coefficient
  o$variance <- if (inherits(res, "rma.mv")) num(res$sigma2) else num(res$tau2)
  o$logLik <- num(fs["logLik:", ]); o$AIC <- num(fs["AIC:", ]); o$BIC <- num(fs["BIC:", ]); o$AICc <- num(fs["AICc:", ])
  if (res$p > 1 || !res$int.incl) { o$QM <- num(res$QM); o$QMp <- num(res$QMp); o$QMdf <- num(res$QMdf) }
  o
}
spec <- function(data, mods = NULL, method = "REML", test = "z", level = 95, sigma2_fixed = NULL, variance_ci = FALSE) {
  nested <- list(assink2016 = c("study", "esid"), konstantopoulos2011 = c("district", "school"))[[data]]
  list(data = paste0("data/", data, ".csv"), kind = if (is.null(nested)) "univariate" else "three_level",
       yi = "yi", vi = "vi", cluster = nested[1], within = nested[2], method = method, test = test, level = level,
       mods = mods, sigma2_fixed = sigma2_fixed, variance_ci = variance_ci)
}
cases <- list()
add <- function(name, model, r_call, res, query, result = setNames(list(), character(0))) {
  if (!is.null(attr(res, "free_fit"))) message(name, ": sigma2 fixed at the polished values")
  cases[[name]] <<- list(case = name, model = model, r_call = r_call, query = query, fit = summ(res), result = result)
}
pred_list <- function(p) {
  o <- list(pred = num(p$pred), se = num(p$se), ci_lb = num(p$ci.lb), ci_ub = num(p$ci.ub), pi_lb = num(p$pi.lb),
            pi_ub = num(p$pi.ub))
  if (isTRUE(p$transf)) o$se <- NULL  # metafor: se = NA once transformed
  o
}
wald_list <- function(a) {
  o <- list(statistic = num(a$QM), df1 = num(a$QMdf[1]), df2 = if (is.na(a$QMdf[2])) NULL else num(a$QMdf[2]),
            pval = num(a$QMp))
  if (!is.null(a$hyp)) o$contrasts <- list(hypothesis = a$hyp[[1]], estimate = num(a$Xb), se = num(a$se),
                                           stat = num(a$zval), pval = num(a$pval))
  o
}
club <- function(res, constraints, cluster) {
  w <- Wald_test(res, constraints = constraints, vcov = "CR2", cluster = cluster, test = c("HTZ", "Naive-F", "chi-sq"))
  setNames(lapply(seq_len(nrow(w)), function(i) {
    chisq <- w$test[i] == "chi-sq"
    # clubSandwich reports chi-sq as Fstat = Q / q with df_denom = Inf; `statistic` is Q itself (metafor's QM scale)
    list(Fstat = w$Fstat[i], delta = w$delta[i], df_num = num(w$df_num[i]),
         df_denom = if (chisq) NULL else w$df_denom[i], p_val = w$p_val[i],
         statistic = if (chisq) w$Fstat[i] * w$df_num[i] else w$Fstat[i])
  }), w$test)
}
R3 <- ~ 1 | study/esid

# 1. ML moderator model that a naive optimiser stops at tau2 = 0 on (metafor: tau2 = 0.0329, logLik -6.9206)
for (m in c("ML", "REML")) {
  res <- rma(yi, vi, mods = ~ alloc + year + ablat, method = m, data = bcg, control = UNI)
  add(paste0("bcg_", tolower(m), "_alloc_year_ablat"), spec("bcg", "~ alloc + year + ablat", method = m),
      sprintf('rma(yi, vi, mods = ~ alloc + year + ablat, method = "%s", data = bcg, control = UNI)', m),
      res, list(type = "fit"))
}
# 2. Interactions (~ deltype * year on assink is rank deficient: metafor drops deltypeovert:year, so ~ pubstatus * year)
res <- rma(yi, vi, mods = ~ ablat * year, data = bcg, control = UNI)
add("bcg_reml_ablat_x_year", spec("bcg", "~ ablat * year"), "rma(yi, vi, mods = ~ ablat * year, data = bcg, control = UNI)",
    res, list(type = "fit"))
res <- fit_mv(as, ~ pubstatus * year, R3)
add("assink_reml_pubstatus_x_year", spec("assink2016", "~ pubstatus * year"),
    "rma.mv(yi, vi, mods = ~ pubstatus * year, random = ~ 1 | study/esid, data = assink)", res, list(type = "fit"))
# 3. Formula features
res <- rma(yi, vi, mods = ~ factor(alloc) + ablat, data = bcg, control = UNI)
add("bcg_reml_factor_alloc_ablat", spec("bcg", "~ C(alloc) + ablat"),
    "rma(yi, vi, mods = ~ factor(alloc) + ablat, data = bcg, control = UNI)", res, list(type = "fit"))
res <- rma(yi, vi, mods = ~ I(year - 1960) + ablat, data = bcg, control = UNI)
add("bcg_reml_I_year_ablat", spec("bcg", "~ I(year - 1960) + ablat"),
    "rma(yi, vi, mods = ~ I(year - 1960) + ablat, data = bcg, control = UNI)", res, list(type = "fit"))
res <- rma(yi, vi, mods = ~ alloc - 1, data = bcg, control = UNI)
add("bcg_reml_no_intercept_alloc", spec("bcg", "~ 0 + alloc"),
    "rma(yi, vi, mods = ~ alloc - 1, data = bcg, control = UNI)  # QM tests all 3 coefficients", res, list(type = "fit"))

# 4. predict()
res <- rma(yi, vi, mods = ~ ablat, data = bcg, control = UNI)
for (v in list(list("", NULL, NULL), list("_exp", exp, "exp"), list("_level90", NULL, NULL, 90))) {
  lev <- if (length(v) > 3) v[[4]] else 95
  p <- if (is.null(v[[2]])) predict(res, newmods = c(10, 30, 50), level = lev) else predict(res, newmods = c(10, 30, 50), transf = v[[2]])
  add(paste0("bcg_predict_ablat", v[[1]]), spec("bcg", "~ ablat"),
      sprintf("res <- rma(yi, vi, mods = ~ ablat, data = bcg, control = UNI); predict(res, newmods = c(10, 30, 50)%s%s)",
              if (is.null(v[[3]])) "" else ", transf = exp", if (lev == 95) "" else ", level = 90"),
      res, list(type = "predict", newmods = list(ablat = c(10, 30, 50)), transf = v[[3]], level = if (lev == 95) NULL else lev),
      pred_list(p))
}
res <- rma(yi, vi, data = bcg, control = UNI)
add("bcg_predict_intercept_exp", spec("bcg"), "predict(rma(yi, vi, data = bcg, control = UNI), transf = exp)",
    res, list(type = "predict", newmods = NULL, transf = "exp", level = NULL), pred_list(predict(res, transf = exp)))
res <- fit_mv(as, ~ year, R3)
add("assink_predict_year", spec("assink2016", "~ year"),
    "res <- rma.mv(yi, vi, mods = ~ year, random = ~ 1 | study/esid, data = assink); predict(res, newmods = c(2, 5, 8))",
    res, list(type = "predict", newmods = list(year = c(2, 5, 8)), transf = NULL, level = NULL),
    pred_list(predict(res, newmods = c(2, 5, 8))))
res3 <- fit_mv(as, NULL, R3)
add("assink_predict_intercept", spec("assink2016"),
    "predict(rma.mv(yi, vi, random = ~ 1 | study/esid, data = assink))  # pi with sigma2[1] + sigma2[2]",
    res3, list(type = "predict", newmods = NULL, transf = NULL, level = NULL), pred_list(predict(res3)))

# 5. fitted(), blup(), ranef()
res <- rma(yi, vi, data = bcg, control = UNI); b <- blup(res)
add("bcg_fitted_blup", spec("bcg"), "res <- rma(yi, vi, data = bcg, control = UNI); fitted(res); blup(res)", res,
    list(type = "fitted_blup"),
    list(fitted = num(fitted(res)), blup = list(pred = num(b$pred), se = num(b$se), pi_lb = num(b$pi.lb), pi_ub = num(b$pi.ub))))
re <- ranef(res3)
add("assink_ranef", spec("assink2016"),
    "res <- rma.mv(yi, vi, random = ~ 1 | study/esid, data = assink); ranef(res); fitted(res)", res3, list(type = "ranef"),
    list(fitted = num(fitted(res3)),
         ranef = unname(lapply(names(re), function(n) list(level = n, labels = rownames(re[[n]]), intrcpt = num(re[[n]]$intrcpt),
                                                          se = num(re[[n]]$se), pi_lb = num(re[[n]]$pi.lb), pi_ub = num(re[[n]]$pi.ub))))))

# 6. Wald tests (anova with btt / X)
for (t in c("z", "knha")) {
  res <- rma(yi, vi, mods = ~ alloc + ablat, data = bcg, test = t, control = UNI)
  add(paste0("bcg_wald_alloc_", t), spec("bcg", "~ alloc + ablat", test = t),
      sprintf('anova(rma(yi, vi, mods = ~ alloc + ablat, data = bcg, test = "%s", control = UNI), btt = 2:3)', t),
      res, list(type = "wald", terms = c("allocrandom", "allocsystematic")), wald_list(anova(res, btt = 2:3)))
}
res <- rma(yi, vi, mods = ~ alloc + ablat, data = bcg, control = UNI); L <- rbind(c(0, 1, -1, 0), c(0, 1, 0, 0))
add("bcg_wald_contrasts", spec("bcg", "~ alloc + ablat"),
    "anova(rma(yi, vi, mods = ~ alloc + ablat, data = bcg, control = UNI), X = rbind(c(0, 1, -1, 0), c(0, 1, 0, 0)))  # QMdf = c(2, NA)",
    res, list(type = "wald", L = L), wald_list(anova(res, X = L)))
res <- fit_mv(as, ~ deltype, R3, test = "t")
add("assink_wald_deltype_t", spec("assink2016", "~ deltype", test = "t"),
    'anova(rma.mv(yi, vi, mods = ~ deltype, random = ~ 1 | study/esid, data = assink, test = "t"), btt = 2:3)',
    res, list(type = "wald", terms = c("deltypegeneral", "deltypeovert")), wald_list(anova(res, btt = 2:3)))

# 7. Likelihood-ratio tests
lrt_list <- function(a, full, reduced) list(
  statistic = num(a$LRT), pval = num(a$pval), df_full = num(a$parms.f), df_reduced = num(a$parms.r),
  loglik_full = num(a$fit.stats.f["ll"]), loglik_reduced = num(a$fit.stats.r["ll"]),
  aic_full = num(a$fit.stats.f["AIC"]), aic_reduced = num(a$fit.stats.r["AIC"]),
  bic_full = num(a$fit.stats.f["BIC"]), bic_reduced = num(a$fit.stats.r["BIC"]),
  aicc_full = num(a$fit.stats.f["AICc"]), aicc_reduced = num(a$fit.stats.r["AICc"]),
  variance_full = num(if (inherits(full, "rma.mv")) full$sigma2 else full$tau2),
  variance_reduced = num(if (inherits(reduced, "rma.mv")) reduced$sigma2 else reduced$tau2))
full <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "ML", control = UNI)
reduced <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "ML", control = UNI)
add("bcg_lrt_ml_year", spec("bcg", "~ ablat + year", method = "ML"),
    'anova(rma(yi, vi, mods = ~ ablat + year, method = "ML", ...), rma(yi, vi, mods = ~ ablat, method = "ML", ...))',
    full, list(type = "lrt", reduced = spec("bcg", "~ ablat", method = "ML")), lrt_list(anova(full, reduced), full, reduced))
for (fx in list(c(0, NA), c(NA, 0))) {
  reduced <- fit_mv(as, NULL, R3, sigma2 = fx)
  add(sprintf("assink_lrt_sigma2_%s", paste(ifelse(is.na(fx), "NA", fx), collapse = "_")), spec("assink2016"),
      sprintf("anova(rma.mv(yi, vi, random = ~ 1 | study/esid, data = assink), rma.mv(..., sigma2 = c(%s)))  # pval: plain chi2(1), no boundary mixture",
              paste(ifelse(is.na(fx), "NA", fx), collapse = ", ")),
      res3, list(type = "lrt", reduced = spec("assink2016", sigma2_fixed = fx)), lrt_list(anova(res3, reduced), res3, reduced))
}

# 8. Heterogeneity inference
ci_list <- function(res) {
  r <- as.data.frame(confint(res, control = list(tol = 1e-13))$random)
  comp <- c("tau^2" = "tau2", tau = "tau", "I^2(%)" = "I2", "H^2" = "H2")
  lapply(setNames(rownames(r), comp[rownames(r)]), function(n) list(estimate = r[n, "estimate"], ci_lb = r[n, "ci.lb"], ci_ub = r[n, "ci.ub"]))
}
for (m in c("REML", "DL", "ML")) {
  res <- rma(yi, vi, data = bcg, method = m, control = UNI)
  result <- list()
  if (m != "ML") result$variance_ci <- ci_list(res)
  if (m != "DL") result$variance_se <- num(res$se.tau2)
  add(paste0("bcg_heterogeneity_", tolower(m)), spec("bcg", method = m, variance_ci = m != "ML"),
      sprintf('res <- rma(yi, vi, data = bcg, method = "%s", control = UNI); %s', m,
              paste(c(if (m != "ML") "confint(res, control = list(tol = 1e-13))  # Q-profile", if (m != "DL") "res$se.tau2"), collapse = "; ")),
      res, list(type = "fit"), result)
}
res <- rma(yi, vi, mods = ~ ablat, data = bcg, control = UNI)
add("bcg_r2_ablat", spec("bcg", "~ ablat"), "rma(yi, vi, mods = ~ ablat, data = bcg, control = UNI)$R2  # percent",
    res, list(type = "fit"), list(r2 = num(res$R2)))
res <- fit_mv(as, NULL, R3, cvvc = TRUE)
add("assink_vvc", spec("assink2016"),
    "rma.mv(yi, vi, random = ~ 1 | study/esid, data = assink, cvvc = TRUE)$vvc  # numDeriv Hessian (Richardson, r = 8) of the REML logLik in sigma2",
    res, list(type = "fit"), list(vvc = unname(res$vvc), variance_se = num(sqrt(diag(res$vvc)))))

# 9. clubSandwich CR2 Wald tests
for (f in c("~ deltype", "~ deltype + year")) {
  res <- fit_mv(as, as.formula(f), R3)
  add(paste0("assink_club_", gsub("\\W+", "_", sub("~ ", "", f))), spec("assink2016", f),
      sprintf('Wald_test(rma.mv(yi, vi, mods = %s, random = ~ 1 | study/esid, data = assink), constraints = constrain_zero(2:3), vcov = "CR2", cluster = assink$study, test = c("HTZ", "Naive-F", "chi-sq"))', f),
      res, list(type = "robust_wald", cluster = "study", terms = c("deltypegeneral", "deltypeovert")),
      list(tests = club(res, constrain_zero(2:3), as$study)))
}
res <- fit_mv(as, ~ deltype, R3)
add("assink_club_deltype_equal", spec("assink2016", "~ deltype"),
    'Wald_test(rma.mv(yi, vi, mods = ~ deltype, random = ~ 1 | study/esid, data = assink), constraints = constrain_equal(2:3), vcov = "CR2", cluster = assink$study, test = c("HTZ", "Naive-F", "chi-sq"))  # constrain_equal(2:3) is the row c(0, -1, 1)',
    res, list(type = "robust_wald", cluster = "study", L = matrix(constrain_equal(2:3)(coef(res)), nrow = 1)),
    list(tests = club(res, constrain_equal(2:3), as$study)))
res <- fit_mv(kd, ~ year, ~ 1 | district/school)
add("konstantopoulos_club_year", spec("konstantopoulos2011", "~ year"),
    paste('Wald_test(rma.mv(yi, vi, mods = ~ year, random = ~ 1 | district/school, data = dat.konstantopoulos2011), constraints = constrain_zero(2), vcov = "CR2", cluster = district, test = c("HTZ", "Naive-F", "chi-sq"))',
          if (is.null(attr(res, "free_fit"))) "" else "  # sigma2 fixed at the polished REML estimates (nlminb drifts ~1e-6 on this uncentred model)"),
    res, list(type = "robust_wald", cluster = "district", terms = I("year")), list(tests = club(res, constrain_zero(2), kd$district)))

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(out, "metafor_model_queries.json"))
cat(length(cases), "cases\n")
