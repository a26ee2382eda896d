"""Every option's allowed values and defaults, in one light module read by the engines and the CLI."""

from __future__ import annotations

from typing import Literal, get_args

EstimationMethod = Literal["EE", "FE", "DL", "REML", "ML", "PM", "HS", "SJ", "EB", "HE"]
TestMethod = Literal["z", "t", "knha"]
RobustTest = Literal["HTZ", "Naive-F", "chi-sq"]
Transform = Literal["none", "exp", "tanh"]
RegtestPredictor = Literal["sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv"]
RegtestModel = Literal["rma", "lm"]
TrimfillEstimator = Literal["L0", "R0"]
TrimfillSide = Literal["left", "right"]
SelectionAlternative = Literal["greater", "less", "two.sided"]
EffectMeasure = Literal["SMD", "SMCR", "SMCC", "COR", "ZCOR", "OR", "RR", "RD"]
SmdCorrection = Literal["exact", "approx"]

ESTIMATION_METHODS: tuple[str, ...] = get_args(EstimationMethod)
TEST_METHODS: tuple[str, ...] = get_args(TestMethod)
ROBUST_TESTS: tuple[str, ...] = get_args(RobustTest)
TRANSFORMS: tuple[str, ...] = get_args(Transform)
REGTEST_PREDICTORS: tuple[str, ...] = get_args(RegtestPredictor)
REGTEST_MODELS: tuple[str, ...] = get_args(RegtestModel)
TRIMFILL_ESTIMATORS: tuple[str, ...] = get_args(TrimfillEstimator)
TRIMFILL_SIDES: tuple[str, ...] = get_args(TrimfillSide)
SELECTION_ALTERNATIVES: tuple[str, ...] = get_args(SelectionAlternative)
EFFECT_MEASURES: tuple[str, ...] = get_args(EffectMeasure)
SMD_CORRECTIONS: tuple[str, ...] = get_args(SmdCorrection)
LIKELIHOOD_METHODS = ("REML", "ML")

DEFAULT_METHOD: EstimationMethod = "REML"
DEFAULT_TEST: TestMethod = "z"
DEFAULT_LEVEL = 95.0
DEFAULT_ROBUST_TEST: RobustTest = "HTZ"
DEFAULT_RHOS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)
"""Sampling correlations of ``rho_sensitivity()`` and ``meta --rho-sensitivity`` by default."""
