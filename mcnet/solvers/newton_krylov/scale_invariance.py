"""Steps of scale-invariant parameters, such as the weights of a layer followed by batch
normalisation. Batch norm normalises each output channel on its own, so the loss does not
change when one channel's weights (a row of a Linear weight, a filter of a convolution) are
scaled: the batch gradient is orthogonal to that row, and a step d of the row turns it by
an angle of about atan(|d| / |w|) instead of moving it. The quadratic model of the loss
along the step is good only while |d| is small against |w|: the Gauss-Newton matrix is flat
along such rows, and a Krylov step lengthens them many times over, where the loss no
longer changes at all."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def channel_rows(shapes: Sequence[tuple[int, ...]] | None, size: int) -> list[tuple[slice, int]]:
    """(slice of the flat parameter vector, number of output channels) per parameter tensor:
    the rows along its first axis for a tensor of two or more axes (Linear's (out, in),
    Conv2d's (out, in, kh, kw)), one row for a vector, and the whole vector as one row where
    the shapes are not known."""
    if not shapes:
        return [(slice(0, size), 1)]
    rows, start = [], 0
    for shape in shapes:
        stop = start + math.prod(shape)
        rows.append((slice(start, stop), shape[0] if len(shape) >= 2 else 1))
        start = stop
    return rows


def _invariant_rows(
    w, g_batch, part: slice, count: int, tolerance: float, min_rows: int = 1
) -> tuple[Any, Any] | None:
    """(which of a tensor's ``count`` rows are orthogonal to their batch gradient to within
    ``tolerance`` / sqrt(n), n numbers in a row (two unrelated vectors have a cosine of
    order 1 / sqrt(n)), the rows' norms); None unless more than half of the rows with a
    gradient are, and at least ``min_rows`` have one: batch norm makes a layer's channels
    invariant together, while a row of an ordinary layer is orthogonal to its gradient by
    chance in about 0.8 tolerance of the steps."""
    n = (part.stop - part.start) // count
    if n < 2:
        return None
    w_rows = w[part].reshape(count, n)
    g_rows = g_batch[part].reshape(count, n)
    w_norm = (w_rows * w_rows).sum(axis=1) ** 0.5
    g_norm = (g_rows * g_rows).sum(axis=1) ** 0.5
    radial = abs((w_rows * g_rows).sum(axis=1))
    measured = (w_norm > 0) & (g_norm > 0)
    orthogonal = measured & (radial <= tolerance / math.sqrt(n) * w_norm * g_norm)
    rows = int(measured.sum())
    if rows < min_rows or 2 * int(orthogonal.sum()) <= rows:
        return None
    return orthogonal, w_norm


def scale_invariant_tensors(
    w, g_batch, rows: Sequence[tuple[slice, int]], tolerance: float = 1e-2
) -> list[slice]:
    """The slices of the tensors whose rows are scale-invariant together: a weight followed
    by batch normalisation. Its rows' cosines are of order 1e-5, but up to 1e-2 for a
    channel of small variance, where batch norm's epsilon counts (the sigmoid BN networks
    of the suite), hence the wider ``tolerance`` than a single row's. At least 3 rows with
    a gradient are asked for: at this tolerance a one-row tensor (a regression's head)
    passed by chance about once a run, and with few live rows (dead ReLUs) so can two."""
    return [
        part
        for part, count in rows
        if _invariant_rows(w, g_batch, part, count, tolerance, min_rows=3) is not None
    ]


def limit_scale_invariant_steps(
    dw, w, g_batch, rows: Sequence[tuple[slice, int]], limit: float
) -> tuple[Any, int]:
    """(dw with each scale-invariant row's part shortened to at most ``limit`` times the
    row's norm, the number of rows shortened). A row counts as scale-invariant where its
    batch gradient is orthogonal to it to within 1e-3 / sqrt(n) (batch normalisation's
    epsilon leaves a cosine of order 1e-5), in a tensor where most rows are
    (`_invariant_rows`). (A channel with a tiny variance is only nearly invariant, as
    epsilon dominates it; it is left alone.)"""
    limited = 0
    for part, count in rows:
        invariant = _invariant_rows(w, g_batch, part, count, 1e-3)
        if invariant is None:
            continue
        orthogonal, w_norm = invariant
        n = (part.stop - part.start) // count
        d_rows = dw[part].reshape(count, n)
        d_norm = (d_rows * d_rows).sum(axis=1) ** 0.5
        over = orthogonal & (d_norm > limit * w_norm)
        shortened = int(over.sum())
        if shortened:
            if not limited:
                dw = dw.copy()
            shortening = dw[part].reshape(count, n)  # a view of the copy
            shortening[over] *= (limit * w_norm[over] / d_norm[over])[:, None]
            limited += shortened
    return dw, limited
