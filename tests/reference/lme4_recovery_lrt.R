# Reference values for the post-fit tests of the learning-recovery DDD models on data/recovery_small.csv:
#   likelihood-ratio tests      lme4 anova(reduced, full) of ML fits with and without a moderator
#   model-based joint Wald      lmerTest contest(m, L, joint = TRUE) (contestMD: multi-df Satterthwaite F)
#   cluster-robust joint Wald   clubSandwich Wald_test(m, C, vcov = "CR2", cluster = school, test = ...)
# Usage (from the project root): Rscript tests/reference/lme4_recovery_lrt.R
# Writes tests/reference/lme4_recovery_lrt.json. Models as in lme4_reference.R.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(clubSandwich); library(jsonlite)})
d <- read.csv("tests/reference/data/recovery_small.csv")
d$gain <- d$score8 - d$score5; d$sc <- interaction(d$school, d$cohort, drop = TRUE)
num <- function(x) unname(as.numeric(x))
rows <- function(m) unname(lapply(seq_len(nrow(m)), function(i) num(m[i, ])))
ctl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 1e-14, ftol_rel = 1e-15, maxeval = 1e5), check.conv.grad = .makeCC("warning", tol = 1e-6))
long <- rbind(transform(d, g8 = 0, y = score5), transform(d, g8 = 1, y = score8))

lrt <- function(full, reduced) {
  a <- anova(reduced, full)  # both ML: no refit
  list(npar = num(a$npar), AIC = num(a$AIC), BIC = num(a$BIC), logLik = num(a$logLik), deviance = num(a$deviance),
       Chisq = num(a$Chisq[2]), Df = num(a$Df[2]), pval = num(a[["Pr(>Chisq)"]][2]), nobs = nobs(full))
}

contests <- function(m, Ls) {
  lapply(Ls, function(L) {
    colnames(L) <- names(fixef(m))
    r <- contest(m, L, joint = TRUE, ddf = "Satterthwaite")
    list(L = rows(L), F = num(r[["F value"]]), NumDF = num(r$NumDF), DenDF = num(r$DenDF), pval = num(r[["Pr(>F)"]]))
  })
}

walds <- function(m, cluster, Ls) {
  V <- vcovCR(m, cluster = cluster, type = "CR2")
  lapply(Ls, function(L) {
    w <- Wald_test(m, constraints = L, vcov = V, test = c("HTZ", "Naive-F", "chi-sq"))
    c(list(L = rows(L)),
      lapply(split(w, w$test), function(r) list(Fstat = num(r$Fstat), df_num = num(r$df_num),
                                                df_denom = if (is.finite(r$df_denom)) num(r$df_denom) else NULL,
                                                p_val = num(r$p_val))))
  })
}

e <- function(p, i) { x <- matrix(0, length(i), p); x[cbind(seq_along(i), i)] <- 1; x }

# gain model: (Intercept) pandemic ses nongerman pandemic:ses pandemic:nongerman
gain_ml <- lme4::lmer(gain ~ pandemic * (ses + nongerman) + (1 | school) + (1 | sc), data = d, REML = FALSE, control = ctl)
gain_ml_ses <- lme4::lmer(gain ~ pandemic * ses + (1 | school) + (1 | sc), data = d, REML = FALSE, control = ctl)
# lost_days is zero before the pandemic (a dose): it enters only as pandemic:lost_days
gain_ml_dose <- lme4::lmer(gain ~ pandemic * (ses + nongerman) + pandemic:lost_days + (1 | school) + (1 | sc), data = d, REML = FALSE, control = ctl)
gain_L <- list(ddd = e(6, 5:6),
               mixed = rbind(c(0, 1, 0, 0, 0, 0), c(0, 0, 0, 0, 1, -1), c(0, 0, 1, 1, 0, 0)),
               one = e(6, 5))
gain_reml_t <- lmerTest::lmer(gain ~ pandemic * (ses + nongerman) + (1 | school) + (1 | sc), data = d, REML = TRUE, control = ctl)
gain_ml_t <- lmerTest::lmer(gain ~ pandemic * (ses + nongerman) + (1 | school) + (1 | sc), data = d, REML = FALSE, control = ctl)
gain_reml <- lme4::lmer(gain ~ pandemic * (ses + nongerman) + (1 | school) + (1 | sc), data = d, REML = TRUE, control = ctl)

# long model with student intercepts: 12 coefficients, DDD terms g8:pandemic:ses (11), g8:pandemic:nongerman (12)
long_ml <- lme4::lmer(y ~ g8 * pandemic * (ses + nongerman) + (1 | school) + (1 | sc) + (1 | student), data = long, REML = FALSE, control = ctl)
long_ml_ses <- lme4::lmer(y ~ g8 * pandemic * ses + (1 | school) + (1 | sc) + (1 | student), data = long, REML = FALSE, control = ctl)
long_reml_t <- lmerTest::lmer(y ~ g8 * pandemic * (ses + nongerman) + (1 | school) + (1 | sc) + (1 | student), data = long, REML = TRUE, control = ctl)
long_L <- list(ddd = e(12, 11:12), mixed = rbind(e(12, 6), c(rep(0, 10), 1, -1), e(12, 9) + e(12, 10)))

out <- list(
  lrt = list(
    gain_ml_nongerman = c(list(full = "gain ~ pandemic * (ses + nongerman), ML", reduced = "gain ~ pandemic * ses, ML"),
                          lrt(gain_ml, gain_ml_ses)),
    gain_ml_dose = c(list(full = "gain ~ pandemic * (ses + nongerman) + pandemic:lost_days, ML",
                          reduced = "gain ~ pandemic * ses, ML"),
                     lrt(gain_ml_dose, gain_ml_ses)),
    long_ml_nongerman = c(list(full = "y ~ g8 * pandemic * (ses + nongerman) + (1 | student), ML",
                               reduced = "y ~ g8 * pandemic * ses + (1 | student), ML"),
                          lrt(long_ml, long_ml_ses))),
  contest = list(
    gain_reml = list(coef_df = num(summary(gain_reml_t)$coefficients[, "df"]), tests = contests(gain_reml_t, gain_L)),
    gain_ml = list(coef_df = num(summary(gain_ml_t)$coefficients[, "df"]), tests = contests(gain_ml_t, gain_L)),
    long_reml = list(coef_df = num(summary(long_reml_t)$coefficients[, "df"]), tests = contests(long_reml_t, long_L))),
  wald_cr2 = list(
    gain_reml = walds(gain_reml, d$school, gain_L),
    long_reml = walds(long_reml_t, long$school, long_L[1])),
  versions = list(lme4 = as.character(packageVersion("lme4")), lmerTest = as.character(packageVersion("lmerTest")),
                  clubSandwich = as.character(packageVersion("clubSandwich"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/reference/lme4_recovery_lrt.json"); cat("ok\n")
