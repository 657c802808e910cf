"""Shampoo (Gupta, Koren & Singer 2018, "Shampoo: Preconditioned Stochastic Tensor
Optimization", ICML), in its matrix form per parameter tensor."""

from __future__ import annotations

import math
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import Solver, State, StepInfo, check_count, check_positive


def inverse_root(matrix, power: float, floor: float):
    """matrix^(-1/power) of a symmetric positive definite matrix by eigendecomposition, in
    float64 (the small eigenvalues decide the root), returned in the matrix's dtype.
    Eigenvalues are floored at ``floor`` (the epsilon the statistics started from, which
    they never go below in exact arithmetic) so that rounding cannot produce a negative one."""
    xp = array_module(matrix)
    a = matrix.astype(xp.float64)
    values, vectors = xp.linalg.eigh((a + a.T) * 0.5)
    values = xp.maximum(values, floor) ** (-1.0 / power)
    return ((vectors * values) @ vectors.T).astype(matrix.dtype)


class Shampoo(Solver):
    """Shampoo (Gupta et al. 2018, Algorithm 1), one preconditioner pair per parameter.

    A parameter of ndim >= 2 is the matrix G of shape (shape[0], prod(shape[1:])):
    L += G G^T, R += G^T G (from eps I), W -= lr L^(-1/4) G R^(-1/4); a 1-D parameter gets
    the diagonal form L += g^2, W -= lr g / sqrt(L). The inverse roots are recomputed every
    ``update_every`` steps (first on step 1) and cached in the state as ``L{i}_root``,
    ``R{i}_root``. With ``momentum`` the preconditioned direction D accumulates as
    buf = momentum buf + D (heavy ball, as torch.optim.SGD without dampening) and
    W -= lr buf; the statistics always see the raw gradient.
    """

    name = "shampoo"

    def __init__(
        self, lr: float = 1e-1, eps: float = 1e-4, update_every: int = 1, momentum: float = 0.0
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.eps = check_positive("eps", eps)
        self.update_every = check_count("update_every", update_every)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)

    @staticmethod
    def _blocks(shapes) -> list[tuple[int, int, int, int]]:
        """(offset, size, rows, columns) of each parameter in the flat vector; columns = 0
        for a 1-D parameter (the diagonal form)."""
        blocks, offset = [], 0
        for shape in shapes:
            size = math.prod(shape)
            if len(shape) >= 2:
                blocks.append((offset, size, int(shape[0]), size // int(shape[0])))
            else:
                blocks.append((offset, size, size, 0))
            offset += size
        return blocks

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        blocks = self._blocks(oracle.shapes)
        if blocks and blocks[-1][0] + blocks[-1][1] != w.shape[0]:
            raise ValueError(
                f"the oracle's parameter shapes hold {blocks[-1][0] + blocks[-1][1]} numbers, "
                f"w has {w.shape[0]}"
            )
        state: State = {"t": 0}
        root = self.eps**-0.25  # (eps I)^(-1/4), replaced on the first step
        for i, (_, size, rows, columns) in enumerate(blocks):
            if columns:
                state[f"L{i}"] = self.eps * xp.eye(rows, dtype=w.dtype)
                state[f"R{i}"] = self.eps * xp.eye(columns, dtype=w.dtype)
                state[f"L{i}_root"] = root * xp.eye(rows, dtype=w.dtype)
                state[f"R{i}_root"] = root * xp.eye(columns, dtype=w.dtype)
            else:
                state[f"L{i}"] = xp.full(size, self.eps, dtype=w.dtype)
        if self.momentum:
            state["momentum_buffer"] = xp.zeros_like(w)
        return state

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        loss, grad = oracle.value_and_grad(w, batch)
        delta, state = self.update(grad, state, w, oracle.shapes)
        return w + delta, state, StepInfo(loss=loss, step_size=self.lr)

    def update(self, grad, state: State, w, shapes) -> tuple[Any, State]:
        """(delta, new state) from the batch gradient; ``shapes`` split the flat vector."""
        xp = array_module(w)
        t = int(state["t"]) + 1
        refresh = (t - 1) % self.update_every == 0
        new: State = {"t": t}
        pieces = []
        for i, (offset, size, rows, columns) in enumerate(self._blocks(shapes)):
            g = grad[offset : offset + size]
            if not columns:
                stat = state[f"L{i}"] + g * g
                new[f"L{i}"] = stat
                pieces.append(g / xp.sqrt(stat))
                continue
            g = g.reshape(rows, columns)
            left = state[f"L{i}"] + g @ g.T
            right = state[f"R{i}"] + g.T @ g
            new[f"L{i}"], new[f"R{i}"] = left, right
            if refresh:
                new[f"L{i}_root"] = inverse_root(left, 4, self.eps)
                new[f"R{i}_root"] = inverse_root(right, 4, self.eps)
            else:
                new[f"L{i}_root"], new[f"R{i}_root"] = state[f"L{i}_root"], state[f"R{i}_root"]
            pieces.append((new[f"L{i}_root"] @ g @ new[f"R{i}_root"]).ravel())
        direction = xp.concatenate(pieces) if pieces else xp.zeros_like(grad)
        if self.momentum:
            direction = self.momentum * state["momentum_buffer"] + direction
            new["momentum_buffer"] = direction
        return -self.lr * direction, new
