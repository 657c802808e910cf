"""Bilinear primitives (matmul, tensordot, einsum) against the unit multiplication table."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.functions import matmul_each


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


def _one_direction(order: int, shape, rng, zero_last: bool) -> mc.Tensor:
    """x + h (i_1 + ... + i_k) v as one-direction numbers; with ``zero_last`` the top
    coefficient is zero, as a parameter perturbed along one direction carries it."""
    t = mc.perturb(rng.normal(size=shape), [rng.normal(size=shape)] * order, 0.5)
    if zero_last:
        t.data[-1] = 0.0
    return t


@given(
    left=st.sampled_from(["general 1", "general 2", "one direction 2", "one direction 3"]),
    zero_last=st.booleans(), widths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    switch=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_matmul_each_matches_component_pair_products(left, zero_last, widths, switch, seed):
    """``matmul_each`` (a convolution's weight times its columns, chunk after chunk, its
    side of the product prepared once) on every chunk against the unit rule: chunks wide
    and narrow (the block-matrix GEMM and the pair products), a left operand with a zero top
    coefficient, and chunks that change kind half-way (the preparation is redone)."""
    rng = np.random.default_rng(seed)
    kind, order = left.rsplit(" ", 1)
    order = int(order)
    if kind == "general":
        a = mc.from_parts(rng.normal(size=(2**order, 3, 4)))
    else:
        a = _one_direction(order, (3, 4), rng, zero_last)

    def chunk(i: int, width: int) -> mc.Tensor:
        if switch and i >= len(widths) // 2:  # the later chunks: real, then complex
            return mc.from_parts(rng.normal(size=(1 + (i % 2), 4, width)))
        if kind == "general":
            return mc.from_parts(rng.normal(size=(2**order, 4, width)))
        return _one_direction(order, (4, width), rng, zero_last=False)

    chunks = [chunk(i, width) for i, width in enumerate(widths)]
    got = list(matmul_each(a, iter(chunks)))
    assert len(got) == len(chunks)
    for product, b in zip(got, chunks):
        want = _reference(a.parts, b.parts, np.matmul)
        np.testing.assert_allclose(product.parts, want, rtol=1e-12, atol=1e-12)
