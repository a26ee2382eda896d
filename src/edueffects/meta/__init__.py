"""Meta-analysis engine: ``meta()`` and its frozen result, effect-size conversions."""

from edueffects.meta.fit import meta
from edueffects.meta.result import MetaResult, Prediction, RobustResult

__all__ = ["MetaResult", "Prediction", "RobustResult", "meta"]
