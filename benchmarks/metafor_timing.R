# Reference for benchmarks/bench_meta.py: the whole job in R on the same CSV as
# 'edueffects meta FILE --cluster cluster --within esid --mods x --robust cluster --json OUT':
# read the CSV, fit the three-level model by REML (metafor rma.mv, sparse matrices), CR2
# cluster-robust tests with Satterthwaite df (clubSandwich), write the estimates as JSON.
# Usage: Rscript metafor_timing.R FILE.csv OUT.json
suppressPackageStartupMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})
a <- commandArgs(TRUE)
d <- read.csv(a[1])
res <- rma.mv(yi, vi, mods = ~ x, random = ~ 1 | cluster / esid, data = d, method = "REML", sparse = TRUE)
rob <- coef_test(res, vcov = "CR2", cluster = d$cluster)
out <- list(beta = as.vector(coef(res)), sigma2 = res$sigma2, se_cr2 = rob$SE, df_cr2 = rob$df_Satt)
writeLines(toJSON(out, digits = NA), a[2])
