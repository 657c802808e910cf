"""LeNet-5 (sigmoid, average pool) at batch 128: mcnet's derivatives against PyTorch's, CPU.

mcnet: ``Objective.value_and_grad``, ``hvp``, ``curvature``, ``directional`` of order 3 and 4,
``gauss_newton_product`` and one plain forward (``Objective.value``).  PyTorch CPU, when
``import torch`` works, in the same process on the same network, parameters and batch (state
dict copied): forward, gradient (backward), HVP by double backward and by ``jvp(grad)``, and
the Gauss-Newton product J^T H_L J v (``func.jvp`` of the logits, the softmax cross-entropy
Hessian written out, ``func.vjp``).  Every mcnet result is first checked against PyTorch's.

All calls, mcnet's and PyTorch's, are timed in turn, R times (one warm-up first), so that
each mcnet call and the PyTorch call it is compared with see the same load on a shared
machine; a ratio is the median mcnet time over the median PyTorch time.  In that order the
order-3/4 directional derivatives sweep the caches before the other calls; ``--pairs`` times
each mcnet call and its PyTorch counterpart in turn instead, pair after pair, with nothing
between them (on two threads PyTorch's float32 gradient then took 39 ms instead of 14 here;
on one thread the target ratios moved by at most 0.04: float32 gradient 1.04 -> 1.06,
float64 H v 0.51 -> 0.55).  Wall-clock times are the result; the thread's CPU time
(``time.thread_time``, one thread only) is recorded too, because on a loaded machine it does
not count the time the process waited for a core.

The three target ratios (issue 9), in both dtypes:
  gradient     value_and_grad / PyTorch backward                 <= 1.0
  H v          hvp / PyTorch double-backward HVP                 <= 0.6
  v^T H v      curvature / (PyTorch double-backward HVP + dot)   <= 0.5
and, against mcnet's own forward: directional of order k <= (k+1)^2 forwards. The
Gauss-Newton product (newton-krylov-gn's Krylov pass) is reported against PyTorch's, with
no target.

    python benchmarks/bench_nn.py --dtype float32 [--threads 1,2] [--repeats 9] [--pairs]
        [--batch 128] [--mnist DIR] [--profile] [--gemms] [--out FILE]

Threads: for each count, ``torch.set_num_threads(t)`` and threadpoolctl's limit for NumPy's
BLAS (mcnet's Numba loops are single-threaded).  Input: the first N MNIST test images
(``mc.datasets.mnist(root=DIR, split="test")``; DIR defaults to /work/shared/data/mnist, then
$MCNET_DATA), else random images.  Writes ``benchmarks/results/nn_lenet5_<dtype>.json``
(commit, CPU, BLAS, load averages, times, ratios), or everything to ``--out``.  Instead of
the timings, ``--profile`` prints a cProfile of 10 ``value_and_grad`` and 10 ``hvp`` calls
per dtype, and ``--gemms`` the time of every GEMM of an ``hvp`` and a ``curvature`` pass by
operand shapes (one thread; neither writes a result file).
"""

from __future__ import annotations

import os
import sys

_THREADS_ARG = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if _THREADS_ARG is None and "--threads" in sys.argv[:-1]:
    _THREADS_ARG = sys.argv[sys.argv.index("--threads") + 1]
# Numba reads its thread count once, at import (mcnet's loops do not use threads anyway)
_MOST_THREADS = max(int(t) for t in (_THREADS_ARG or "1,2").split(","))
os.environ.setdefault("NUMBA_NUM_THREADS", str(_MOST_THREADS))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import RESULTS, blas, blas_note, environment, markdown_table, write_json  # noqa: E402

import mcnet as mc  # noqa: E402
from mcnet.nn import CrossEntropyLoss, Objective, models, parameters_to_vector  # noqa: E402

DEFAULT_MNIST = Path("/work/shared/data/mnist")
TARGETS = {  # name: (mcnet call, PyTorch call, limit)
    "gradient": ("value_and_grad", "torch_grad", 1.0),
    "hvp": ("hvp", "torch_hvp", 0.6),
    "curvature": ("curvature", "torch_hvp_dot", 0.5),
    "gauss_newton": ("gauss_newton", "torch_gauss_newton", None),
}


def load_batch(n: int, folder: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The first n MNIST test images (NCHW in [0, 1], float64) and labels, or random ones."""
    roots = [folder, DEFAULT_MNIST, os.environ.get("MCNET_DATA")]
    for root in [Path(r).expanduser() for r in roots if r]:
        try:
            images, labels = mc.datasets.mnist(root=root, split="test")
        except (OSError, ValueError):
            continue
        return images[:n], labels[:n].astype(np.int64), f"MNIST test split from {root}"
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 28, 28)), rng.integers(0, 10, n), "random (MNIST not found)"


def thread_limit(threads: int):
    """NumPy's BLAS limited to ``threads`` (threadpoolctl), if threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: threadpoolctl is not installed; BLAS may use any number of threads")
        return nullcontext()
    return threadpool_limits(threads)


def mcnet_calls(net, batch, dtype) -> tuple[dict, dict]:
    """mcnet's timed calls, and their values for the cross-check."""
    net.to(dtype=dtype)
    x, y = batch[0].astype(dtype), batch[1]
    objective = Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net).astype(dtype)
    v = np.random.default_rng(1).standard_normal(w.shape).astype(dtype)
    b = (x, y)
    calls = {
        "forward": lambda: objective.value(w, b),
        "value_and_grad": lambda: objective.value_and_grad(w, b),
        "hvp": lambda: objective.hvp(w, v, b),
        "curvature": lambda: objective.curvature(w, v, b),
        "directional3": lambda: objective.directional(w, [v] * 3, b),
        "directional4": lambda: objective.directional(w, [v] * 4, b),
        "gauss_newton": lambda: objective.gauss_newton_product(w, v, b),
    }
    values = {"grad": calls["value_and_grad"]()[1], "hvp": calls["hvp"](),
              "curvature": calls["curvature"](), "gauss_newton": calls["gauss_newton"](),
              "v": v}  # fmt: skip
    return calls, values


def torch_calls(net, batch, dtype, v: np.ndarray) -> tuple[dict, dict] | None:
    """The same network in PyTorch on the CPU, or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import func, nn

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tnet = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    ).to(tdtype)  # fmt: skip
    tnet.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in net.state_dict().items()})
    x = torch.from_numpy(batch[0].astype(dtype))
    y = torch.from_numpy(batch[1])
    params = list(tnet.parameters())
    names = [name for name, _ in tnet.named_parameters()]
    pieces = np.split(v, np.cumsum([p.numel() for p in params])[:-1])
    tv = [torch.from_numpy(piece.reshape(p.shape)) for piece, p in zip(pieces, params)]
    loss_fn = nn.CrossEntropyLoss()

    def forward():
        with torch.no_grad():
            return loss_fn(tnet(x), y)

    def grad():
        return torch.autograd.grad(loss_fn(tnet(x), y), params)

    def hvp():
        g = torch.autograd.grad(loss_fn(tnet(x), y), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, tv))
        return torch.autograd.grad(dot, params)

    def hvp_dot():  # v^T H v the PyTorch way: an HVP, then a dot product with v
        return sum((hi * vi).sum() for hi, vi in zip(hvp(), tv)).item()

    def loss_of(p: dict):
        return loss_fn(func.functional_call(tnet, p, (x,)), y)

    primal = {n: p.detach() for n, p in zip(names, params)}
    tangent = dict(zip(names, tv))

    def hvp_jvp():
        return func.jvp(func.grad(loss_of), (primal,), (tangent,))[1]

    def logits_of(p: dict):
        return func.functional_call(tnet, p, (x,))

    def gauss_newton():  # J^T H_L J v, H_L of the mean cross-entropy: (diag(s) - s s^T) / n
        logits, jv = func.jvp(logits_of, (primal,), (tangent,))
        s = torch.softmax(logits, dim=1)
        hl_jv = (s * jv - s * (s * jv).sum(dim=1, keepdim=True)) / len(x)
        return func.vjp(logits_of, primal)[1](hl_jv)[0]

    calls = {"torch_forward": forward, "torch_grad": grad, "torch_hvp": hvp,
             "torch_hvp_dot": hvp_dot, "torch_hvp_jvp": hvp_jvp,
             "torch_gauss_newton": gauss_newton}  # fmt: skip
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    values = {
        "grad": flat(grad()),
        "hvp": flat(hvp()),
        "curvature": hvp_dot(),
        "hvp_jvp": flat([hvp_jvp()[n] for n in names]),
        "gauss_newton": flat([gauss_newton()[n] for n in names]),
        "version": torch.__version__,
    }
    return calls, values


# With --pairs, the calls timed together, in turn: each mcnet call with the PyTorch call it
# is compared with (the forwards with each other), the rest alone.
PAIRS = [(ours, theirs) for ours, theirs, _ in TARGETS.values()] + [("forward", "torch_forward")]


def time_interleaved(calls: dict, repeats: int, pairs: bool = False) -> tuple[dict, dict]:
    """Median wall and thread-CPU seconds of every call: every call in turn R times, or, with
    ``pairs``, each pair of ``PAIRS`` in turn R times, one pair after the other."""
    for fn in calls.values():
        fn()  # warm-up: Numba compilation, caches, allocator
    paired = {name for pair in PAIRS for name in pair}
    groups = [list(calls)] if not pairs else (
        [[n for n in pair if n in calls] for pair in PAIRS]
        + [[n] for n in calls if n not in paired])  # fmt: skip
    wall: dict = {name: [] for name in calls}
    cpu: dict = {name: [] for name in calls}
    for group in groups:
        for _ in range(repeats):
            for name in group:
                c0, t0 = time.thread_time(), time.perf_counter()
                calls[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()},
            {k: statistics.median(v) for k, v in cpu.items()})  # fmt: skip


def run_one(net, state, batch, dtype, threads: int, repeats: int,
            pairs: bool = False) -> dict:  # fmt: skip
    """Times and ratios for one dtype and thread count."""
    net.load_state_dict(state)
    calls, values = mcnet_calls(net, batch, dtype)
    torch_run = torch_calls(net, batch, dtype, values["v"])
    check = {}
    if torch_run is not None:
        import torch

        torch.set_num_threads(threads)
        tcalls, tvalues = torch_run
        calls.update(tcalls)
        for key in ("grad", "hvp", "gauss_newton"):
            ref = tvalues[key]
            check[key] = float(np.max(np.abs(values[key] - ref)) / np.max(np.abs(ref)))
        check["hvp_jvp"] = float(np.max(np.abs(values["hvp"] - tvalues["hvp_jvp"]))
                                 / np.max(np.abs(tvalues["hvp_jvp"])))  # fmt: skip
        check["curvature"] = abs(values["curvature"] - tvalues["curvature"]) / abs(
            tvalues["curvature"]
        )
    load_before = round(os.getloadavg()[0], 2)
    with thread_limit(threads):
        wall, cpu = time_interleaved(calls, repeats, pairs)
    entry: dict = {
        "threads": threads,
        "timing_order": "each pair in turn" if pairs else "all calls in turn",
        "load_average_1min": [load_before, round(os.getloadavg()[0], 2)],
        "median_wall_s": wall,
        "ratios": {},
        "max_rel_diff_vs_torch": check,
    }
    if threads == 1:
        entry["median_thread_cpu_s"] = cpu
    for name, (ours, theirs, limit) in TARGETS.items():
        if theirs in wall:
            r = wall[ours] / wall[theirs]
            met = None if limit is None else r <= limit
            entry["ratios"][name] = {"ratio": r, "limit": limit, "met": met}
            if threads == 1:
                entry["ratios"][name]["cpu_ratio"] = cpu[ours] / cpu[theirs]
    for k in (3, 4):
        r = wall[f"directional{k}"] / wall["forward"]
        entry["ratios"][f"directional{k} / forward"] = {"ratio": r, "limit": (k + 1) ** 2,
                                                        "met": r <= (k + 1) ** 2}  # fmt: skip
    return entry


def profile(net, state, batch, dtype, top: int = 30) -> str:
    """cProfile of 10 value_and_grad and 10 hvp calls, by own time."""
    net.load_state_dict(state)
    calls, _ = mcnet_calls(net, batch, dtype)
    out = []
    for name in ("value_and_grad", "hvp"):
        calls[name]()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(10):
            calls[name]()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        out.append(f"--- {np.dtype(dtype).name} {name} x10 ---\n{text.getvalue()}")
    return "\n".join(out)


def gemm_times(net, state, batch, dtype, calls: int = 10) -> str:
    """Every GEMM of ``hvp`` and ``curvature`` by operand shapes: ms per pass, the mean of
    ``calls`` passes (``mcnet.algebra.gemm._real_view_matmul``, through which every GEMM of a
    multicomplex product goes, wrapped with a timer)."""
    gemm_module = sys.modules["mcnet.algebra.gemm"]
    gemm = gemm_module._real_view_matmul
    times: dict = {}

    def timed(left, right, right_complex_only):
        start = time.perf_counter()
        result = gemm(left, right, right_complex_only)
        key = (left.shape, right.shape, left.dtype.name, right.dtype.name)
        count, total = times.get(key, (0, 0.0))
        times[key] = (count + 1, total + time.perf_counter() - start)
        return result

    net.load_state_dict(state)
    calls_of, _ = mcnet_calls(net, batch, dtype)
    out = []
    gemm_module._real_view_matmul = timed
    try:
        for name in ("hvp", "curvature"):
            calls_of[name]()
            times.clear()
            for _ in range(calls):
                calls_of[name]()
            rows = [
                [f"{a} @ {b}", f"{da} @ {db}", f"{n // calls}", f"{1e3 * t / calls:.3f}"]
                for (a, b, da, db), (n, t) in sorted(times.items(), key=lambda kv: -kv[1][1])
            ]
            total = sum(t for _, t in times.values()) / calls
            out.append(
                f"--- {np.dtype(dtype).name} {name}: GEMMs {1e3 * total:.2f} ms a pass "
                f"(OpenBLAS kernels: {blas().get('architecture')})\n"
                + markdown_table(["shapes", "dtypes", "calls a pass", "ms a pass"], rows)
            )
    finally:
        gemm_module._real_view_matmul = gemm
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--threads", default="1,2", help="thread counts, e.g. 1 or 1,2")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--mnist", type=Path, default=None, help="folder with MNIST's files")
    parser.add_argument("--profile", action="store_true", help="print cProfiles (one thread)")
    parser.add_argument(
        "--gemms",
        action="store_true",
        help="print the GEMMs of hvp and curvature by shape (one thread)",
    )
    parser.add_argument("--pairs", action="store_true",
                        help="time each pair in turn instead of every call in turn")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="one JSON file for everything")
    args = parser.parse_args()
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    thread_counts = [int(t) for t in args.threads.split(",")]
    note = blas_note()
    if note:
        print(note)

    x, y, source = load_batch(args.batch, args.mnist)
    mc.nn.manual_seed(0)
    net = models.lenet5("sigmoid")
    state = net.state_dict()
    if args.profile or args.gemms:
        with thread_limit(1):
            for name in dtypes:
                dtype = np.dtype(name).type
                if args.profile:
                    print(profile(net, state, (x, y), dtype))
                if args.gemms:
                    print(gemm_times(net, state, (x, y), dtype))
        return
    results = {}
    for name in dtypes:
        dtype = np.dtype(name).type
        result = {"environment": environment(), "input": source, "batch": args.batch,
                  "repeats": args.repeats, "network": "LeNet-5, sigmoid, average pool",
                  "command": "python benchmarks/bench_nn.py " + " ".join(sys.argv[1:]),
                  "by_threads": {}}  # fmt: skip
        torch_version = None
        for threads in thread_counts:
            entry = run_one(net, state, (x, y), dtype, threads, args.repeats, args.pairs)
            result["by_threads"][str(threads)] = entry
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:
            pass
        result["torch"] = torch_version or "not installed: PyTorch columns skipped"
        results[name] = result
        print_result(name, result, args.batch, source)
        if args.out is None:
            path = RESULTS / f"nn_lenet5_{name}.json"
            write_json(path, result)
            print(f"wrote {path}")
    if args.out is not None:
        write_json(args.out, results)
        print(f"wrote {args.out}")


def print_result(name: str, result: dict, batch: int, source: str) -> None:
    threads = list(result["by_threads"])
    env = result["environment"]
    order = result["by_threads"][threads[0]]["timing_order"]
    print(f"\nLeNet-5 (sigmoid), batch {batch}, {name}; input: {source}; commit {env['commit']}; "
          f"PyTorch {result['torch']}; timing: {order}; OpenBLAS kernels: "
          f"{env['blas'].get('architecture')}")  # fmt: skip
    head = ["operation"] + [f"median ms, {t} thread(s)" for t in threads]
    ops = list(result["by_threads"][threads[0]]["median_wall_s"])
    rows = [[op] + [f"{result['by_threads'][t]['median_wall_s'][op] * 1e3:.2f}" for t in threads]
            for op in ops]  # fmt: skip
    print(markdown_table(head, rows))
    head = ["ratio", "target"] + [f"{t} thread(s)" for t in threads]
    if "1" in result["by_threads"]:
        head.append("1 thread, CPU time")
    rows = []
    for key, first in result["by_threads"][threads[0]]["ratios"].items():
        row = [key, "none" if first["limit"] is None else f"<= {first['limit']}"]
        for t in threads:
            r = result["by_threads"][t]["ratios"][key]
            verdict = "" if r["met"] is None else f" ({'met' if r['met'] else 'NOT met'})"
            row.append(f"{r['ratio']:.2f}{verdict}")
        if "1" in result["by_threads"]:
            cpu = result["by_threads"]["1"]["ratios"][key].get("cpu_ratio")
            row.append(f"{cpu:.2f}" if cpu is not None else "")
        rows.append(row)
    print(markdown_table(head, rows))
    loads = {t: result["by_threads"][t]["load_average_1min"] for t in threads}
    print("1-minute load average (before, after) by thread count:", loads)
    for t in threads:
        diff = result["by_threads"][t]["max_rel_diff_vs_torch"]
        if diff:
            print(f"max |mcnet - torch| / max |torch| ({t} thread(s)):",
                  {k: f"{v:.1e}" for k, v in diff.items()})  # fmt: skip


if __name__ == "__main__":
    main()
