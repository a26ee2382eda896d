"""Cluster blocks of the marginal covariance, batched by cluster size (no n x n matrix, no loop over
clusters).

Within cluster ``j`` the marginal covariance of a nested random-intercept model is
``Theta_j = diag(row_variance) + sum_l sigma2_l lambda_l lambda_l' * [same level-l group]``
(``lambda`` = 1 unless rows stand for orthonormalised blocks of identical rows, or for the known
correlated sampling errors ``rho s s'`` of a meta-analysis, a level of the clusters with
``lambda = s``). Clusters of equal size are stacked into arrays of shape (C, s, s) and handled together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from edueffects.core.jet import Array
from edueffects.core.nested import group_order

IntArray = NDArray[np.intp]


def cluster_batches(cluster: IntArray) -> tuple[list[IntArray], int]:
    """Row indices of the clusters, one (C, s) array per cluster size ``s``, and the number of clusters."""
    order = group_order([np.asarray(cluster, dtype=np.int64)], cluster.size)
    sorted_cluster = cluster[order]
    change = np.ones(order.size, dtype=bool)
    change[1:] = sorted_cluster[1:] != sorted_cluster[:-1]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.append(starts, order.size))
    by_size = np.argsort(sizes, kind="stable")  # clusters by size, in cluster order within a size
    sorted_starts, sorted_sizes = starts[by_size], sizes[by_size]
    first = np.flatnonzero(np.append(True, sorted_sizes[1:] != sorted_sizes[:-1]))
    bounds = np.append(first, sizes.size)
    batches = [
        order[sorted_starts[lo:hi, None] + np.arange(sorted_sizes[lo])[None, :]]
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
    return batches, int(starts.size)


def block_covariance(
    rows: IntArray,
    row_variance: Array,
    level_codes: Sequence[IntArray],
    level_variances: Array,
    level_loadings: Sequence[Array] | None = None,
) -> Array:
    """``Theta_j`` (C, s, s) of the clusters whose rows are ``rows`` (C, s)."""
    count, size = rows.shape
    theta = np.zeros((count, size, size))
    diagonal = theta.reshape(count, -1)[:, :: size + 1]
    diagonal += row_variance[rows]
    for level, (codes, variance) in enumerate(zip(level_codes, level_variances, strict=True)):
        c = np.asarray(codes)[rows]
        whole = bool(np.all(c == c[:, :1]))  # one group per block (e.g. the block is a study): no comparison
        if level_loadings is None:
            theta += variance if whole else variance * (c[:, :, None] == c[:, None, :])
        else:
            load = level_loadings[level][rows]
            scaled = variance if whole else variance * (c[:, :, None] == c[:, None, :])
            theta += scaled * load[:, :, None] * load[:, None, :]
    return theta


def iter_blocks(
    cluster: IntArray,
    row_variance: Array,
    level_codes: Sequence[IntArray],
    level_variances: Array,
    level_loadings: Sequence[Array] | None = None,
) -> Iterator[tuple[IntArray, Array]]:
    """``(rows, Theta)`` for every batch of equally sized clusters (``level_loadings`` as in
    :func:`block_covariance`)."""
    batches, _ = cluster_batches(cluster)
    for rows in batches:
        yield rows, block_covariance(rows, row_variance, level_codes, level_variances, level_loadings)
