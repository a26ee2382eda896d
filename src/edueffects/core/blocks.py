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
    n = cluster.size
    in_order = n < 2 or bool(np.all(cluster[1:] >= cluster[:-1]))  # the usual layout: rows sorted by cluster
    order = None if in_order else group_order([np.asarray(cluster, dtype=np.int64)], n)
    sorted_cluster = cluster if order is None else cluster[order]
    change = np.ones(n, dtype=bool)
    np.not_equal(sorted_cluster[1:], sorted_cluster[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    sizes = np.diff(np.append(starts, n))
    by_size = np.argsort(sizes, kind="stable")  # clusters by size, in cluster order within a size
    sorted_starts, sorted_sizes = starts[by_size], sizes[by_size]
    first = np.flatnonzero(np.append(True, sorted_sizes[1:] != sorted_sizes[:-1]))
    bounds = np.append(first, sizes.size)
    batches = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        positions = sorted_starts[lo:hi, None] + np.arange(sorted_sizes[lo])[None, :]
        batches.append(positions if order is None else order[positions])
    return batches, int(starts.size)


def block_covariance(
    rows: IntArray,
    row_variance: Array,
    level_codes: Sequence[IntArray],
    level_variances: Array,
    level_loadings: Sequence[Array] | None = None,
    whole: Sequence[bool] | None = None,
) -> Array:
    """``Theta_j`` (C, s, s) of the clusters whose rows are ``rows`` (C, s). ``whole[l]``: level ``l`` has one
    group per cluster (its codes are constant within every cluster; checked per block when not given)."""
    count, size = rows.shape
    theta = np.zeros((count, size, size))
    diagonal = theta.reshape(count, -1)[:, :: size + 1]
    diagonal += row_variance[rows]
    for level, (codes, variance) in enumerate(zip(level_codes, level_variances, strict=True)):
        c = np.asarray(codes)[rows]
        # one group per block (e.g. the block is a study): no comparison
        one_group = bool(np.all(c == c[:, :1])) if whole is None else whole[level]
        if level_loadings is None:
            theta += variance if one_group else variance * (c[:, :, None] == c[:, None, :])
        else:
            load = level_loadings[level][rows]
            scaled = variance if one_group else variance * (c[:, :, None] == c[:, None, :])
            theta += scaled * load[:, :, None] * load[:, None, :]
    return theta


def constant_within(codes: IntArray, cluster: IntArray) -> bool:
    """Whether ``codes`` take one value within every cluster (``cluster``: integer labels, usually 0..J-1)."""
    codes, cluster = np.asarray(codes), np.asarray(cluster)
    if cluster.size == 0:
        return True
    if cluster.dtype.kind not in "iu" or int(cluster.min()) < 0 or int(cluster.max()) >= 2 * cluster.size:
        cluster = np.unique(cluster, return_inverse=True)[1].reshape(-1)  # labels, not codes
    first = np.empty(int(cluster.max()) + 1, dtype=codes.dtype)
    first[cluster] = codes
    return bool(np.array_equal(first[cluster], codes))


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
