"""mcnet's derivatives against PyTorch's on the CPU, one network of the zoo at a time.

``--model``: LeNet-5 (sigmoid, average pool; batch 128 of MNIST's test split), the autoencoder
784-1000-500-250-30 and mirror (sigmoid, BCE with logits against the pixels; batch 128),
VGG-11 (BatchNorm on batch statistics, ELU; batch 32 of random 3x32x32 images, as CIFAR-10
does not ship) or an MLP 784-512-256-10 (ReLU; batch 128); ``all`` runs the four in turn.

mcnet: ``Objective.value``, ``value_and_grad``, ``hvp``, ``curvature``,
``gauss_newton_product`` (and ``directional`` of order 3 and 4 with ``--directional``).
PyTorch CPU, when ``import torch`` works, in the same process on the same network,
parameters and batch (state dict copied): forward, gradient (backward), HVP by double
backward and by ``jvp(grad)``, and the Gauss-Newton product J^T H_L J v (``func.jvp``, the
loss's Hessian product in the outputs, ``func.vjp``).  The loss and every derivative are
first checked against PyTorch's.

All calls, mcnet's and PyTorch's, are timed in turn, R times (one warm-up first), so that
each mcnet call and the PyTorch call it is compared with see the same load; a ratio is the
median mcnet time over the median PyTorch time.  ``--pairs`` times each mcnet call and its
PyTorch counterpart in turn instead, pair after pair.  The thread's CPU time
(``time.thread_time``, one thread only) is recorded too.

The target ratios (issue 26), one thread, both dtypes:
  gradient     value_and_grad / PyTorch backward                 <= 1.0  (LeNet-5: 0.8)
  H v          hvp / PyTorch double-backward HVP                 <= 1.0  (LeNet-5: 0.5)
  v^T H v      curvature / (PyTorch double-backward HVP + dot)   <= 0.8  (LeNet-5: 0.4)
and float32 never slower than float64 (printed when both dtypes run).

    python benchmarks/bench_nn.py --model lenet5|autoencoder|vgg11|mlp|all
        --dtype float32|float64|both [--threads 1[,2]] [--repeats 9] [--pairs]
        [--batch N] [--mnist DIR] [--directional] [--profile] [--gemms] [--out FILE]

Threads: for each count, ``torch.set_num_threads(t)`` and threadpoolctl's limit for NumPy's
BLAS (mcnet's Numba loops are single-threaded).  MNIST: DIR, else /work/shared/data/mnist,
else $MCNET_DATA, else random images.  Writes ``benchmarks/results/nn_<model>_<dtype>.json``
(commit, CPU, BLAS, load averages, times, ratios), or everything to ``--out``.  Instead of
the timings, ``--profile`` prints a cProfile of 10 ``value_and_grad`` and 10 ``hvp`` calls
per dtype, and ``--gemms`` the time of every GEMM that goes through
``gemm._real_view_matmul`` in a pass, by operand shapes (one thread; neither writes a
result file).
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
from mcnet.nn import Objective, models, parameters_to_vector  # noqa: E402

DEFAULT_MNIST = Path("/work/shared/data/mnist")
TARGETS = {  # name: (mcnet call, PyTorch call)
    "gradient": ("value_and_grad", "torch_grad"),
    "hvp": ("hvp", "torch_hvp"),
    "curvature": ("curvature", "torch_hvp_dot"),
    "gauss_newton": ("gauss_newton", "torch_gauss_newton"),
}
# Target ratios (issue 26), one thread, both dtypes; LeNet-5's are raised.
LIMITS = {"gradient": 1.0, "hvp": 1.0, "curvature": 0.8, "gauss_newton": None}
LENET_LIMITS = {"gradient": 0.8, "hvp": 0.5, "curvature": 0.4, "gauss_newton": None}


def load_mnist(n: int, folder: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
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


def torch_vgg11(nn):
    """kuangliu/pytorch-cifar's VGG-11 with BatchNorm and ELU: ``models.vgg11``'s layout."""
    layers, channels = [], 3
    for item in models.VGG11_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ELU()]
        channels = item
    layers.append(nn.AvgPool2d(1, 1))

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.flatten = nn.Flatten()
            self.classifier = nn.Linear(channels, 10)

        def forward(self, x):
            return self.classifier(self.flatten(self.features(x)))

    return VGG()


def torch_lenet5(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )  # fmt: skip


def torch_autoencoder(nn):
    sizes = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i not in (3, 7):  # the 30-unit code and the output logits are linear
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


MLP_SIZES = [784, 512, 256, 10]


def torch_mlp(nn):
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))  # fmt: skip


def flat_mnist_batch(n, folder):
    x, _, source = load_mnist(n, folder)
    flat = x.reshape(n, -1)
    return flat, flat, source + ", flattened; targets: the pixels"


def flat_mnist_labels(n, folder):
    x, y, source = load_mnist(n, folder)
    return x.reshape(n, -1), y, source + ", flattened"


def cifar_shaped_batch(n, folder):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3, 32, 32)), rng.integers(0, 10, n), "random 3x32x32 images"


# name: (description, mcnet network, PyTorch network, loss class name, batch maker, batch)
MODELS = {
    "lenet5": ("LeNet-5, sigmoid, average pool", lambda: models.lenet5("sigmoid"),
               torch_lenet5, "CrossEntropyLoss", load_mnist, 128),
    "autoencoder": ("autoencoder 784-1000-500-250-30 and mirror, sigmoid, BCE with logits",
                    lambda: models.autoencoder("sigmoid"), torch_autoencoder,
                    "BCEWithLogitsLoss", flat_mnist_batch, 128),
    "vgg11": ("VGG-11, BatchNorm (batch statistics), ELU, 3x32x32", models.vgg11, torch_vgg11,
              "CrossEntropyLoss", cifar_shaped_batch, 32),
    "mlp": ("MLP 784-512-256-10, ReLU", lambda: models.mlp(MLP_SIZES, "relu"), torch_mlp,
            "CrossEntropyLoss", flat_mnist_labels, 128),
}  # fmt: skip


def thread_limit(threads: int):
    """NumPy's BLAS limited to ``threads`` (threadpoolctl), if threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: threadpoolctl is not installed; BLAS may use any number of threads")
        return nullcontext()
    return threadpool_limits(threads)


def mcnet_calls(model: str, net, batch, dtype, directional: bool = False) -> tuple[dict, dict]:
    """mcnet's timed calls, and their values for the cross-check."""
    net.to(dtype=dtype)
    x, y = batch[0].astype(dtype), batch[1]
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    objective = Objective(net, getattr(mc.nn, MODELS[model][3])())
    w = parameters_to_vector(net).astype(dtype)
    v = np.random.default_rng(1).standard_normal(w.shape).astype(dtype)
    b = (x, y)
    calls = {
        "forward": lambda: objective.value(w, b),
        "value_and_grad": lambda: objective.value_and_grad(w, b),
        "hvp": lambda: objective.hvp(w, v, b),
        "curvature": lambda: objective.curvature(w, v, b),
        "gauss_newton": lambda: objective.gauss_newton_product(w, v, b),
    }
    if directional:
        calls["directional3"] = lambda: objective.directional(w, [v] * 3, b)
        calls["directional4"] = lambda: objective.directional(w, [v] * 4, b)
    values = {"loss": calls["forward"](), "grad": calls["value_and_grad"]()[1],
              "hvp": calls["hvp"](), "curvature": calls["curvature"](),
              "gauss_newton": calls["gauss_newton"](), "v": v}  # fmt: skip
    return calls, values


def torch_calls(model: str, net, batch, dtype, v: np.ndarray) -> tuple[dict, dict] | None:
    """The same network in PyTorch on the CPU, or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import func, nn

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tnet = MODELS[model][2](nn).to(tdtype)
    tnet.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in net.state_dict().items()})
    # batch statistics, never updating running ones: as mcnet's Objective (and func.* allow)
    func.replace_all_batch_norm_modules_(tnet)
    x = torch.from_numpy(batch[0].astype(dtype))
    y = torch.from_numpy(batch[1].astype(dtype) if batch[1].dtype.kind == "f" else batch[1])
    params = list(tnet.parameters())
    names = [name for name, _ in tnet.named_parameters()]
    pieces = np.split(v, np.cumsum([p.numel() for p in params])[:-1])
    tv = [torch.from_numpy(piece.reshape(p.shape)) for piece, p in zip(pieces, params)]
    loss_fn = getattr(nn, MODELS[model][3])()

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

    def gauss_newton():  # J^T H_L J v, H_L the loss's Hessian in the outputs
        logits, jv = func.jvp(logits_of, (primal,), (tangent,))
        hl_jv = func.jvp(func.grad(lambda z: loss_fn(z, y)), (logits,), (jv,))[1]
        return func.vjp(logits_of, primal)[1](hl_jv)[0]

    calls = {"torch_forward": forward, "torch_grad": grad, "torch_hvp": hvp,
             "torch_hvp_dot": hvp_dot, "torch_hvp_jvp": hvp_jvp,
             "torch_gauss_newton": gauss_newton}  # fmt: skip
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    values = {
        "loss": forward().item(),
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
PAIRS = [(ours, theirs) for ours, theirs in TARGETS.values()] + [("forward", "torch_forward")]


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


def relative_difference(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def run_one(model: str, net, state, batch, dtype, threads: int, repeats: int,
            pairs: bool = False, directional: bool = False) -> dict:  # fmt: skip
    """Times and ratios for one dtype and thread count."""
    net.load_state_dict(state)
    calls, values = mcnet_calls(model, net, batch, dtype, directional)
    torch_run = torch_calls(model, net, batch, dtype, values["v"])
    check = {}
    if torch_run is not None:
        import torch

        torch.set_num_threads(threads)
        tcalls, tvalues = torch_run
        calls.update(tcalls)
        for key in ("loss", "grad", "hvp", "curvature", "gauss_newton"):
            check[key] = relative_difference(values[key], tvalues[key])
        check["hvp_jvp"] = relative_difference(values["hvp"], tvalues["hvp_jvp"])
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
    limits = LENET_LIMITS if model == "lenet5" else LIMITS
    for name, (ours, theirs) in TARGETS.items():
        if theirs in wall:
            r, limit = wall[ours] / wall[theirs], limits[name]
            met = None if limit is None else r <= limit
            entry["ratios"][name] = {"ratio": r, "limit": limit, "met": met}
            if threads == 1:
                entry["ratios"][name]["cpu_ratio"] = cpu[ours] / cpu[theirs]
    for k in (3, 4) if directional else ():
        r = wall[f"directional{k}"] / wall["forward"]
        entry["ratios"][f"directional{k} / forward"] = {"ratio": r, "limit": (k + 1) ** 2,
                                                        "met": r <= (k + 1) ** 2}  # fmt: skip
    return entry


def profile(model: str, net, state, batch, dtype, top: int = 30) -> str:
    """cProfile of 10 value_and_grad and 10 hvp calls, by own time."""
    net.load_state_dict(state)
    calls, _ = mcnet_calls(model, net, batch, dtype)
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


def gemm_times(model: str, net, state, batch, dtype, calls: int = 10) -> str:
    """Every GEMM of ``value_and_grad``, ``hvp`` and ``curvature`` by operand shapes: ms per
    pass, the mean of ``calls`` passes (``mcnet.algebra.gemm._real_view_matmul``, through
    which every GEMM of a multicomplex product goes, wrapped with a timer)."""
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
    calls_of, _ = mcnet_calls(model, net, batch, dtype)
    out = []
    gemm_module._real_view_matmul = timed
    try:
        for name in ("value_and_grad", "hvp", "curvature"):
            calls_of[name]()
            times.clear()
            start = time.perf_counter()
            for _ in range(calls):
                calls_of[name]()
            whole = (time.perf_counter() - start) / calls
            rows = [
                [f"{a} @ {b}", f"{da} @ {db}", f"{n // calls}", f"{1e3 * t / calls:.3f}"]
                for (a, b, da, db), (n, t) in sorted(times.items(), key=lambda kv: -kv[1][1])
            ]
            total = sum(t for _, t in times.values()) / calls
            out.append(
                f"--- {model} {np.dtype(dtype).name} {name}: {1e3 * whole:.2f} ms a pass, "
                f"GEMMs {1e3 * total:.2f} ms (OpenBLAS kernels: {blas().get('architecture')})\n"
                + markdown_table(["shapes", "dtypes", "calls a pass", "ms a pass"], rows)
            )
    finally:
        gemm_module._real_view_matmul = gemm
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="lenet5")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--threads", default="1", help="thread counts, e.g. 1 or 1,2")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=None, help="default: the model's own")
    parser.add_argument("--mnist", type=Path, default=None, help="folder with MNIST's files")
    parser.add_argument("--profile", action="store_true", help="print cProfiles (one thread)")
    parser.add_argument(
        "--gemms",
        action="store_true",
        help="print the GEMMs of value_and_grad, hvp and curvature by shape (one thread)",
    )
    parser.add_argument("--pairs", action="store_true",
                        help="time each pair in turn instead of every call in turn")  # fmt: skip
    parser.add_argument("--directional", action="store_true",
                        help="also time directional derivatives of order 3 and 4")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="one JSON file for everything")
    args = parser.parse_args()
    model_names = list(MODELS) if args.model == "all" else [args.model]
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    thread_counts = [int(t) for t in args.threads.split(",")]
    note = blas_note()
    if note:
        print(note)
    results: dict = {}
    for model in model_names:
        description, build, _, _, make_batch, default_batch = MODELS[model]
        n = args.batch or default_batch
        x, y, source = make_batch(n, args.mnist)
        mc.nn.manual_seed(0)
        net = build()
        state = net.state_dict()
        if args.profile or args.gemms:
            with thread_limit(1):
                for name in dtypes:
                    dtype = np.dtype(name).type
                    if args.profile:
                        print(profile(model, net, state, (x, y), dtype))
                    if args.gemms:
                        print(gemm_times(model, net, state, (x, y), dtype))
            continue
        for name in dtypes:
            dtype = np.dtype(name).type
            result = {"environment": environment(), "input": source, "batch": n,
                      "repeats": args.repeats, "model": model, "network": description,
                      "command": "python benchmarks/bench_nn.py " + " ".join(sys.argv[1:]),
                      "by_threads": {}}  # fmt: skip
            for threads in thread_counts:
                entry = run_one(model, net, state, (x, y), dtype, threads, args.repeats,
                                args.pairs, args.directional)  # fmt: skip
                result["by_threads"][str(threads)] = entry
            try:
                import torch

                result["torch"] = torch.__version__
            except ImportError:
                result["torch"] = "not installed: PyTorch columns skipped"
            results[f"{model}_{name}"] = result
            print_result(name, result)
            if args.out is None:
                path = RESULTS / f"nn_{model}_{name}.json"
                write_json(path, result)
                print(f"wrote {path}")
        if len(dtypes) == 2:
            print_dtype_check(model, results[f"{model}_float32"], results[f"{model}_float64"])
    if args.out is not None and results:
        write_json(args.out, results)
        print(f"wrote {args.out}")


def print_dtype_check(model: str, single: dict, double: dict) -> None:
    """Target: float32 is never slower than float64 for the same network."""
    for t in single["by_threads"]:
        s, d = single["by_threads"][t]["median_wall_s"], double["by_threads"][t]["median_wall_s"]
        ratios = {ours: s[ours] / d[ours] for ours, _ in TARGETS.values()}
        worst = max(ratios.values())
        print(f"{model}, {t} thread(s): float32 / float64 time: "
              + ", ".join(f"{k} {r:.2f}" for k, r in ratios.items())
              + f" ({'met' if worst <= 1.0 else 'NOT met'}: <= 1.0)")  # fmt: skip


def print_result(name: str, result: dict) -> None:
    threads = list(result["by_threads"])
    env = result["environment"]
    order = result["by_threads"][threads[0]]["timing_order"]
    print(f"\n{result['network']}, batch {result['batch']}, {name}; input: {result['input']}; "
          f"commit {env['commit']}; PyTorch {result['torch']}; timing: {order}; OpenBLAS "
          f"kernels: {env['blas'].get('architecture')}")  # fmt: skip
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
