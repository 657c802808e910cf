"""LeNet-5 (sigmoid) at batch 128 on one thread: mcnet's derivatives vs PyTorch's.

mcnet (float64 and float32): ``Objective.value_and_grad``, ``hvp``, ``curvature``,
``directional`` of order 3 and 4, and one plain forward (``Objective.value``: network + loss).
PyTorch CPU, if ``import torch`` works, in the same run on the same network and parameters
(state dict copied): gradient, HVP by double backward, HVP as ``jvp(grad(f))`` (torch.func),
and one forward.  Every mcnet number is first checked against the PyTorch one.

Targets (ratios of median times): hvp <= 0.6 x torch HVP, curvature <= 0.5 x torch HVP (+ one
dot product), gradient <= 1.0 x torch gradient, order-k directional <= (k+1)^2 x one forward.

    python benchmarks/bench_nn.py [--repeats R] [--batch N] [--mnist FILE] [--profile]

Writes ``benchmarks/results/nn_lenet5.json`` (and prints a cProfile of ``hvp`` with
``--profile``).  Input: the first N images of the MNIST t10k file when found, else random.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba (via mcnet) is imported

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    RESULTS,
    environment,
    markdown_table,
    median_time,
    single_thread,
    write_json,
)

import mcnet as mc  # noqa: E402
from mcnet.datasets import read_idx  # noqa: E402
from mcnet.nn import (  # noqa: E402
    CrossEntropyLoss,
    Objective,
    models,  # noqa: E402
    parameters_to_vector,
)

MNIST_TEST = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
DEFAULT_MNIST = Path("/work/shared/data/mnist")


def load_batch(n: int, folder: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The first n MNIST test images (NCHW in [0, 1]) and labels, or random ones."""
    for root in [folder, DEFAULT_MNIST, Path(os.environ.get("MCNET_DATA", "~")).expanduser()]:
        if root is not None and (root / MNIST_TEST).exists():
            images = read_idx(root / MNIST_TEST)[:n].astype(np.float64) / 255.0
            labels = read_idx(root / MNIST_LABELS)[:n].astype(np.int64)
            return images[:, None], labels, f"MNIST {root / MNIST_TEST}"
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 28, 28)), rng.integers(0, 10, n), "random (MNIST file not found)"


def time_mcnet(net, batch, dtype, repeats: int) -> tuple[dict, dict]:
    """Median seconds of each derivative, and the values (for the cross-check)."""
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
    }
    times = {name: median_time(fn, repeats) for name, fn in calls.items()}
    values = {"grad": calls["value_and_grad"]()[1], "hvp": calls["hvp"](), "v": v, "w": w}
    return times, values


def time_torch(net, batch, dtype, repeats: int, v: np.ndarray) -> tuple[dict, dict] | None:
    """The same network in PyTorch (CPU, one thread): gradient, HVP two ways, forward."""
    try:
        import torch
    except ImportError:
        return None
    from torch import func, nn

    torch.set_num_threads(1)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tnet = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    ).to(tdtype)  # fmt: skip
    tnet.load_state_dict({k: torch.from_numpy(a) for k, a in net.state_dict().items()})
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

    def hvp_double_backward():
        g = torch.autograd.grad(loss_fn(tnet(x), y), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, tv))
        return torch.autograd.grad(dot, params)

    def loss_of(p: dict):
        return loss_fn(func.functional_call(tnet, p, (x,)), y)

    primal = {n: p.detach() for n, p in zip(names, params)}
    tangent = dict(zip(names, tv))

    def hvp_jvp_of_grad():
        return func.jvp(func.grad(loss_of), (primal,), (tangent,))[1]

    calls = {
        "torch_forward": forward,
        "torch_grad": grad,
        "torch_hvp_double_backward": hvp_double_backward,
        "torch_hvp_jvp_of_grad": hvp_jvp_of_grad,
    }
    times = {name: median_time(fn, repeats) for name, fn in calls.items()}
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()  # noqa: E731
    values = {
        "grad": flat(grad()),
        "hvp": flat(hvp_double_backward()),
        "hvp_jvp": flat([hvp_jvp_of_grad()[n] for n in names]),
        "version": torch.__version__,
    }
    return times, values


def ratios(times: dict) -> dict:
    """Each target ratio and its limit."""
    out = {}
    for k in (3, 4):
        ratio = times[f"directional{k}"] / times["forward"]
        out[f"directional{k} / forward"] = (ratio, (k + 1) ** 2)
    if "torch_grad" in times:
        out["value_and_grad / torch grad"] = (times["value_and_grad"] / times["torch_grad"], 1.0)
        hvp_ref = times["torch_hvp_double_backward"]
        out["hvp / torch HVP"] = (times["hvp"] / hvp_ref, 0.6)
        out["curvature / torch HVP"] = (times["curvature"] / hvp_ref, 0.5)
    return out


def profile_hvp(net, batch, top: int = 25) -> str:
    """cProfile of 5 float64 hvp calls, sorted by own time."""
    net.to(dtype=np.float64)
    objective = Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    v = np.random.default_rng(1).standard_normal(w.shape)
    objective.hvp(w, v, batch)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        objective.hvp(w, v, batch)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--mnist", type=Path, default=None, help="folder with " + MNIST_TEST)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of hvp")
    parser.add_argument("--out", type=Path, default=RESULTS / "nn_lenet5.json")
    args = parser.parse_args()

    x, y, source = load_batch(args.batch, args.mnist)
    mc.nn.manual_seed(0)
    net = models.lenet5("sigmoid")
    state = net.state_dict()
    result: dict = {"environment": environment(), "input": source, "batch": args.batch,
                    "repeats": args.repeats, "threads": 1, "by_dtype": {}}  # fmt: skip
    torch_version = None
    with single_thread():
        for dtype in (np.float64, np.float32):
            net.load_state_dict(state)
            times, values = time_mcnet(net, (x, y), dtype, args.repeats)
            torch_run = time_torch(net, (x, y), dtype, args.repeats, values["v"])
            check = {}
            if torch_run is not None:
                torch_times, torch_values = torch_run
                times.update(torch_times)
                torch_version = torch_values["version"]
                pairs = (("grad", values["grad"], torch_values["grad"]),
                         ("hvp", values["hvp"], torch_values["hvp"]),
                         ("hvp_jvp", values["hvp"], torch_values["hvp_jvp"]))  # fmt: skip
                for key, ours, theirs in pairs:
                    scale = np.max(np.abs(theirs))
                    check[key] = float(np.max(np.abs(ours - theirs)) / scale)
            name = np.dtype(dtype).name
            result["by_dtype"][name] = {
                "median_s": times,
                "ratios": {k: {"ratio": r, "limit": lim, "met": r <= lim}
                           for k, (r, lim) in ratios(times).items()},  # fmt: skip
                "max_rel_diff_vs_torch": check,
            }
    result["torch"] = torch_version or "not installed: PyTorch columns skipped"

    for name, entry in result["by_dtype"].items():
        print(f"\nLeNet-5 (sigmoid), batch {args.batch}, {name}, one thread; input: {source}")
        rows = [[op, f"{t * 1e3:.2f}"] for op, t in entry["median_s"].items()]
        print(markdown_table(["operation", "median ms"], rows))
        rows = [[k, f"{r['ratio']:.2f}", f"<= {r['limit']}", "yes" if r["met"] else "NO"]
                for k, r in entry["ratios"].items()]  # fmt: skip
        print(markdown_table(["ratio", "measured", "target", "met"], rows))
        if entry["max_rel_diff_vs_torch"]:
            print("max |mcnet - torch| / max |torch|:", entry["max_rel_diff_vs_torch"])
    if torch_version is None:
        print("\nPyTorch is not installed: the torch comparison was skipped.")
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    if args.profile:
        print("\ncProfile of 5 float64 hvp calls:\n")
        net.load_state_dict(state)
        print(profile_hvp(net, (x, y)))


if __name__ == "__main__":
    main()
