# Reference timing for benchmarks/bench_recovery.py: lme4 on the same file.
# Usage: Rscript lmer_timing.R FILE.csv MODEL(gain|long) RUNS   -> prints median in-process seconds of lmer
# Usage: Rscript lmer_timing.R FILE.csv MODEL once              -> whole job: read.csv + lmer (timed from outside)
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(TRUE); d <- read.csv(a[1]); model <- a[2]
d$sc <- interaction(d$school, d$cohort, drop = TRUE)
fit <- function() {
  if (model == "gain") {
    d$gain <- d$score8 - d$score5
    lmer(gain ~ pandemic * (ses + nongerman) + (1 | school) + (1 | sc), data = d, REML = TRUE)
  } else {
    long <- rbind(transform(d, g8 = 0, y = score5), transform(d, g8 = 1, y = score8))
    lmer(y ~ g8 * pandemic * (ses + nongerman) + (1 | school) + (1 | sc) + (1 | student), data = long, REML = TRUE)
  }
}
if (a[3] == "once") { invisible(fit()); cat("done\n") } else {
  times <- sapply(seq_len(as.integer(a[3])), function(i) system.time(fit())[["elapsed"]])
  cat(median(times), "\n")
}
