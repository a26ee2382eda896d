"""Every option's allowed values and defaults, in one light module read by the engines and the CLI."""

from __future__ import annotations

from typing import Literal, get_args

EstimationMethod = Literal["EE", "FE", "DL", "REML", "ML", "PM", "HS", "SJ", "EB", "HE"]
TestMethod = Literal["z", "t", "knha"]
RobustTest = Literal["HTZ", "Naive-F", "chi-sq"]
Transform = Literal["none", "exp", "tanh"]

ESTIMATION_METHODS: tuple[str, ...] = get_args(EstimationMethod)
TEST_METHODS: tuple[str, ...] = get_args(TestMethod)
ROBUST_TESTS: tuple[str, ...] = get_args(RobustTest)
TRANSFORMS: tuple[str, ...] = get_args(Transform)
LIKELIHOOD_METHODS = ("REML", "ML")

DEFAULT_METHOD: EstimationMethod = "REML"
DEFAULT_TEST: TestMethod = "z"
DEFAULT_LEVEL = 95.0
DEFAULT_ROBUST_TEST: RobustTest = "HTZ"
