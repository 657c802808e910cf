"""Elementwise cost of mcnet against NumPy complex and a plain component-by-component version.

    python benchmarks/bench_elementwise.py [--size 1000000] [--repeats 5]

exp, tanh, sigmoid and multiply on float64 arrays of --size elements, orders 1-3, one thread.
Variants, all checked against mcnet's result before they are timed:
- mcnet: the public functions (``mc.exp(t)``, ``a * b``) on order-n tensors, so any faster
  kernel behind them is picked up;
- NumPy complex128 (order 1 only): ``np.exp(z)``, ``np.tanh(z)``, ``1 / (1 + np.exp(-z))``,
  ``z * w``;
- component-by-component NumPy on the API ``parts`` layout ``(2**n, N)``: the product as a loop
  over component pairs, e_a e_b = (-1)^popcount(a & b) e_(a xor b), and the functions as the
  Taylor polynomial about the real part, sum_k f^(k)(x) s^k / k! (s = z - x), up to k = n,
  which is exact to roundoff for the tiny imaginary parts of a derivative computation;
- real NumPy float64 (order 0) on the real parts, the cost being multiplied.
Writes benchmarks/results/elementwise.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported (by mcnet)

import argparse  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
from _report import (  # noqa: E402
    RESULTS,
    environment,
    markdown_table,
    median_time,
    single_thread,
    write_atomic,
    write_json,
)

import mcnet as mc  # noqa: E402

ORDERS = (1, 2, 3)
STEP = 2.0**-30  # size of the imaginary parts, as in a derivative computation
AGREEMENT = 1e-10  # largest difference per component, relative to that component's size


# --- the component-by-component reference on the parts layout -------------------------------


def parts_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multicomplex product on parts: every pair of components, e_i e_j = +-e_(i xor j)."""
    out = np.zeros_like(a)
    for i in range(len(a)):
        for j in range(len(b)):
            if (i & j).bit_count() % 2:
                out[i ^ j] -= a[i] * b[j]
            else:
                out[i ^ j] += a[i] * b[j]
    return out


def derivative_tower(name: str, x: np.ndarray, order: int) -> list[np.ndarray]:
    """f(x), f'(x), ..., f^(order)(x) of exp, tanh or sigmoid, written out by hand."""
    if name == "exp":
        return [np.exp(x)] * (order + 1)
    if name == "tanh":
        t = np.tanh(x)
        d1 = 1 - t * t
        tower = [t, d1, -2 * t * d1, -2 * d1 * (1 - 3 * t * t)]
    else:  # sigmoid
        s = 1 / (1 + np.exp(-x))
        d1 = s * (1 - s)
        tower = [s, d1, d1 * (1 - 2 * s), d1 * (1 - 6 * s + 6 * s * s)]
    return tower[: order + 1]


def parts_taylor(name: str, parts: np.ndarray) -> np.ndarray:
    """f(z) = sum_k f^(k)(x) s^k / k!, k <= n, s = z - x, by Horner's rule on parts."""
    order = len(parts).bit_length() - 1
    tower = derivative_tower(name, parts[0], order)
    s = parts.copy()
    s[0] = 0.0
    out = np.zeros_like(parts)
    out[0] = tower[order] / math.factorial(order)
    for k in range(order - 1, -1, -1):
        out = parts_product(out, s)
        out[0] += tower[k] / math.factorial(k)
    return out


# --- the NumPy complex (order 1) and real (order 0) versions --------------------------------

COMPLEX = {
    "exp": np.exp,
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}


def random_parts(rng: np.random.Generator, order: int, size: int) -> np.ndarray:
    """Real parts in [-3, 3], the coefficient of k units of size STEP**k (a perturbed point)."""
    parts = rng.standard_normal((2**order, size))
    parts[0] = rng.uniform(-3.0, 3.0, size)
    for m in range(1, 2**order):
        parts[m] *= STEP ** m.bit_count()
    return parts


def check_agreement(label: str, got: np.ndarray, want: np.ndarray) -> None:
    scale = np.max(np.abs(want), axis=1, keepdims=True)
    worst = float(np.max(np.abs(got - want) / scale))
    if not worst <= AGREEMENT:
        raise SystemExit(f"{label} disagrees with mcnet: relative difference {worst:.2e}")


def variants(name: str, a: np.ndarray, b: np.ndarray) -> dict:
    """The four ways to compute op ``name`` on parts a (and b, for multiply), as thunks.

    Conversions to each variant's layout happen here, outside the timed calls.
    """
    ta, tb = mc.from_parts(a), mc.from_parts(b)
    za, zb = a[0] + 1j * a[1], b[0] + 1j * b[1]
    real_a, real_b = a[0].copy(), b[0].copy()
    if name == "multiply":
        return {
            "mcnet": lambda: ta * tb,
            "componentwise": lambda: parts_product(a, b),
            "complex": lambda: za * zb,
            "real": lambda: real_a * real_b,
        }
    mc_function, np_function = getattr(mc, name), COMPLEX[name]
    return {
        "mcnet": lambda: mc_function(ta),
        "componentwise": lambda: parts_taylor(name, a),
        "complex": lambda: np_function(za),
        "real": lambda: np_function(real_a),
    }


def measure(size: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for order in ORDERS:
        a, b = random_parts(rng, order, size), random_parts(rng, order, size)
        for name in ("exp", "tanh", "sigmoid", "multiply"):
            run = variants(name, a, b)
            want = run["mcnet"]().parts
            check_agreement(f"component-wise {name}, order {order}", run["componentwise"](), want)
            # the real part of f(x + tiny) is f(x) to roundoff: the order-0 run is comparable
            check_agreement(f"real {name}", run["real"]()[None], want[:1])
            row = {
                "op": name,
                "order": order,
                "size": size,
                "mcnet_s": median_time(run["mcnet"], repeats),
                "componentwise_s": median_time(run["componentwise"], repeats),
                "real_s": median_time(run["real"], repeats),
                "complex_s": None,
            }
            if order == 1:
                z = run["complex"]()
                check_agreement(f"NumPy complex {name}", np.stack([z.real, z.imag]), want)
                row["complex_s"] = median_time(run["complex"], repeats)
            rows.append(row)
            print(f"  {name:8s} order {order}: mcnet {row['mcnet_s'] * 1e3:8.2f} ms", flush=True)
    return rows


def markdown(rows: list[dict], env: dict, repeats: int) -> str:
    def ms(seconds):
        return "—" if seconds is None else f"{seconds * 1e3:.2f}"

    def ratio(num, den):
        return "—" if num is None or den is None else f"{num / den:.2f}"

    table = [
        [
            r["op"],
            r["order"],
            ms(r["mcnet_s"]),
            ms(r["complex_s"]),
            ms(r["componentwise_s"]),
            ms(r["real_s"]),
            ratio(r["mcnet_s"], r["complex_s"]),
            ratio(r["componentwise_s"], r["mcnet_s"]),
            ratio(r["mcnet_s"], r["real_s"]),
        ]
        for r in rows
    ]
    size = rows[0]["size"]
    return (
        f"# Elementwise functions, {size:,} float64 elements, one thread\n\n"
        f"Median of {repeats} runs (after one warm-up), milliseconds. mcnet commit "
        f"{env['commit']}, NumPy {env['numpy']}, {env['cpu']}, {env['date']}.\n"
        "NumPy complex = complex128 (order 1 only); component-wise = a plain NumPy loop over "
        "the parts layout (product over component pairs, functions as the order-n Taylor "
        "polynomial about the real part); real = the same function on float64 (order 0).\n\n"
        + markdown_table(
            [
                "op",
                "order",
                "mcnet ms",
                "NumPy complex ms",
                "component-wise ms",
                "real ms",
                "mcnet / complex",
                "component-wise / mcnet",
                "mcnet / real",
            ],
            table,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="elements per array")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant")
    args = parser.parse_args()
    env = environment()
    print(f"mcnet commit {env['commit']}, NumPy {env['numpy']}, {env['cpu']}")
    with single_thread():
        rows = measure(args.size, args.repeats)
    text = markdown(rows, env, args.repeats)
    write_atomic(RESULTS / "elementwise.md", text)
    write_json(
        RESULTS / "elementwise.json", {"environment": env, "repeats": args.repeats, "results": rows}
    )
    print(text)


if __name__ == "__main__":
    main()
