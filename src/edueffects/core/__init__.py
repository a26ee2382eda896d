"""The numerical core shared by every engine: nested random-intercept likelihood, CR2, profiles."""

from edueffects.core.errors import InputError
from edueffects.core.nested import Convergence, Evaluation, NestedDesign, design_from_rows, evaluate, maximize
from edueffects.core.robust import RobustCovariance, cr2

__all__ = [
    "Convergence",
    "Evaluation",
    "InputError",
    "NestedDesign",
    "RobustCovariance",
    "cr2",
    "design_from_rows",
    "evaluate",
    "maximize",
]
