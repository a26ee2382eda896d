# Reference values for clubSandwich's cluster-robust Wald tests (HTZ, Naive-F, chi-sq; CR2).
# Usage (from the project root): Rscript tests/reference/clubsandwich_wald.R
# Writes tests/reference/clubsandwich_wald.json. The variance components are stored too: rma.mv's
# optimizers agree with each other only to ~1e-6 relative on these flat likelihoods, so the Python test
# checks the Wald tests exactly at R's variance components and the end-to-end fit more loosely.
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})

UNI <- list(threshold = 1e-12, maxiter = 100000, tol = 1e-13, stepadj = 0.5)
MV <- list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000)
num <- function(x) unname(as.numeric(x))

wald_rows <- function(res, cluster, C) {
  w <- Wald_test(res, constraints = C, vcov = "CR2", cluster = cluster, test = c("HTZ", "Naive-F", "chi-sq"))
  lapply(split(w, w$test), function(r) list(Fstat = num(r$Fstat), delta = num(r$delta), df_num = num(r$df_num),
                                            df_denom = if (is.finite(r$df_denom)) num(r$df_denom) else NULL,
                                            p_val = num(r$p_val)))
}

make_case <- function(data_file, spec, res, cluster_col, constraints) {
  dat <- read.csv(data_file)
  cluster <- dat[[cluster_col]]
  V <- vcovCR(res, cluster = cluster, type = "CR2")
  ct <- coef_test(res, vcov = V, test = "Satterthwaite")
  tests <- lapply(names(constraints), function(nm) {
    C <- constraints[[nm]](coef(res))
    c(list(name = nm, constraints = unname(lapply(seq_len(nrow(C)), function(i) num(C[i, ])))),
      wald_rows(res, cluster, C))
  })
  list(data = data_file, model = spec, robust_cluster = cluster_col, coef_names = rownames(res$beta),
       sigma2 = num(res$sigma2), beta = num(res$beta), vcov_cr2 = unname(lapply(seq_len(nrow(V)), function(i) num(V[i, ]))),
       satterthwaite_df = num(ct$df_Satt), t_stat = num(ct$tstat),
       n_clusters = length(unique(cluster)), tests = tests)
}

cases <- list()

# Assink & Wibbelink (2016): three-level model, deltype (3 levels) + year, clustered by study.
f <- "tests/reference/data/assink2016.csv"
dat <- read.csv(f)
res <- rma.mv(yi, vi, mods = ~ deltype + year, random = ~ 1 | study/esid, data = dat, control = MV)
cases$assink_deltype_year <- make_case(
  f, list(kind = "multilevel", cluster = "study", within = "esid", mods = list("deltype", "year")), res, "study",
  list(zero_2_3 = constrain_zero(2:3), equal_2_3 = constrain_equal(2:3), zero_4 = constrain_zero(4),
       zero_2_4 = constrain_zero(2:4),
       pairwise_mixed = function(b) rbind(c(0, 2, -1, 0), c(0, 0, 1, 3), c(1, 0, 0, 0))))

# Konstantopoulos (2011): schools within districts, year as moderator, clustered by district.
f <- "tests/reference/data/konstantopoulos2011.csv"
dat <- read.csv(f)
res <- rma.mv(yi, vi, mods = ~ year, random = ~ 1 | district/school, data = dat, control = MV)
cases$konstantopoulos_year <- make_case(
  f, list(kind = "multilevel", cluster = "district", within = "school", mods = list("year")), res, "district",
  list(zero_2 = constrain_zero(2)))
# The joint test of intercept and slope needs a centred year: with year itself, cond(V_CR2) ~ 2e11 and
# Q = b'V^-1 b is determined only to ~1e-7 relative (in R as in any other implementation).
dat$year_c <- dat$year - 1990
res <- rma.mv(yi, vi, mods = ~ year_c, random = ~ 1 | district/school, data = dat, control = MV)
cases$konstantopoulos_year_centred <- make_case(
  f, list(kind = "multilevel", cluster = "district", within = "school", mods = list("year_c")), res, "district",
  list(zero_2 = constrain_zero(2), zero_1_2 = constrain_zero(1:2)))

# BCG (univariate random-effects model): alloc (3 levels) + ablat, clustered by decade of publication
# (alloc itself as the cluster would make each alloc contrast rest on one cluster).
f <- "tests/reference/data/bcg.csv"
dat <- read.csv(f)
dat$decade <- 10 * (dat$year %/% 10)
res <- rma(yi, vi, mods = ~ alloc + ablat, data = dat, method = "REML", control = UNI)
bcg_case <- function(cluster_col) {
  cluster <- dat[[cluster_col]]
  V <- vcovCR(res, cluster = cluster, type = "CR2")
  ct <- coef_test(res, vcov = V, test = "Satterthwaite")
  cons <- list(zero_2_3 = constrain_zero(2:3), zero_4 = constrain_zero(4), zero_2_4 = constrain_zero(2:4))
  tests <- lapply(names(cons), function(nm) {
    C <- cons[[nm]](coef(res))
    c(list(name = nm, constraints = unname(lapply(seq_len(nrow(C)), function(i) num(C[i, ])))),
      wald_rows(res, cluster, C))
  })
  list(data = f, model = list(kind = "univariate", method = "REML", mods = list("alloc", "ablat")),
       robust_cluster = cluster_col, coef_names = rownames(res$beta), tau2 = num(res$tau2), beta = num(res$beta),
       vcov_cr2 = unname(lapply(seq_len(nrow(V)), function(i) num(V[i, ]))),
       satterthwaite_df = num(ct$df_Satt), t_stat = num(ct$tstat),
       n_clusters = length(unique(cluster)), tests = tests)
}
cases$bcg_alloc_ablat_by_decade <- bcg_case("decade")

out <- list(
  generated_by = "tests/reference/clubsandwich_wald.R",
  versions = list(R = R.version.string, metafor = as.character(packageVersion("metafor")),
                  clubSandwich = as.character(packageVersion("clubSandwich"))),
  cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           "tests/reference/clubsandwich_wald.json")
