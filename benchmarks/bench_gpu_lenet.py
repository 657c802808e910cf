"""LeNet-5 on the GPU (issue 9's device measurements; issue 12's NK epoch on MNIST).

1. H v of LeNet-5 (sigmoid, average pool) at batch 128 of MNIST: mcnet's ``Objective.hvp``
   (one complex forward and backward, CuPy and Numba CUDA) against PyTorch CUDA's
   double-backward HVP on the same network, parameters, batch and v; both synchronised,
   timed in turn, median of ``--repeats``; the two results checked against each other.
2. One epoch of Newton-Krylov (Algorithm 1, ``newton-krylov-cheap``, ``newton-krylov-gn``
   and ``newton-krylov-fast``) on LeNet-5 with
   ``mc.fit`` on the device, batch 128, over MNIST's training split when its files are
   there, else the 10,000 test images: the solver time of the epoch (the seed reports 680 s
   per epoch of 60,000 images on a GTX 1080 Ti; issue 9 aims at <= 68 s).

    python benchmarks/bench_gpu_lenet.py [--device cuda] [--mnist DIR] [--repeats 9]
        [--examples N] [--out FILE]

``--device cpu`` runs the same code on the CPU (how the script is checked without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import environment, write_json  # noqa: E402

import mcnet as mc  # noqa: E402
from mcnet import nn  # noqa: E402
from mcnet.algebra.multicomplex import array_module  # noqa: E402

DEFAULT_MNIST = Path("/work/shared/data/mnist")


def load_mnist(folder: Path, examples: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST's training split if its files are in ``folder``, else its test split."""
    for split in ("train", "test"):
        try:
            images, labels = mc.datasets.mnist(root=folder, split=split)
        except (OSError, ValueError):
            continue
        n = len(images) if examples is None else min(examples, len(images))
        return images[:n], labels[:n].astype(np.int64), f"MNIST {split} split, {n} images"
    raise SystemExit(f"no MNIST files in {folder} (train-* or t10k-*)")


def synchronise(device: str):
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device == "cpu":
        return lambda: None
    import cupy
    import torch

    def wait() -> None:
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    return wait


def torch_lenet(net, device: str):
    """PyTorch's LeNet-5 (sigmoid, average pool) with ``net``'s parameters (on the CPU)."""
    import torch
    from torch import nn as tnn

    model = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.Sigmoid(), tnn.AvgPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.Sigmoid(), tnn.AvgPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.Sigmoid(), tnn.Linear(120, 84), tnn.Sigmoid(),
        tnn.Linear(84, 10),
    ).to(torch.float64)  # fmt: skip
    model.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in net.state_dict().items()})
    return model.to(device)


def hvp_timings(images, labels, device: str, repeats: int) -> dict:
    """mcnet's H v against PyTorch's double-backward HVP on ``device``."""
    import torch

    nn.manual_seed(0)
    net = nn.models.lenet5(activation="sigmoid")
    model = torch_lenet(net, device)  # from the parameters while they are on the CPU
    net.to(device)
    xp = array_module(net.parameters()[0].value.data)
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    v_host = np.random.default_rng(1).standard_normal(w.size)
    v = xp.asarray(v_host)
    batch = (xp.asarray(images[:128]), xp.asarray(labels[:128]))

    tx = torch.from_numpy(images[:128]).to(device)
    ty = torch.from_numpy(labels[:128]).to(device)
    params = list(model.parameters())
    pieces = np.split(v_host, np.cumsum([p.numel() for p in params])[:-1])
    tv = [torch.from_numpy(piece.reshape(p.shape)).to(device) for piece, p in zip(pieces, params)]
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_hvp():
        g = torch.autograd.grad(loss_fn(model(tx), ty), params, create_graph=True)
        return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, tv)), params)

    def mcnet_hvp():
        return objective.hvp(w, v, batch)

    wait = synchronise(device)
    ours = mcnet_hvp()
    ours = ours.get() if hasattr(ours, "get") else np.asarray(ours)
    theirs = torch.cat([t.reshape(-1) for t in torch_hvp()]).detach().cpu().numpy()
    difference = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    times: dict[str, list[float]] = {"mcnet_hvp": [], "torch_hvp": []}
    for _ in range(repeats):
        for name, call in (("mcnet_hvp", mcnet_hvp), ("torch_hvp", torch_hvp)):
            wait()
            start = time.perf_counter()
            call()
            wait()
            times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(t) for k, t in times.items()}
    return {
        "median_s": medians,
        "ratio": medians["mcnet_hvp"] / medians["torch_hvp"],
        "max_relative_difference": difference,
        "torch": torch.__version__,
    }


def newton_krylov_epoch(images, labels, device: str, solver: str) -> dict:
    """One epoch of ``solver`` on LeNet-5 on ``device``: solver time and losses."""
    nn.manual_seed(0)
    net = nn.models.lenet5(activation="sigmoid").to(device)
    history = mc.fit(
        net,
        nn.CrossEntropyLoss(),
        (images, labels),
        mc.solvers.make(solver),
        epochs=1,
        batch_size=128,
        seed=0,
        progress=False,
    )
    return {
        "solver_time_s": history.epoch_time[-1],
        "train_loss": history.train_loss,
        "iterations": len(history.records),
        "seconds_by_kind": history.seconds_by_kind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--examples",
        type=int,
        default=None,
        help="train the NK epoch on the first N images (default: all)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    if args.device == "cpu":  # one thread for both libraries, as in bench_nn.py
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)
    images, labels, source = load_mnist(args.mnist, args.examples)
    report = {
        "environment": environment(),
        "device": args.device,
        "data": source,
        "hvp": hvp_timings(images, labels, args.device, args.repeats),
    }
    print(
        f"H v, LeNet-5, batch 128, {args.device}: mcnet "
        f"{report['hvp']['median_s']['mcnet_hvp'] * 1e3:.2f} ms, PyTorch "
        f"{report['hvp']['median_s']['torch_hvp'] * 1e3:.2f} ms, ratio "
        f"{report['hvp']['ratio']:.3f} (target <= 0.6); results differ by "
        f"{report['hvp']['max_relative_difference']:.1e}",
        flush=True,
    )
    for solver in (
        "newton-krylov",
        "newton-krylov-cheap",
        "newton-krylov-gn",
        "newton-krylov-fast",
    ):
        epoch = newton_krylov_epoch(images, labels, args.device, solver)
        report[solver] = epoch
        print(
            f"{solver}, one epoch of {source} on {args.device}: "
            f"{epoch['solver_time_s']:.1f} s of solver time, training loss "
            f"{epoch['train_loss'][0]:.4f} -> {epoch['train_loss'][-1]:.4f}",
            flush=True,
        )
    if args.out is not None:
        write_json(args.out, report)
    else:
        print(json.dumps(report["hvp"], indent=1))


if __name__ == "__main__":
    main()
