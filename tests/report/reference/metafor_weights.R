# Weights of metafor's forest plot (weights()) for the forest-plot test of the report.
# Run from the repository root: Rscript tests/report/reference/metafor_weights.R
library(metafor)
library(jsonlite)
data <- "tests/reference/data"
bcg <- read.csv(file.path(data, "bcg.csv"))
k11 <- read.csv(file.path(data, "konstantopoulos2011.csv"))
out <- list(
  bcg_reml = unname(weights(rma(yi, vi, data = bcg))),
  bcg_ee = unname(weights(rma(yi, vi, data = bcg, method = "EE"))),
  konstantopoulos2011_reml = unname(weights(rma.mv(yi, vi, random = ~ 1 | district/school, data = k11))),
  metafor_version = as.character(packageVersion("metafor"))
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/report/reference/metafor_weights.json")
