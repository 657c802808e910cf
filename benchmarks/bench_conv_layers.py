"""LeNet-5's two convolutions alone, mcnet against PyTorch on the CPU (one thread).

Where the float32 gradient's gap to PyTorch lies (issue 9): each layer's forward and backward
on a batch of 128, real data, the input laid out channel-major as inside the network (the
first layer's input gradient is not needed, as in the network). PyTorch: the forward under
``no_grad``, and forward + backward with autograd. Thread CPU time, median of ``--repeats``.

    python benchmarks/bench_conv_layers.py [--repeats 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_time  # noqa: E402

import mcnet as mc  # noqa: E402
from mcnet.nn.conv import Conv2d  # noqa: E402

LAYERS = [  # in, out channels, image side, padding, input gradient needed
    (1, 6, 28, 2, False),
    (6, 16, 14, 0, True),
]


def layer_times(
    torch, dtype, torch_dtype, c_in, c_out, side, padding, input_grad, repeats: int, rng
) -> list[float]:
    """mcnet forward, mcnet backward, PyTorch forward, PyTorch forward + backward (ms)."""
    data = rng.standard_normal((c_in, 128, side, side)).astype(dtype).transpose(1, 0, 2, 3)
    out_side = side + 2 * padding - 4
    grad = rng.standard_normal((128, c_out, out_side, out_side)).astype(dtype)
    layer = Conv2d(c_in, c_out, 5, padding=padding).to(dtype=dtype)
    layer.input_grad_needed = input_grad
    x, g = mc.tensor(data), mc.tensor(grad)

    def backward():
        for p in layer.parameters():
            p.grad = None
        layer.backward(g)

    reference = torch.nn.Conv2d(c_in, c_out, 5, padding=padding).to(torch_dtype)
    tx = torch.tensor(np.ascontiguousarray(data), requires_grad=input_grad)
    tg = torch.tensor(grad)

    def torch_forward():
        with torch.no_grad():
            reference(tx)

    def torch_both():
        reference.zero_grad()
        reference(tx).backward(tg)

    return [
        median_time(call, repeats, clock=time.thread_time) * 1e3
        for call in (lambda: layer(x), backward, torch_forward, torch_both)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    threadpool_limits(1)
    rng = np.random.default_rng(0)
    print(
        "| dtype | layer | mcnet forward | mcnet backward | PyTorch forward | "
        "PyTorch forward + backward |\n|---|---|---|---|---|---|"
    )
    for dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        for c_in, c_out, side, padding, input_grad in LAYERS:
            times = layer_times(
                torch, dtype, torch_dtype, c_in, c_out, side, padding, input_grad, args.repeats, rng
            )
            print(
                f"| {np.dtype(dtype).name} | conv {c_in}->{c_out}, {side}x{side} | "
                + " | ".join(f"{t:.2f}" for t in times)
                + " |"
            )


if __name__ == "__main__":
    main()
