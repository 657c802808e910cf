"""Bilinear primitives (matmul, tensordot, einsum) against the unit multiplication table."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc


def _reference(p, q, product):
    """sum over component pairs: e_a e_b = (-1)^popcount(a & b) e_(a xor b)."""
    out = None
    for a in range(len(p)):
        for b in range(len(q)):
            term = product(p[a], q[b]) * (-1.0 if bin(a & b).count("1") % 2 else 1.0)
            if out is None:
                out = np.zeros((max(len(p), len(q)),) + np.shape(term))
            out[a ^ b] += term
    return out


SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (2, 4, 5)),
    ((4,), (4,)),
]


@given(
    shapes=st.sampled_from(SHAPES),
    orders=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    seed=st.integers(0, 2**16),
)
def test_matmul_matches_component_pair_products(shapes, orders, seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(2 ** orders[0],) + shapes[0])
    q = rng.normal(size=(2 ** orders[1],) + shapes[1])
    got = (mc.from_parts(p) @ mc.from_parts(q)).parts
    np.testing.assert_allclose(got, _reference(p, q, np.matmul), rtol=1e-12, atol=1e-12)


@given(orders=st.tuples(st.integers(0, 3), st.integers(0, 3)), seed=st.integers(0, 2**16))
def test_tensordot_and_einsum_match_component_pair_products(orders, seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(2 ** orders[0], 2, 3, 4))
    q = rng.normal(size=(2 ** orders[1], 3, 4, 5))
    a, b = mc.from_parts(p), mc.from_parts(q)
    want = _reference(p, q, lambda x, y: np.tensordot(x, y, axes=2))
    np.testing.assert_allclose(mc.tensordot(a, b, axes=2).parts, want, rtol=1e-12, atol=1e-12)
    got = mc.einsum("ijk,jkl->il", a, b).parts
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_matmul_rejects_mismatched_inner_dimensions():
    with pytest.raises(ValueError, match=r"\(3, 4\) @ \(5, 2\)"):
        mc.tensor(np.ones((3, 4))) @ mc.tensor(np.ones((5, 2)))
