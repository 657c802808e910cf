"""Shared strategies and independent references for the multicomplex core tests.

The strategies are ``mcnet.testing.strategies``'s, with this suite's default shape.  The
references call nothing of mcnet's algebra: they are written from the definition (the unit
product rule on the ``parts`` layout, the idempotent split of C^n) so that a test comparing
mcnet against them checks two different computations.
"""

from __future__ import annotations

import numpy as np

from mcnet.testing import strategies


def parts_arrays(order: int, shape: tuple[int, ...] = (3,), scale: float = 2.0):
    """API-layout coefficients ``(2**order, *shape)`` with every entry in [-scale, scale]."""
    return strategies.parts(order, shape, scale=scale)


def dominant_parts(order: int, shape: tuple[int, ...] = (3,), ratio: float = 0.9):
    """Coefficients whose real part in [0.5, 3] dominates: sum |imaginary coefs| <= ratio * real
    (every idempotent component in the right half plane, off the branch cuts)."""
    return strategies.parts(order, shape, ratio=ratio)


def reference_mul(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Product on the parts layout from the unit rule e_a e_b = (-1)^popcount(a & b) e_(a^b)."""
    n = max(len(pa), len(pb))
    out = np.zeros((n,) + np.broadcast_shapes(pa.shape[1:], pb.shape[1:]))
    for a in range(len(pa)):
        for b in range(len(pb)):
            sign = -1.0 if bin(a & b).count("1") % 2 else 1.0
            out[a ^ b] += sign * pa[a] * pb[b]
    return out


def norm1(parts: np.ndarray) -> np.ndarray:
    """Sum of |coefficients| per element: submultiplicative, |ab| <= |a| |b|."""
    return np.abs(parts).sum(axis=0)


def one_parts(order: int, shape: tuple[int, ...]) -> np.ndarray:
    """The parts of the multicomplex number 1."""
    p = np.zeros((2**order, *shape))
    p[0] = 1.0
    return p


def idempotent_apply(f, parts: np.ndarray) -> np.ndarray:
    """f(z) for an analytic f given on complex arrays, by the idempotent split of C^n.

    z = z1 + z2 i_n with z1, z2 in C^(n-1) is (z1 - i_1 z2) e+ + (z1 + i_1 z2) e-,
    e+- = (1 +- i_1 i_n)/2, a ring isomorphism onto C^(n-1) x C^(n-1); so
    f(z) = (A + B)/2 + i_n i_1 (A - B)/2 with A = f(z1 - i_1 z2), B = f(z1 + i_1 z2).
    On complex pairs (real, i_1) multiplying by i_1 is multiplying by 1j.  This forms
    small coefficients as differences, so it is a reference for O(1) parts only.
    """
    if len(parts) == 1:
        return np.asarray(f(parts[0].astype(complex))).real[None]
    comps = parts[0::2] + 1j * parts[1::2]
    out = _idempotent_comps(f, comps)
    result = np.empty((2 * len(out),) + out.shape[1:])
    result[0::2], result[1::2] = out.real, out.imag
    return result


def _idempotent_comps(f, c: np.ndarray) -> np.ndarray:
    if len(c) == 1:
        return np.asarray(f(c[0]), dtype=complex)[None]
    h = len(c) // 2
    z1, z2 = c[:h], c[h:]
    a = _idempotent_comps(f, z1 - 1j * z2)
    b = _idempotent_comps(f, z1 + 1j * z2)
    return np.concatenate([(a + b) / 2, 1j * (a - b) / 2])


def assert_parts_close(got: np.ndarray, want: np.ndarray, scale, rtol: float = 1e-12) -> None:
    """|got - want| <= rtol * scale elementwise, with scale broadcast over the components."""
    err = np.abs(np.asarray(got) - np.asarray(want))
    bound = rtol * np.broadcast_to(scale, err.shape[1:])
    worst = np.max(err / np.maximum(bound, np.finfo(float).tiny))
    assert worst <= 1.0, f"error {err.max():.3e} exceeds {rtol:g} x scale (ratio {worst:.3g})"
