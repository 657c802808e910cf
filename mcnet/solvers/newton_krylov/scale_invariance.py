"""Steps of scale-invariant parameter tensors, such as the weights of a layer followed by
batch normalisation: the loss does not change along w_l itself, so the batch gradient is
orthogonal to w_l, and a step d_l of that tensor turns it by an angle of about
atan(|d_l| / |w_l|) instead of moving it. The quadratic model of the loss along the step is
then good only while |d_l| is small against |w_l|: the Gauss-Newton matrix is flat along
such tensors and a Krylov step lengthens them many times over, where the loss no longer
changes at all."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def tensor_slices(shapes: Sequence[tuple[int, ...]] | None, size: int) -> list[slice]:
    """The slices of the flat parameter vector that hold each parameter tensor (the whole
    vector where the shapes are not known)."""
    if not shapes:
        return [slice(0, size)]
    slices, start = [], 0
    for shape in shapes:
        stop = start + math.prod(shape)
        slices.append(slice(start, stop))
        start = stop
    return slices


def limit_scale_invariant_steps(
    dw, w, g_batch, slices: Sequence[slice], limit: float
) -> tuple[Any, int]:
    """(dw with each scale-invariant tensor's part shortened to at most ``limit`` |w_l|, the
    number of tensors shortened). A tensor counts as scale-invariant where its batch gradient
    is orthogonal to it to within 1e-3 / sqrt(n_l) (batch normalisation's epsilon leaves a
    cosine of order 1e-5; two unrelated vectors of n_l numbers have one of order
    1 / sqrt(n_l))."""
    limited = 0
    for part in slices:
        n = part.stop - part.start
        if n < 2:
            continue
        w_l, g_l, d_l = w[part], g_batch[part], dw[part]
        w_norm = math.sqrt(float(w_l @ w_l))
        g_norm = math.sqrt(float(g_l @ g_l))
        if (
            w_norm == 0
            or g_norm == 0
            or abs(float(g_l @ w_l)) > 1e-3 / math.sqrt(n) * w_norm * g_norm
        ):
            continue
        d_norm = math.sqrt(float(d_l @ d_l))
        if d_norm > limit * w_norm:
            if not limited:
                dw = dw.copy()
            dw[part] *= dw.dtype.type(limit * w_norm / d_norm)
            limited += 1
    return dw, limited
