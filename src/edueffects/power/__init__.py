"""Simulation-based power analysis: above the engines, since it simulates data and fits models.

``power_curve`` (power of the DDD effects over a grid of true effects, on simulated states) and
``check_mdes`` (each analytic MDE of a fitted gain model checked by simulation).
"""

from edueffects.power.recovery import PowerCurve, check_mdes, power_curve, simulated_power_at_mdes, terminal_progress

__all__ = ["PowerCurve", "check_mdes", "power_curve", "simulated_power_at_mdes", "terminal_progress"]
