# Reference values from R metafor and clubSandwich for the sensitivity analyses of the SOMA workflow
# (edueffects.soma.sensitivity) on the embedded example (simulate.soma(), seed 2025): Fisher z and its variance
# per effect, effects nested in meta-analyses, the AMSTAR 2 'critically low' flag per meta-analysis.
# Usage: Rscript soma_sensitivity.R OUTDIR   (OUTDIR = tests/reference)
# Reads OUTDIR/data/soma_example.csv; writes OUTDIR/soma_sensitivity.json.
# - rma.mv(z, vz, random = ~ 1 | meta_analysis/es_id) (REML) without each meta-analysis in turn, with
#   coef_test(fit, vcov = "CR2", cluster = meta_analysis); Cook's distance by meta-analysis (as
#   cooks.distance(full, cluster = meta_analysis), from the tight refits);
# - the model without the meta-analyses rated critically low;
# - PET and PEESE: the same model with mods = ~ sqrt(vz) and mods = ~ vz (intercepts);
# - CHE: V <- vcalc(vz, cluster = meta_analysis, obs = es_id, rho = 0.6), rma.mv(z, V, random = ...).
# Every fit with a tight optimiser tolerance (nlminb rel.tol 1e-10) so that the estimates carry ~1e-8 error.
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
args <- commandArgs(TRUE); out <- args[1]
d <- read.csv(file.path(out, "data", "soma_example.csv"))
d$critically_low <- as.logical(d$critically_low)
num <- function(x) unname(as.numeric(x))
ctrl <- list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000)
fit <- function(data, V = data$vz, mods = NULL) {
  if (is.null(mods)) {
    rma.mv(z, V, random = ~ 1 | meta_analysis/es_id, data = data, control = ctrl)
  } else {
    rma.mv(z, V, mods = mods, random = ~ 1 | meta_analysis/es_id, data = data, control = ctrl)
  }
}
row <- function(res, data) {
  ct <- coef_test(res, vcov = "CR2", cluster = data$meta_analysis)
  list(k = res$k, estimate = num(res$b[1]), se = num(res$se[1]), ci_lb = num(res$ci.lb[1]),
       ci_ub = num(res$ci.ub[1]), pval = num(res$pval[1]), robust_se = num(ct$SE[1]),
       robust_df = num(ct$df_Satt[1]), robust_p = num(ct$p_Satt[1]), sigma2 = num(res$sigma2))
}
full <- fit(d)
mas <- unique(d$meta_analysis)
loo <- lapply(mas, function(m) {
  s <- d[d$meta_analysis != m, ]
  c(list(meta_analysis = m), row(fit(s), s))
})
# cooks.distance() refits with nlminb's default tolerance (its values differ by up to ~5e-6 relative); the
# reference is its formula (b - b(-i))' V_b^-1 (b - b(-i)) on the tight refits above, checked against it to 1e-4
cook <- sapply(loo, function(r) (num(full$b[1]) - r$estimate)^2 / num(vcov(full)))
names(cook) <- mas
loose <- cooks.distance(full, cluster = d$meta_analysis)
stopifnot(isTRUE(all.equal(num(loose), num(cook), tolerance = 1e-4)))
good <- d[!d$critically_low, ]
pet <- fit(d, mods = ~ sqrt(vz))
peese <- fit(d, mods = ~ vz)
V <- vcalc(vz, cluster = meta_analysis, obs = es_id, rho = 0.6, data = d)
che <- fit(d, V = V)
res <- list(
  full = row(full, d),
  leave_one_out = loo,
  cook = list(meta_analysis = names(cook), cook_d = num(cook)),
  amstar = c(list(dropped = sort(unique(d$meta_analysis[d$critically_low]))), row(fit(good), good)),
  pet = list(estimate = num(pet$b[1]), se = num(pet$se[1]), pval = num(pet$pval[1]), ci_lb = num(pet$ci.lb[1])),
  peese = list(estimate = num(peese$b[1]), se = num(peese$se[1]), pval = num(peese$pval[1]),
               ci_lb = num(peese$ci.lb[1])),
  che_0.6 = row(che, d),
  versions = list(metafor = as.character(packageVersion("metafor")),
                  clubSandwich = as.character(packageVersion("clubSandwich")))
)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "soma_sensitivity.json"))
