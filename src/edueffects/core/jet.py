"""Second-order forward-mode derivatives ("jets") over arrays.

A :class:`Jet` carries a value array together with its exact first and second derivatives with
respect to a small set of scalar parameters (the variance components). Arithmetic follows the
product and chain rules, so a recursion written once with jets yields the function, its gradient
and its Hessian in one pass. Only the parameters a quantity actually depends on are carried
(``params``), which keeps the innermost, largest levels of a nested model cheap.

Layout: ``value`` has shape ``S``; ``d1`` has shape ``(t, *S)`` and ``d2`` shape ``(t, t, *S)``
where ``t = len(params)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Jet:
    """A value with exact first and second derivatives with respect to ``params``."""

    value: Array
    params: tuple[int, ...]
    d1: Array
    d2: Array

    @staticmethod
    def constant(value: Array | float) -> Jet:
        v = np.asarray(value, dtype=np.float64)
        return Jet(v, (), np.zeros((0, *v.shape)), np.zeros((0, 0, *v.shape)))

    @staticmethod
    def parameter(value: float, index: int) -> Jet:
        return Jet(
            np.asarray(value, dtype=np.float64),
            (index,),
            np.ones((1,)),
            np.zeros((1, 1)),
        )

    def widened(self, params: tuple[int, ...]) -> Jet:
        """The same jet carrying derivatives for the (larger, sorted) parameter set ``params``."""
        if params == self.params:
            return self
        pos = [params.index(p) for p in self.params]
        t = len(params)
        shape = self.value.shape
        d1 = np.zeros((t, *shape))
        d2 = np.zeros((t, t, *shape))
        if pos:
            d1[pos] = self.d1
            d2[np.ix_(pos, pos)] = self.d2
        return Jet(self.value, params, d1, d2)

    def lifted(self, ndim: int) -> Jet:
        """Prepend singleton value axes (as numpy broadcasting would) up to ``ndim`` value axes."""
        extra = ndim - self.value.ndim
        if extra <= 0:
            return self
        t = len(self.params)
        ones = (1,) * extra
        shape = self.value.shape
        return Jet(
            self.value.reshape(ones + shape),
            self.params,
            self.d1.reshape((t, *ones, *shape)),
            self.d2.reshape((t, t, *ones, *shape)),
        )

    def _aligned(self, other: Jet) -> tuple[Jet, Jet]:
        ndim = max(self.value.ndim, other.value.ndim)
        a, b = self.lifted(ndim), other.lifted(ndim)
        if a.params == b.params:
            return a, b
        params = tuple(sorted(set(a.params) | set(b.params)))
        return a.widened(params), b.widened(params)

    def __add__(self, other: Jet) -> Jet:
        if not other.params:
            lifted = self.lifted(np.ndim(other.value))
            return Jet(lifted.value + other.value, lifted.params, lifted.d1, lifted.d2)
        a, b = self._aligned(other)
        return Jet(a.value + b.value, a.params, a.d1 + b.d1, a.d2 + b.d2)

    def __sub__(self, other: Jet) -> Jet:
        a, b = self._aligned(other)
        return Jet(a.value - b.value, a.params, a.d1 - b.d1, a.d2 - b.d2)

    def __neg__(self) -> Jet:
        return Jet(-self.value, self.params, -self.d1, -self.d2)

    def __mul__(self, other: Jet) -> Jet:
        if not other.params:
            return self.scaled(other.value)
        if not self.params:
            return other.scaled(self.value)
        a, b = self._aligned(other)
        value = a.value * b.value
        d1 = a.d1 * b.value + a.value * b.d1
        cross = a.d1[:, None] * b.d1[None, :]
        d2 = a.d2 * b.value + a.value * b.d2 + cross + np.swapaxes(cross, 0, 1)
        return Jet(value, a.params, d1, d2)

    def scaled(self, factor: Array | float) -> Jet:
        """Multiply by a constant array (no derivatives)."""
        f = np.asarray(factor, dtype=np.float64)
        a = self.lifted(f.ndim)
        return Jet(a.value * f, a.params, a.d1 * f, a.d2 * f)

    def reciprocal(self) -> Jet:
        inv = 1.0 / self.value
        inv2 = inv * inv
        d1 = -self.d1 * inv2
        outer = self.d1[:, None] * self.d1[None, :]
        d2 = -self.d2 * inv2 + 2.0 * outer * inv2 * inv
        return Jet(inv, self.params, d1, d2)

    def log(self) -> Jet:
        inv = 1.0 / self.value
        outer = self.d1[:, None] * self.d1[None, :]
        return Jet(np.log(self.value), self.params, self.d1 * inv, self.d2 * inv - outer * inv * inv)

    def expand_last(self) -> Jet:
        """Add a trailing axis of length one (to broadcast a per-group scalar over columns)."""
        return Jet(self.value[..., None], self.params, self.d1[..., None], self.d2[..., None])

    def take_last(self, index: NDArray[np.intp]) -> Jet:
        """Select entries along the last value axis."""
        return Jet(self.value[..., index], self.params, self.d1[..., index], self.d2[..., index])

    def segment_sum(self, starts: NDArray[np.intp]) -> Jet:
        """Sum consecutive runs along the first value axis; run ``g`` begins at ``starts[g]``."""
        return Jet(
            np.add.reduceat(self.value, starts, axis=0),
            self.params,
            np.add.reduceat(self.d1, starts, axis=1),
            np.add.reduceat(self.d2, starts, axis=2),
        )

    def total(self) -> Jet:
        """Sum along the first value axis."""
        return Jet(self.value.sum(axis=0), self.params, self.d1.sum(axis=1), self.d2.sum(axis=2))
