"""The seed paper's Fig. 1: relative error against step size h for f(x) = e^x/(x^2+1) at x = 10.

    python benchmarks/fig1_step_error.py

Writes benchmarks/results/fig1_step_error.{png,md,json} and exits non-zero if the complex
step leaves roundoff level for any h <= 1e-8 (or the bicomplex step while h^2 is a normal
float64).  The computation is ``mcnet.demo.step_error_table``, shared with the demo.
"""

from __future__ import annotations

import sys

import numpy as np
from _report import RESULTS, environment, markdown_table, write_atomic, write_json

from mcnet.demo import ERROR_CLIP, ROUNDOFF, exact_derivatives, plot_step_error, step_error_table

EXPONENTS = range(1, 201)  # h = 1e-1 ... 1e-200, every decade
TABLE_EXPONENTS = [*range(1, 21), *range(30, 201, 10)]  # the markdown table's rows


def check(table: dict) -> list[str]:
    """Where the complex steps are not at roundoff although they should be."""
    h, errors = table["h"], table["errors"]
    failures = []
    for name, lowest in (("complex step", 0.0), ("bicomplex step", 1e-150)):
        bad = (h <= 1e-8) & (h >= lowest) & (errors[name] > ROUNDOFF)
        failures += [
            f"{name}: relative error {e:.2e} > {ROUNDOFF:g} at h = {s:.0e}"
            for s, e in zip(h[bad], errors[name][bad], strict=True)
        ]
    return failures


def markdown(table: dict, env: dict) -> str:
    names = list(table["errors"])
    rows = [
        [f"1e-{e}"] + [f"{table['errors'][n][e - 1]:.2e}" for n in names] for e in TABLE_EXPONENTS
    ]
    first, second, third = exact_derivatives(table["x"])
    return (
        f"# Fig. 1: relative error vs step h, f(x) = e^x/(x^2+1) at x = {table['x']:g}\n\n"
        f"Exact (closed forms in 40-digit decimal): f' = {first!r}, f'' = {second!r}.\n"
        f"First derivative: forward FD, central FD, complex step "
        f"(`mc.derivatives.multicomplex_step(f, x, [1], h)`)."
        f"\nSecond derivative: FD second difference, bicomplex step "
        f"(`mc.derivatives.multicomplex_step(f, x, [1, 1], h)`).\n\n"
        f"Relative errors are clipped at {ERROR_CLIP:g}: for h < 1e-16, x + h == x in float64 and"
        f" every FD quotient is 0 (error 1) or 0/0; the bicomplex step carries h^2 f'' in its"
        f" i1 i2 part, which leaves the float64 range below h ~ 1e-154 (subnormal, then 0/0)."
        f" mcnet's default step for order k, 2^(-400/k), stays clear of that.\n\n"
        + markdown_table(["h", *names], rows)
        + f"\nmcnet commit {env['commit']}, NumPy {env['numpy']}, {env['date']}.\n"
    )


def main() -> int:
    env = environment()
    table = step_error_table(exponents=EXPONENTS)
    write_atomic(RESULTS / "fig1_step_error.md", markdown(table, env))
    write_json(
        RESULTS / "fig1_step_error.json",
        {
            "environment": env,
            "x": table["x"],
            "exact": table["exact"],
            "h": table["h"].tolist(),
            "relative_error": {n: e.tolist() for n, e in table["errors"].items()},
        },
    )
    try:
        png = plot_step_error(table, RESULTS / "fig1_step_error.png")
        print(f"wrote {png}")
    except ImportError:
        print("matplotlib is not installed: no PNG (the table and JSON are written)")
    print((RESULTS / "fig1_step_error.md").read_text())
    failures = check(table)
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    if not failures:
        worst = float(np.max(table["errors"]["complex step"][table["h"] <= 1e-8]))
        print(f"OK: complex step at roundoff (worst {worst:.1e}) for every h in 1e-8 ... 1e-200")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
