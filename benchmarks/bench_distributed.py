"""The global (full-data) gradient on a Dask LocalCluster against the number of workers, and
a Newton-Krylov epoch with and without the cluster.

LeNet-5 (sigmoid, 61,706 parameters, float64) on the MNIST test images (random images of the
same shape when the files are not found):

1. ``Oracle.value_and_grad(w)`` on this process, BLAS on one thread (as every Dask worker
   runs: Dask sets OMP/MKL/OPENBLAS_NUM_THREADS=1) and on its default threads;
2. ``DaskOracle.value_and_grad(w)`` on a LocalCluster of W single-threaded worker processes,
   for each W of ``--workers``: the median time, the start-up (cluster + data placement),
   the largest relative difference from (1), and the fixed cost of one call -- the same
   call on one example per worker, i.e. sending w and collecting W gradients of P floats
   with (almost) nothing to compute; and that cost again for a 2-parameter model;
3. one Newton-Krylov epoch (seeded minibatches, as `mcnet.fit` takes them) on the first
   ``--epoch-examples`` images, with a plain Oracle and with a DaskOracle of the largest W,
   the time split by evaluation kind.

    python benchmarks/bench_distributed.py [--mnist DIR] [--examples N] [--workers 1,2]
        [--repeats R] [--chunk-size C] [--epoch-examples N] [--batch B] [--max-krylov K]

Writes ``benchmarks/results/distributed.{json,md}``. The machine's 1-minute load average is
recorded before and after: on a shared machine other processes take cores from the workers.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba (via mcnet) is imported;
# the LocalCluster's worker processes inherit it

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    RESULTS,
    call_times,
    environment,
    markdown_table,
    single_thread,
    write_atomic,
    write_json,
)

import mcnet as mc  # noqa: E402
from mcnet import nn  # noqa: E402
from mcnet.datasets import batches  # noqa: E402
from mcnet.solvers import NewtonKrylov  # noqa: E402
from mcnet.training import Oracle  # noqa: E402
from mcnet.training.distributed import DaskOracle  # noqa: E402

DEFAULT_MNIST = Path("/work/shared/data/mnist")


def load(root: Path, n: int) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    try:
        images, labels = mc.datasets.mnist(root=root, split="test")
        return (images[:n], labels[:n]), f"MNIST test, {root}"
    except (FileNotFoundError, OSError):
        rng = np.random.default_rng(0)
        return (rng.random((n, 1, 28, 28)), rng.integers(0, 10, n)), "random (no MNIST files)"


def lenet() -> nn.Module:
    nn.manual_seed(0)
    return nn.models.lenet5()


def timings(fn, repeats: int) -> dict:
    """Median and fastest of ``repeats`` calls after one warm-up: on a shared machine the
    fastest is the one least slowed by other processes."""
    seconds = call_times(fn, repeats)
    return {"median": statistics.median(seconds), "min": min(seconds), "all": seconds}


def relative_difference(a: tuple, b: tuple) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - y)) / np.max(np.abs(y))) for x, y in zip(a, b))


def time_cluster(data, workers: int, chunk_size: int, repeats: int, reference: tuple) -> dict:
    """Global-gradient timings on a fresh LocalCluster of ``workers`` processes."""
    net = lenet()
    start = time.perf_counter()
    oracle = DaskOracle(
        mc.Objective(net, nn.CrossEntropyLoss()),
        data,
        chunk_size,
        scheduler="local",
        workers=workers,
        timeout=120,
    )
    startup = time.perf_counter() - start
    shards = oracle.shards
    with oracle:
        w = oracle.initial_point()
        result = oracle.value_and_grad(w)
        cpu_before = oracle.client.run(time.process_time)
        seconds = timings(lambda: oracle.value_and_grad(w), repeats)
        cpu_after = oracle.client.run(time.process_time)
        # CPU seconds each worker process spent per call: the work the shards divide,
        # whatever other processes on the machine take from the wall-clock time
        cpu = sorted((cpu_after[k] - cpu_before[k]) / (repeats + 1) for k in cpu_after)
        # the fixed cost of a call: one example per worker, the same P floats each way
        few = (data[0][:workers], data[1][:workers])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with DaskOracle(
                mc.Objective(lenet(), nn.CrossEntropyLoss()), few, 1, scheduler=oracle.client
            ) as tiny:
                fixed = timings(lambda: tiny.value_and_grad(w), max(repeats, 5))
            nn.manual_seed(0)
            x = np.random.default_rng(0).standard_normal((workers, 1))
            with DaskOracle(
                mc.Objective(nn.Linear(1, 1), nn.MSELoss()), (x, x), 1, scheduler=oracle.client
            ) as smallest:
                w2 = smallest.initial_point()
                latency = timings(lambda: smallest.value_and_grad(w2), max(repeats, 5))
    return {
        "workers": workers,
        "shards": shards,
        "startup_s": startup,
        "global_gradient_s": seconds,
        "worker_cpu_s_per_call": cpu,
        "fixed_cost_per_call_s": fixed,
        "latency_2_parameters_s": latency,
        "max_rel_diff_vs_oracle": relative_difference(result, reference),
    }


def newton_krylov_epoch(oracle, data, batch_size: int, max_krylov: int) -> dict:
    """One epoch as `mcnet.fit` runs it (init = line 1's global gradient, then a step per
    seeded minibatch), timed by evaluation kind, with the CPU seconds of this process and of
    each worker process (load-independent, unlike the wall-clock time)."""
    solver = NewtonKrylov(max_krylov=max_krylov)
    w = oracle.initial_point()
    # first passes of each kind load compiled kernels, in every process: not part of an epoch
    batch = (data[0][:batch_size], data[1][:batch_size])
    oracle.value_and_grad(w)
    oracle.value_grad_and_hvp(w, w, batch)
    oracle.curvature(w, w, batch)
    oracle.counts.clear()
    oracle.seconds.clear()
    client = getattr(oracle, "client", None)
    workers_before = client.run(time.process_time) if client is not None else {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    state = solver.init(oracle, w)
    steps = 0
    for batch in batches(data, batch_size, seed=0, epoch=0):
        w, state, _ = solver.step(oracle, w, batch, state)
        steps += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    workers_after = client.run(time.process_time) if client is not None else {}
    return {
        "seconds": seconds,
        "steps": steps,
        "cpu_s_this_process": cpu,
        "cpu_s_workers": sorted(workers_after[k] - workers_before[k] for k in workers_after),
        "seconds_by_kind": dict(oracle.seconds),
        "counts": dict(oracle.counts),
        "w": w,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1250,
        help="examples per pass; shards are whole chunks (8 chunks of 10000 "
        "split evenly over 1, 2, 4 or 8 workers)",
    )
    parser.add_argument("--epoch-examples", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--max-krylov", type=int, default=5)
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]

    env = environment()
    data, source = load(args.mnist, args.examples)
    net = lenet()
    parameters = nn.parameters_to_vector(net).size
    plain = Oracle(mc.Objective(net, nn.CrossEntropyLoss()), data, args.chunk_size)
    w = plain.initial_point()
    with single_thread():
        reference = plain.value_and_grad(w)
        cpu_start = time.process_time()
        one_thread = timings(lambda: plain.value_and_grad(w), args.repeats)
        one_thread["cpu_s_per_call"] = (time.process_time() - cpu_start) / (args.repeats + 1)
    default_threads = timings(lambda: plain.value_and_grad(w), args.repeats)
    print(
        f"Oracle, this process: {one_thread['min']:.2f} s on one thread, "
        f"{default_threads['min']:.2f} s on BLAS's default threads (fastest of "
        f"{args.repeats})"
    )

    clusters = []
    for workers in counts:
        row = time_cluster(data, workers, args.chunk_size, args.repeats, reference)
        row["speedup_vs_one_thread"] = one_thread["min"] / row["global_gradient_s"]["min"]
        clusters.append(row)
        print(
            f"{workers} worker(s): {row['global_gradient_s']['min']:.2f} s per global "
            f"gradient (x{row['speedup_vs_one_thread']:.2f}), fixed cost "
            f"{row['fixed_cost_per_call_s']['min'] * 1e3:.0f} ms per call, start-up "
            f"{row['startup_s']:.1f} s, max rel diff {row['max_rel_diff_vs_oracle']:.1e}"
        )

    epoch_data = (data[0][: args.epoch_examples], data[1][: args.epoch_examples])
    epochs = {}
    plain_epoch = Oracle(mc.Objective(lenet(), nn.CrossEntropyLoss()), epoch_data, args.chunk_size)
    epochs["oracle"] = newton_krylov_epoch(plain_epoch, epoch_data, args.batch, args.max_krylov)
    workers = max(counts)
    epoch_chunk = -(-args.epoch_examples // workers)  # one chunk per worker
    with DaskOracle(
        mc.Objective(lenet(), nn.CrossEntropyLoss()),
        epoch_data,
        epoch_chunk,
        scheduler="local",
        workers=workers,
        timeout=120,
    ) as cluster_oracle:
        epochs[f"dask_{workers}_workers"] = newton_krylov_epoch(
            cluster_oracle, epoch_data, args.batch, args.max_krylov
        )
    final = [epoch.pop("w") for epoch in epochs.values()]
    epoch_difference = float(np.linalg.norm(final[1] - final[0]) / np.linalg.norm(final[0]))
    for name, epoch in epochs.items():
        share = epoch["seconds_by_kind"].get("global_gradient", 0.0) / epoch["seconds"]
        epoch["global_gradient_share"] = share
        print(
            f"Newton-Krylov epoch, {name}: {epoch['seconds']:.1f} s, {epoch['steps']} steps, "
            f"global gradient {100 * share:.0f}% of it"
        )

    env["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    results = {
        "environment": env,
        "input": source,
        "examples": len(data[0]),
        "model": "lenet5 (sigmoid), float64",
        "parameters": parameters,
        "chunk_size": args.chunk_size,
        "repeats": args.repeats,
        "command": "python benchmarks/bench_distributed.py " + " ".join(sys.argv[1:]),
        "oracle_global_gradient_s": {"one_thread": one_thread, "default_threads": default_threads},
        "dask_local_cluster": clusters,
        "newton_krylov_epoch": {
            "examples": args.epoch_examples,
            "batch": args.batch,
            "max_krylov": args.max_krylov,
            "chunk_size_on_cluster": epoch_chunk,
            "runs": epochs,
            "final_w_rel_diff": epoch_difference,
        },
    }
    write_json(RESULTS / "distributed.json", results)
    write_atomic(RESULTS / "distributed.md", report(results))
    print(f"wrote {RESULTS / 'distributed.json'} and distributed.md")


def report(r: dict) -> str:
    env = r["environment"]
    base = r["oracle_global_gradient_s"]["one_thread"]["min"]

    def span(t: dict, scale: float = 1.0, digits: int = 2) -> str:
        return f"{t['min'] * scale:.{digits}f} ({t['median'] * scale:.{digits}f})"

    rows = [
        [
            "Oracle, 1 thread",
            "-",
            span(r["oracle_global_gradient_s"]["one_thread"]),
            "1.00",
            f"{r['oracle_global_gradient_s']['one_thread']['cpu_s_per_call']:.2f}",
            "-",
            "-",
            "-",
        ],
        [
            "Oracle, BLAS default threads",
            "-",
            span(r["oracle_global_gradient_s"]["default_threads"]),
            f"{base / r['oracle_global_gradient_s']['default_threads']['min']:.2f}",
            "-",
            "-",
            "-",
            "-",
        ],
    ]
    for c in r["dask_local_cluster"]:
        rows.append(
            [
                f"DaskOracle, {c['workers']} worker(s)",
                c["shards"],
                span(c["global_gradient_s"]),
                f"{c['speedup_vs_one_thread']:.2f}",
                " / ".join(f"{t:.2f}" for t in c["worker_cpu_s_per_call"]),
                f"{span(c['fixed_cost_per_call_s'], 1e3, 0)} / "
                f"{span(c['latency_2_parameters_s'], 1e3, 0)}",
                f"{c['startup_s']:.1f}",
                f"{c['max_rel_diff_vs_oracle']:.1e}",
            ]
        )
    nk = r["newton_krylov_epoch"]
    epoch_rows = [
        [
            name,
            e["steps"],
            f"{e['seconds']:.1f}",
            f"{e['seconds_by_kind'].get('global_gradient', 0.0):.1f}",
            f"{100 * e['global_gradient_share']:.0f}%",
            f"{e['cpu_s_this_process']:.1f}",
            " / ".join(f"{t:.1f}" for t in e["cpu_s_workers"]) or "-",
        ]
        for name, e in nk["runs"].items()
    ]
    return (
        f"# Global gradient on a Dask LocalCluster\n\n`{r['command']}` at {env['commit']}, "
        f"{env['date']}: {env['cpu']}, {env['cores']} cores, 1-minute load average "
        f"{env['load_average_1min']} before and {env['load_average_1min_after']} after.\n\n"
        f"{r['model']}, {r['parameters']} parameters; {r['examples']} examples ({r['input']}), "
        f"chunks of {r['chunk_size']}. Seconds: fastest (median) of {r['repeats']} after a "
        "warm-up; speed-up of the fastest against the fastest single-threaded Oracle. CPU s: "
        "per call, of this process (Oracle) or of each worker process (its shard).\n\n"
        + markdown_table(
            [
                "global gradient",
                "shards",
                "seconds",
                "speed-up",
                "CPU s per call (each process)",
                "fixed cost per call (ms), LeNet-5 / 2 parameters",
                "start-up (s)",
                "max rel diff vs Oracle",
            ],
            rows,
        )
        + f"\n## Newton-Krylov epoch ({nk['examples']} examples, batch {nk['batch']}, "
        f"max_krylov {nk['max_krylov']})\n\n"
        + markdown_table(
            [
                "oracle",
                "steps",
                "epoch (s)",
                "global gradient (s)",
                "share",
                "CPU s, this process",
                "CPU s, each worker",
            ],
            epoch_rows,
        )
        + f"\nFinal parameters, cluster vs single process: relative difference "
        f"{nk['final_w_rel_diff']:.1e}.\n"
    )


if __name__ == "__main__":
    main()
