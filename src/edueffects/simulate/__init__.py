"""Seeded simulators (synthetic data) for examples, power analysis and tests."""

from edueffects.simulate.recovery import RecoveryDesign, recovery, to_long
from edueffects.simulate.soma import SomaExample, soma

__all__ = ["RecoveryDesign", "SomaExample", "recovery", "soma", "to_long"]
