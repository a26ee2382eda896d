# Reference effect sizes from R metafor 3.8-1 (escalc) and from psychmeta's convert_es formulas.
# Usage: Rscript metafor_escalc.R OUTDIR   (OUTDIR = tests/reference)
# Writes OUTDIR/data/escalc_*.csv and OUTDIR/metafor_escalc.json. Every case names its data file, the measure and
# the key -> column mapping the Python side uses (edueffects.meta.effect_sizes.escalc), the rule every row
# must take, and the expected yi/vi.
# psychmeta is not on CRAN's Debian builds here: its conversions (convert_es: r -> d with unequal groups,
# chi-square -> r, d -> r) are written out below from psychmeta 2.7's source (R/convert_es.R), then fed to
# escalc(measure = "SMD", di = ...) or escalc(measure = "COR"/"ZCOR", ri = ...) exactly as the Python rules do.
# Data: dat.normand1999 (SMD), dat.molloy2014 (COR), dat.bcg and dat.nielweise2007 (2x2 counts, zero cells),
# and the pre-post data of Morris (2008) as used in metafor's tests and its morris2008 analysis example.
suppressPackageStartupMessages({library(metafor); library(metadat); library(jsonlite)})
args <- commandArgs(TRUE); out <- args[1]
dir.create(file.path(out, "data"), recursive = TRUE, showWarnings = FALSE)
num <- function(x) unname(as.numeric(x))
cases <- list()
add <- function(name, data, file, measure, columns, rule, es, extra = list()) {
  write.csv(data, file.path(out, "data", paste0("escalc_", file, ".csv")), row.names = FALSE)
  cases[[name]] <<- c(list(case = name, data = paste0("data/escalc_", file, ".csv"), measure = measure,
                           columns = columns, rule = rule, yi = num(es$yi), vi = num(es$vi)), extra)
}
# psychmeta (convert_es.R): a = 1 / (p (1 - p)), p = n1 / n
pm_a <- function(n1, n2) 1 / ((n1 / (n1 + n2)) * (1 - n1 / (n1 + n2)))
pm_r_to_d <- function(r, n1, n2) sqrt(pm_a(n1, n2)) * r / sqrt(1 - r^2)
pm_d_to_r <- function(d, n1, n2) d / sqrt(pm_a(n1, n2) + d^2)
pm_chisq_to_r <- function(chisq, n) sqrt(chisq / n)
pm_lor_to_d <- function(lor) lor * sqrt(3) / pi

# --- SMD: means and SDs, d, t, F(1, df), r, chi-square, log odds ratio --------------------------------
nd <- dat.normand1999
add("normand1999_smd_means", nd, "normand1999", "SMD", list(), "means and SDs",
    escalc("SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = nd))
sp <- with(nd, sqrt(((n1i - 1) * sd1i^2 + (n2i - 1) * sd2i^2) / (n1i + n2i - 2)))
stats <- data.frame(study = nd$study, n_treat = nd$n1i, n_ctrl = nd$n2i,
                    d = (nd$m1i - nd$m2i) / sp)
stats$t <- stats$d / sqrt(1 / stats$n_treat + 1 / stats$n_ctrl)
stats$F <- stats$t^2; stats$direction <- ifelse(stats$t < 0, "-", "+")
stats$r_pb <- num(escalc("RPB", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = nd)$yi)
add("normand1999_smd_d", stats[, c("study", "n_treat", "n_ctrl", "d")], "normand1999_d", "SMD",
    list(n1i = "n_treat", n2i = "n_ctrl"), "Cohen's d", escalc("SMD", di = d, n1i = n_treat, n2i = n_ctrl, data = stats))
add("normand1999_smd_t", stats[, c("study", "n_treat", "n_ctrl", "t")], "normand1999_t", "SMD",
    list(n1i = "n_treat", n2i = "n_ctrl", ti = "t"), "d from t", escalc("SMD", ti = t, n1i = n_treat, n2i = n_ctrl, data = stats))
add("normand1999_smd_f", stats[, c("study", "n_treat", "n_ctrl", "F", "direction")], "normand1999_f", "SMD",
    list(n1i = "n_treat", n2i = "n_ctrl", fi = "F", sign = "direction"), "d from F(1, df)",
    escalc("SMD", ti = ifelse(direction == "-", -1, 1) * sqrt(F), n1i = n_treat, n2i = n_ctrl, data = stats))
add("normand1999_smd_r", stats[, c("study", "n_treat", "n_ctrl", "r_pb")], "normand1999_r", "SMD",
    list(n1i = "n_treat", n2i = "n_ctrl", ri = "r_pb"), "d from r",
    escalc("SMD", di = pm_r_to_d(r_pb, n_treat, n_ctrl), n1i = n_treat, n2i = n_ctrl, data = stats))
# the same rows with only the total n: psychmeta takes two equal groups
tot <- data.frame(study = stats$study, n = stats$n_treat + stats$n_ctrl, t = stats$t)
add("normand1999_smd_t_total_n", tot, "normand1999_t_total", "SMD", list(ni = "n", ti = "t"),
    "d from t (equal groups assumed)", escalc("SMD", ti = t, n1i = n / 2, n2i = n / 2, data = tot))

bcg <- dat.bcg
bcg$n1 <- bcg$tpos + bcg$tneg; bcg$n2 <- bcg$cpos + bcg$cneg
chisq <- sapply(seq_len(nrow(bcg)), function(i) suppressWarnings(chisq.test(matrix(c(bcg$tpos[i], bcg$tneg[i], bcg$cpos[i],
                bcg$cneg[i]), 2, byrow = TRUE), correct = FALSE)$statistic))
lor <- escalc("OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)
bcg_stats <- data.frame(trial = bcg$trial, n_vacc = bcg$n1, n_ctrl = bcg$n2, chisq = num(chisq),
                        direction = ifelse(num(lor$yi) < 0, -1, 1), log_or = num(lor$yi))
phi <- num(escalc("PHI", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)$yi)  # metafor's phi = sign sqrt(chi2/n)
stopifnot(max(abs(phi - bcg_stats$direction * pm_chisq_to_r(bcg_stats$chisq, bcg$n1 + bcg$n2))) < 1e-12)
add("bcg_smd_chisq", bcg_stats[, c("trial", "n_vacc", "n_ctrl", "chisq", "direction")], "bcg_chisq", "SMD",
    list(n1i = "n_vacc", n2i = "n_ctrl", chi2i = "chisq", sign = "direction"), "d from chi-square(1)",
    escalc("SMD", di = pm_r_to_d(phi, n_vacc, n_ctrl), n1i = n_vacc, n2i = n_ctrl, data = bcg_stats))
d_lor <- num(escalc("OR2DL", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)$yi)  # metafor: log OR sqrt(3)/pi
stopifnot(max(abs(d_lor - pm_lor_to_d(bcg_stats$log_or))) < 1e-12)
add("bcg_smd_log_or", bcg_stats[, c("trial", "n_vacc", "n_ctrl", "log_or")], "bcg_log_or", "SMD",
    list(n1i = "n_vacc", n2i = "n_ctrl", lor = "log_or"), "d from log odds ratio",
    escalc("SMD", di = d_lor, n1i = n_vacc, n2i = n_ctrl, data = bcg_stats))

# --- COR / ZCOR: r, t, F, chi-square, d, log odds ratio --------------------------------------------------------
ml <- dat.molloy2014[, c("authors", "year", "ni", "ri")]
add("molloy2014_cor", ml, "molloy2014", "COR", list(), "r", escalc("COR", ri = ri, ni = ni, data = ml))
add("molloy2014_zcor", ml, "molloy2014", "ZCOR", list(), "r", escalc("ZCOR", ri = ri, ni = ni, data = ml))
ml_t <- data.frame(authors = ml$authors, n = ml$ni, t = ml$ri * sqrt((ml$ni - 2) / (1 - ml$ri^2)))
r_t <- num(escalc("PCOR", ti = t, ni = n, mi = rep(1, nrow(ml_t)), data = ml_t)$yi)  # metafor: t / sqrt(t^2 + n - 2)
add("molloy2014_cor_t", ml_t, "molloy2014_t", "COR", list(ni = "n", ti = "t"), "r from t",
    escalc("COR", ri = r_t, ni = n, data = ml_t))
add("molloy2014_zcor_t", ml_t, "molloy2014_t", "ZCOR", list(ni = "n", ti = "t"), "r from t",
    escalc("ZCOR", ri = r_t, ni = n, data = ml_t))
ml_f <- data.frame(authors = ml$authors, n = ml$ni, F = ml_t$t^2, sign = ifelse(ml_t$t < 0, -1, 1))
add("molloy2014_cor_f", ml_f, "molloy2014_f", "COR", list(ni = "n", fi = "F"), "r from F(1, df)",
    escalc("COR", ri = r_t, ni = n, data = ml_f))
add("bcg_cor_chisq", bcg_stats[, c("trial", "n_vacc", "n_ctrl", "chisq", "direction")], "bcg_chisq", "COR",
    list(n1i = "n_vacc", n2i = "n_ctrl", chi2i = "chisq", sign = "direction"), "r from chi-square(1)",
    escalc("COR", ri = phi, ni = n_vacc + n_ctrl, data = bcg_stats))
add("normand1999_cor_d", stats[, c("study", "n_treat", "n_ctrl", "d")], "normand1999_d", "COR",
    list(n1i = "n_treat", n2i = "n_ctrl"), "r from d",
    escalc("COR", ri = pm_d_to_r(d, n_treat, n_ctrl), ni = n_treat + n_ctrl, data = stats))
add("bcg_zcor_log_or", bcg_stats[, c("trial", "n_vacc", "n_ctrl", "log_or")], "bcg_log_or", "ZCOR",
    list(n1i = "n_vacc", n2i = "n_ctrl", lor = "log_or"), "r from log odds ratio",
    escalc("ZCOR", ri = pm_d_to_r(d_lor, n_vacc, n_ctrl), ni = n_vacc + n_ctrl, data = bcg_stats))

# --- pre-post: SMCR, SMCC (Morris 2008, treatment and control groups) ------------------------------------------
prepost <- data.frame(
  group   = rep(c("treatment", "control"), each = 5),
  m_pre   = c(30.6, 23.5, 0.5, 53.4, 35.6, 23.1, 24.9, 0.6, 55.7, 34.8),
  m_post  = c(38.5, 26.8, 0.7, 75.9, 36.0, 19.7, 25.3, 0.6, 60.7, 33.4),
  sd_pre  = c(15.0, 3.1, 0.1, 14.5, 4.7, 13.8, 4.1, 0.2, 17.3, 3.1),
  sd_post = c(11.6, 4.1, 0.1, 4.4, 4.6, 14.8, 3.3, 0.2, 17.9, 6.9),
  ni      = c(20, 50, 9, 10, 14, 20, 42, 9, 11, 14),
  ri      = c(.47, .64, .77, .89, .44, .47, .64, .77, .89, .44))
add("morris2008_smcr", prepost, "morris2008", "SMCR", list(m1i = "m_post", m2i = "m_pre", sd1i = "sd_pre"),
    "means, SD at time 1 and r", escalc("SMCR", m1i = m_post, m2i = m_pre, sd1i = sd_pre, ni = ni, ri = ri, data = prepost))
add("morris2008_smcc", prepost, "morris2008", "SMCC", list(m1i = "m_post", m2i = "m_pre", sd1i = "sd_post", sd2i = "sd_pre"),
    "means, SDs and r", escalc("SMCC", m1i = m_post, m2i = m_pre, sd1i = sd_post, sd2i = sd_pre, ni = ni, ri = ri, data = prepost))

# --- 2x2 counts: OR, RR, RD (with zero cells: 1/2 added to those tables for OR and RR) -------------------------
b <- dat.bcg[, c("trial", "tpos", "tneg", "cpos", "cneg")]
map_b <- list(ai = "tpos", bi = "tneg", ci = "cpos", di = "cneg")
for (m in c("OR", "RR", "RD"))
  add(paste0("bcg_", tolower(m)), b, "bcg", m, map_b, "2x2 counts",
      escalc(m, ai = tpos, bi = tneg, ci = cpos, di = cneg, data = b))
nw <- dat.nielweise2007[, c("study", "ai", "n1i", "ci", "n2i")]
for (m in c("OR", "RR", "RD"))
  add(paste0("nielweise2007_", tolower(m)), nw, "nielweise2007", m, list(), "2x2 counts",
      escalc(m, ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = nw))

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(out, "metafor_escalc.json"))
cat(length(cases), "cases\n")
