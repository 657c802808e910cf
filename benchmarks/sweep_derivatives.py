"""Sweep of ``mc.derivative`` over functions x scales x orders x dtypes against mpmath.

Each call is one point; its result is classed against the contract of ``mc.derivative``
(1e-11 relative in float64, 1e-4 / 1e-3 in float32 up to / above order 4, wherever the true
value is a normal number of the dtype; ±inf or 0 where it overflows or underflows):

- right: meets the contract;
- refused: raised ``ArithmeticError`` (``mc.DerivativeError``) or ``ValueError``;
- nan: returned NaN at a point of the function's domain;
- wrong: returned any other number (a wrong finite value, a wrong infinity or zero).

Also prints the issue's five examples.  Functions a checkout lacks are skipped, so the same
script measures an older tree:

    PYTHONPATH=. python benchmarks/sweep_derivatives.py [--orders 1-8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mpderivatives import DOMAINS, reference  # noqa: E402

import mcnet as mc  # noqa: E402

NAMES = [
    "exp",
    "log",
    "sqrt",
    "power_2.5",
    "sin",
    "cos",
    "tan",
    "sinh",
    "cosh",
    "tanh",
    "arctan",
    "sigmoid",
    "softplus",
    "erf",
    "expm1",
    "log1p",
    "arcsin",
    "arccos",
    "arcsinh",
    "arctanh",
]
EXPONENTS = [-300, -200, -100, -30, -10, -3, 0, 3, 10, 30, 100, 200, 300]


def function(name: str):
    if name == "power_2.5":
        return lambda t: mc.power(t, 2.5)
    return getattr(mc, name, None)


def scales(name: str, dtype) -> list[float]:
    limit = 300 if dtype == np.float64 else 37
    magnitudes = [10.0**e for e in EXPONENTS if abs(e) <= limit]
    domain = DOMAINS.get(name, "all")
    if domain == "positive":
        return magnitudes
    if domain == "unit":
        small = [m for m in magnitudes if m < 1]
        near_one = [1.0 - 10.0**-e for e in (3, 7, 12)]
        return small + [-m for m in small] + near_one + [-v for v in near_one]
    if domain == "above_-1":
        return magnitudes + [-m for m in magnitudes if m < 1] + [-1.0 + 1e-3, -1.0 + 1e-9]
    return magnitudes + [-m for m in magnitudes]


def _in_domain(name: str, x: float) -> bool:
    domain = DOMAINS.get(name, "all")
    return {"positive": x > 0, "unit": abs(x) < 1, "above_-1": x > -1}.get(domain, True)


def classify(got, want: float, k: int, dtype) -> str:
    info = np.finfo(dtype)
    tiny, largest = float(info.tiny), float(info.max)
    tol = 1e-11 if dtype == np.float64 else (1e-4 if k <= 4 else 1e-3)
    if math.isnan(got):
        return "nan"
    if abs(want) > largest:
        ok = math.isinf(got) and math.copysign(1, got) == math.copysign(1, want)
    elif abs(want) < tiny:
        ok = abs(got) <= tiny
    else:
        ok = abs(got - want) <= tol * abs(want)
    return "right" if ok else "wrong"


def sweep(orders: list[int]) -> dict:
    counts: dict = {}
    examples: dict = {}
    for name in NAMES:
        f = function(name)
        if f is None:
            continue
        for dtype in (np.float64, np.float32):
            for x in scales(name, dtype):
                x = dtype(x)
                if not _in_domain(name, float(x)):  # rounded onto the boundary
                    continue
                for k in orders:
                    want = reference(name, float(x), k)
                    try:
                        with np.errstate(all="ignore"):
                            got = float(mc.derivative(f, x, k))
                        outcome = classify(got, want, k, dtype)
                    except (ArithmeticError, ValueError):
                        got, outcome = None, "refused"
                    key = (np.dtype(dtype).name, outcome)
                    counts[key] = counts.get(key, 0) + 1
                    if outcome in ("wrong", "nan") and len(examples.setdefault(key, [])) < 6:
                        examples[key].append((name, float(x), k, got, want))
    return {"counts": counts, "examples": examples}


def issue_examples() -> list[tuple[str, object, float]]:
    rows = [
        (
            "derivative(log, 1e-20, order=6)",
            lambda: mc.derivative(mc.log, 1e-20, order=6),
            reference("log", 1e-20, 6),
        ),
        (
            "derivative(sqrt, 1e-14, order=8)",
            lambda: mc.derivative(mc.sqrt, 1e-14, order=8),
            reference("sqrt", 1e-14, 8),
        ),
        (
            "derivative(sqrt, 1e-300, 1)",
            lambda: mc.derivative(mc.sqrt, 1e-300, 1),
            reference("sqrt", 1e-300, 1),
        ),
        (
            "derivative(exp, -500.0, 1)",
            lambda: mc.derivative(mc.exp, -500.0, 1),
            reference("exp", -500.0, 1),
        ),
    ]
    x = np.float32(1e-3)
    for k in (3, 4, 6):
        rows.append(
            (
                f"float32 derivative(log, 1e-3, {k})",
                lambda k=k: mc.derivative(mc.log, x, k),
                reference("log", float(x), k),
            )
        )
    out = []
    for label, call, want in rows:
        try:
            got = float(call())
        except ArithmeticError as exc:
            got = f"{type(exc).__name__}"
        out.append((label, got, want))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="1-8", help="orders, as first-last")
    parser.add_argument("--json", help="write the counts here")
    args = parser.parse_args()
    first, last = (int(v) for v in args.orders.split("-"))
    print("| call | mcnet | true | relative error |\n|---|---|---|---|")
    for label, got, want in issue_examples():
        error = abs(got - want) / abs(want) if isinstance(got, float) else math.nan
        shown = f"{got:.4g}" if isinstance(got, float) else got
        print(f"| `{label}` | {shown} | {want:.4g} | {error:.1e} |")
    start = time.perf_counter()
    result = sweep(list(range(first, last + 1)))
    seconds = time.perf_counter() - start
    print(f"\nsweep: {seconds:.0f} s")
    print("| dtype | right | refused | nan | wrong | total |\n|---|---|---|---|---|---|")
    for dtype in ("float64", "float32"):
        row = {o: result["counts"].get((dtype, o), 0) for o in ("right", "refused", "nan", "wrong")}
        total = sum(row.values())
        cells = " | ".join(f"{row[o]} ({row[o] / total:.1%})" for o in row)
        print(f"| {dtype} | {cells} | {total} |")
    for (dtype, outcome), cases in sorted(result["examples"].items()):
        print(
            f"{dtype} {outcome}, e.g.:",
            "; ".join(f"{n}^({k})({x:g}) = {g!r} (true {w:.4g})" for n, x, k, g, w in cases),
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{d} {o}": n for (d, o), n in result["counts"].items()}, indent=1)
        )


if __name__ == "__main__":
    main()
