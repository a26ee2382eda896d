"""Seeded simulators (synthetic data) for examples, power analysis and tests."""

from edueffects.simulate.recovery import RecoveryDesign, recovery, to_long

__all__ = ["RecoveryDesign", "recovery", "to_long"]
