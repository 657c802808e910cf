"""Newton-Krylov against Adam on a broad suite of small problems, split into development and
evaluation halves.

Settings (a solver's defaults) are chosen on the development problems only; the evaluation
problems are run to report. The holdout problems are a second evaluation half, written when
the first had been seen and newton-krylov's default was being re-chosen; holdout-2 a third,
written before the BatchNorm development problems were tried; holdout-3 and holdout-4 a
fourth and a fifth, each written before the change it was run once after, and so on up to
holdout-23 (each written before a trial, run once after it). Each problem is trained by
Adam at 5 learning rates (the best final training loss is the reference, the paper's
protocol) and by each Newton-Krylov setting, at equal epochs, batch 128, seed 0, float64,
one BLAS thread.

    python benchmarks/nk_suite.py --split evaluation          # run and report the evaluation half
    python benchmarks/nk_suite.py --split holdout             # the second evaluation half
    python benchmarks/nk_suite.py --split holdout-2           # the third evaluation half
    python benchmarks/nk_suite.py --split holdout-6           # the seventh evaluation half
    python benchmarks/nk_suite.py --split development --solver newton-krylov-fast \
        --option max_krylov=20                                # try a setting on the dev half
    python benchmarks/nk_suite.py --report                    # tables from the saved runs

Runs are saved in one compressed JSON file per half under benchmarks/results/nk_suite/; a saved
run is reused unless --rerun is given. The report is printed (--out FILE writes it too).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import functools
import gzip
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import mcnet as mc
from mcnet import nn

RESULTS = Path(__file__).parent / "results" / "nk_suite"  # --results changes it
SAVED_ONLY = False  # --report: tables from the saved runs only
SEED = 0  # --seed: the initial weights' and the batch order's seed
REPORT = Path(__file__).parent / "results" / "nk_suite.md"
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
ADAM_LRS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
NK_SOLVERS = ("newton-krylov-fast", "newton-krylov")
BATCH = 128


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    split: str  # "development", or an evaluation half: "evaluation", "holdout", "holdout-2", ...
    description: str
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    model: Callable[[int, int], nn.Module]  # (n_features, n_outputs) -> module
    loss: Callable[[], nn.Module]
    epochs: int = 5


# --- data ---------------------------------------------------------------------------------
def _standardize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-12)


def digits_flat():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data / 16.0, d.target.astype(np.int64)


def digits_images():
    x, y = digits_flat()
    return x.reshape(-1, 1, 8, 8), y


def mnist_slice(start: int, stop: int, flat: bool, seed: int):
    """Examples start..stop of MNIST's t10k files, shuffled (the experiments use the first
    2000; these slices are other images)."""
    images, labels = mc.datasets.mnist(root=MNIST_DIR, split="test")
    order = np.random.default_rng(seed).permutation(np.arange(start, stop))
    x, y = images[order], labels[order]
    return (x.reshape(len(x), -1) if flat else x), y


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return _standardize(d.data), d.target.astype(np.float64).reshape(-1, 1)


def wine():
    from sklearn.datasets import load_wine

    d = load_wine()
    return _standardize(d.data), d.target.astype(np.int64)


def diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return _standardize(d.data), _standardize(d.target).reshape(-1, 1)


def iris():
    from sklearn.datasets import load_iris

    d = load_iris()
    return _standardize(d.data), d.target.astype(np.int64)


def generated(generator: str, target: str, **options: object) -> Callable[[], tuple]:
    """Data from scikit-learn's ``make_<generator>(**options)``, the inputs standardised; the
    target as ``"classes"`` (integer labels), ``"binary"`` (a float column of 0 and 1),
    ``"sign"`` (the same from labels of -1 and 1) or ``"value"`` (a standardised column)."""

    def data() -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, f"make_{generator}")(**options)
        if target == "classes":
            return _standardize(x), y.astype(np.int64)
        column = {"binary": y, "sign": y > 0, "value": _standardize(y)}[target]
        return _standardize(x), np.asarray(column, dtype=np.float64).reshape(-1, 1)

    return data


def tanh_regression(scale: float, **options: object) -> Callable[[], tuple]:
    """A linear regression's target squashed by tanh(y / scale), then standardised."""

    def data() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_regression

        x, y = make_regression(**options)
        return _standardize(x), _standardize(np.tanh(y / scale)).reshape(-1, 1)

    return data


synthetic_classes = generated(
    "classification", "classes", n_samples=2000, n_features=20, n_informative=10, n_classes=4,
    random_state=1,
)  # fmt: skip
friedman = generated("friedman1", "value", n_samples=2000, n_features=10, noise=0.5, random_state=2)
moons = generated("moons", "binary", n_samples=2000, noise=0.2, random_state=3)
circles = generated("circles", "binary", n_samples=1500, noise=0.1, factor=0.5, random_state=6)
friedman3 = generated("friedman3", "value", n_samples=1500, noise=0.05, random_state=7)
synthetic_three_classes = generated(
    "classification", "classes", n_samples=1500, n_features=12, n_informative=6, n_classes=3,
    random_state=9,
)  # fmt: skip
blobs = generated(
    "blobs", "classes", n_samples=2000, centers=5, n_features=10, cluster_std=3.0, random_state=13
)
gaussian_quantiles = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=4, n_classes=3, random_state=14
)
hastie = generated("hastie_10_2", "sign", n_samples=2000, random_state=15)
friedman2 = generated("friedman2", "value", n_samples=1500, noise=10.0, random_state=16)
swiss_roll = generated("swiss_roll", "value", n_samples=1500, noise=0.1, random_state=17)
regression = tanh_regression(
    100.0, n_samples=1500, n_features=8, n_informative=5, noise=5.0, random_state=18
)
synthetic_binary = generated(
    "classification", "binary", n_samples=1500, n_features=16, n_informative=8, n_redundant=4,
    flip_y=0.05, random_state=19,
)  # fmt: skip
moons_wide = generated("moons", "binary", n_samples=1800, noise=0.25, random_state=21)
circles_noisy = generated(
    "circles", "binary", n_samples=1600, noise=0.15, factor=0.6, random_state=22
)
friedman_b = generated(
    "friedman1", "value", n_samples=1800, n_features=10, noise=1.0, random_state=23
)
synthetic_five_classes = generated(
    "classification", "classes", n_samples=2000, n_features=24, n_informative=12, n_classes=5,
    random_state=24,
)  # fmt: skip
sparse_uncorrelated = generated(
    "sparse_uncorrelated", "value", n_samples=1500, n_features=10, random_state=25
)
s_curve = generated("s_curve", "value", n_samples=1500, noise=0.1, random_state=26)
synthetic_six_classes = generated(
    "classification", "classes", n_samples=2000, n_features=30, n_informative=15, n_classes=6,
    random_state=33,
)  # fmt: skip
regression_b = tanh_regression(
    150.0, n_samples=1600, n_features=12, n_informative=8, noise=10.0, random_state=34
)
friedman3_b = generated("friedman3", "value", n_samples=1600, noise=0.1, random_state=35)
blobs_three = generated(
    "blobs", "classes", n_samples=1500, centers=3, n_features=6, cluster_std=4.0, random_state=36
)
moons_noisy = generated("moons", "binary", n_samples=1500, noise=0.3, random_state=41)
circles_tight = generated(
    "circles", "binary", n_samples=1500, noise=0.08, factor=0.4, random_state=42
)
synthetic_four_classes_b = generated(
    "classification", "classes", n_samples=1800, n_features=16, n_informative=8, n_classes=4,
    random_state=43,
)  # fmt: skip
friedman2_b = generated("friedman2", "value", n_samples=1500, noise=20.0, random_state=44)
gaussian_quantiles_two = generated(
    "gaussian_quantiles", "binary", n_samples=1500, n_features=3, n_classes=2, random_state=45
)
hastie_b = generated("hastie_10_2", "sign", n_samples=1500, random_state=46)
moons_dev = generated("moons", "binary", n_samples=1500, noise=0.25, random_state=61)
circles_dev = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.55, random_state=62
)
friedman2_dev = generated("friedman2", "value", n_samples=1500, noise=15.0, random_state=63)
moons_h9 = generated("moons", "binary", n_samples=1600, noise=0.22, random_state=71)
friedman_h9 = generated(
    "friedman1", "value", n_samples=1500, n_features=10, noise=0.5, random_state=72
)
synthetic_three_classes_h9 = generated(
    "classification", "classes", n_samples=1500, n_features=14, n_informative=7, n_classes=3,
    random_state=73,
)  # fmt: skip
regression_h9 = tanh_regression(
    120.0, n_samples=1500, n_features=10, n_informative=6, noise=8.0, random_state=74
)
blobs_four = generated(
    "blobs", "classes", n_samples=1600, centers=4, n_features=8, cluster_std=3.5, random_state=75
)
circles_h10 = generated(
    "circles", "binary", n_samples=1500, noise=0.12, factor=0.5, random_state=81
)
friedman3_h10 = generated("friedman3", "value", n_samples=1500, noise=0.08, random_state=82)
synthetic_five_classes_h10 = generated(
    "classification", "classes", n_samples=1800, n_features=20, n_informative=10, n_classes=5,
    random_state=83,
)  # fmt: skip
quantiles_h10 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=5, n_classes=3, random_state=84
)
hastie_h10 = generated("hastie_10_2", "sign", n_samples=1600, random_state=85)
moons_h11 = generated("moons", "binary", n_samples=1500, noise=0.2, random_state=92)
friedman_h11 = generated(
    "friedman1", "value", n_samples=1600, n_features=10, noise=0.7, random_state=93
)
synthetic_four_classes_h11 = generated(
    "classification", "classes", n_samples=1600, n_features=16, n_informative=8, n_classes=4,
    random_state=94,
)  # fmt: skip
circles_h12 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.5, random_state=102
)
friedman3_h12 = generated("friedman3", "value", n_samples=1500, noise=0.06, random_state=103)
blobs_h12 = generated(
    "blobs", "classes", n_samples=1600, centers=4, n_features=8, cluster_std=3.0, random_state=104
)
moons_h12 = generated("moons", "binary", n_samples=1500, noise=0.25, random_state=105)
circles_h13 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.5, random_state=112
)
friedman_h13 = generated(
    "friedman1", "value", n_samples=1500, n_features=10, noise=0.5, random_state=113
)
synthetic_three_classes_h13 = generated(
    "classification", "classes", n_samples=1500, n_features=12, n_informative=6, n_classes=3,
    random_state=114,
)  # fmt: skip
moons_h13 = generated("moons", "binary", n_samples=1500, noise=0.2, random_state=115)
circles_h14 = generated(
    "circles", "binary", n_samples=1500, noise=0.12, factor=0.55, random_state=121
)
friedman2_h14 = generated("friedman2", "value", n_samples=1500, noise=12.0, random_state=122)
quantiles_h14 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=4, n_classes=4, random_state=123
)
hastie_h14 = generated("hastie_10_2", "sign", n_samples=1500, random_state=124)
moons_h14 = generated("moons", "binary", n_samples=1500, noise=0.3, random_state=125)
circles_h15 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.6, random_state=131
)
friedman_h15 = generated(
    "friedman1", "value", n_samples=1500, n_features=10, noise=1.0, random_state=132
)
moons_h15 = generated("moons", "binary", n_samples=1500, noise=0.2, random_state=133)
synthetic_five_classes_h15 = generated(
    "classification", "classes", n_samples=1600, n_features=16, n_informative=8, n_classes=5,
    random_state=134,
)  # fmt: skip
blobs_h15 = generated(
    "blobs", "classes", n_samples=1500, centers=5, n_features=6, cluster_std=2.5, random_state=135
)
circles_h16 = generated(
    "circles", "binary", n_samples=1500, noise=0.08, factor=0.5, random_state=151
)
moons_h16 = generated("moons", "binary", n_samples=1500, noise=0.15, random_state=152)
friedman3_h16 = generated("friedman3", "value", n_samples=1500, noise=0.05, random_state=153)
synthetic_four_classes_h16 = generated(
    "classification", "classes", n_samples=1500, n_features=10, n_informative=5, n_classes=4,
    random_state=154,
)  # fmt: skip
quantiles_h16 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=3, n_classes=3, random_state=155
)
circles_h17 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.45, random_state=171
)
moons_h17 = generated("moons", "binary", n_samples=1500, noise=0.25, random_state=172)
friedman_h17 = generated(
    "friedman1", "value", n_samples=1500, n_features=8, noise=0.3, random_state=173
)
synthetic_six_classes_h17 = generated(
    "classification", "classes", n_samples=1800, n_features=20, n_informative=10, n_classes=6,
    random_state=174,
)  # fmt: skip
circles_h18 = generated(
    "circles", "binary", n_samples=1500, noise=0.15, factor=0.5, random_state=181
)
moons_h18 = generated("moons", "binary", n_samples=1500, noise=0.35, random_state=182)
friedman2_h18 = generated("friedman2", "value", n_samples=1500, noise=20.0, random_state=183)
quantiles_h18 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=5, n_classes=3, random_state=184
)
circles_h19 = generated(
    "circles", "binary", n_samples=1500, noise=0.12, factor=0.4, random_state=191
)
moons_h19 = generated("moons", "binary", n_samples=1500, noise=0.3, random_state=192)
friedman_h19 = generated(
    "friedman1", "value", n_samples=1500, n_features=6, noise=0.5, random_state=193
)
synthetic_five_classes_h19 = generated(
    "classification", "classes", n_samples=1500, n_features=16, n_informative=8, n_classes=5,
    random_state=194,
)  # fmt: skip
regression_h19 = tanh_regression(
    40.0, n_samples=1500, n_features=10, n_informative=6, noise=5.0, random_state=195
)
circles_h20 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.45, random_state=202
)
moons_h20 = generated("moons", "binary", n_samples=1500, noise=0.2, random_state=203)
friedman3_h20 = generated("friedman3", "value", n_samples=1500, noise=0.1, random_state=204)
quantiles_h20 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=4, n_classes=4, random_state=205
)
moons_h21 = generated("moons", "binary", n_samples=1500, noise=0.25, random_state=211)
circles_h21 = generated(
    "circles", "binary", n_samples=1500, noise=0.12, factor=0.55, random_state=212
)
friedman_h21 = generated(
    "friedman1", "value", n_samples=1500, n_features=8, noise=0.4, random_state=213
)
synthetic_three_classes_h21 = generated(
    "classification", "classes", n_samples=1500, n_features=12, n_informative=6, n_classes=3,
    random_state=214,
)  # fmt: skip
circles_h22 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.5, random_state=221
)
moons_h22 = generated("moons", "binary", n_samples=1500, noise=0.3, random_state=222)
quantiles_h22 = generated(
    "gaussian_quantiles", "classes", n_samples=1500, n_features=3, n_classes=3, random_state=223
)
friedman2_h22 = generated("friedman2", "value", n_samples=1500, noise=10.0, random_state=224)
circles_h23 = generated(
    "circles", "binary", n_samples=1500, noise=0.1, factor=0.5, random_state=231
)
circles_h23b = generated(
    "circles", "binary", n_samples=1500, noise=0.12, factor=0.45, random_state=232
)
moons_h23 = generated("moons", "binary", n_samples=1500, noise=0.25, random_state=233)
blobs_h23 = generated(
    "blobs", "classes", n_samples=1500, n_features=5, centers=4, cluster_std=2.0,
    random_state=234,
)  # fmt: skip
friedman3_h23 = generated("friedman3", "value", n_samples=1500, noise=0.05, random_state=235)


def xor_four():
    x = np.random.default_rng(31).uniform(-1.0, 1.0, (1600, 4))
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 0.2)).astype(np.float64)
    return _standardize(x), y.reshape(-1, 1)


def two_spirals(seed: int, n: int, noise: float) -> Callable[[], tuple]:
    """Two interleaved spiral arms in 2-d, the arm as a float column of 0 and 1."""

    def data() -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        t = rng.uniform(0.5, 3.0 * np.pi, n)
        arm = rng.integers(0, 2, n)
        x = np.stack([t * np.cos(t + np.pi * arm), t * np.sin(t + np.pi * arm)], axis=1)
        x = x + noise * rng.standard_normal(x.shape)
        return _standardize(x), arm.astype(np.float64).reshape(-1, 1)

    return data


spirals = two_spirals(32, 1600, 0.3)
spirals_h11 = two_spirals(91, 1500, 0.25)
spirals_h12 = two_spirals(101, 1500, 0.3)
spirals_h13 = two_spirals(111, 1500, 0.3)
spirals_h15 = two_spirals(141, 1500, 0.25)
spirals_h16 = two_spirals(161, 1500, 0.2)
spirals_h17 = two_spirals(171, 1500, 0.3)
spirals_h18 = two_spirals(181, 1500, 0.25)
spirals_h19 = two_spirals(196, 1500, 0.2)
spirals_h20 = two_spirals(201, 1500, 0.25)
spirals_h21 = two_spirals(215, 1500, 0.3)
spirals_h23 = two_spirals(236, 1500, 0.25)


# --- models -------------------------------------------------------------------------------
def act(name: str) -> nn.Module:
    return nn.Identity() if name == "none" else nn.models.activation_layer(name)


def mlp(hidden: tuple[int, ...], activation: str, batchnorm: bool = False):
    def build(n_in: int, n_out: int) -> nn.Module:
        layers: list[nn.Module] = []
        for a, b in zip((n_in, *hidden), hidden):
            layers += [
                nn.Linear(a, b),
                *([nn.BatchNorm1d(b)] if batchnorm else []),
                act(activation),
            ]
        return nn.Sequential(*layers, nn.Linear((n_in, *hidden)[-1], n_out))

    return build


class ResidualMLP(nn.Module):
    """Linear stem, two residual blocks x + W2 act(W1 x), linear head."""

    def __init__(self, n_in: int, n_out: int, width: int, activation: str) -> None:
        super().__init__()
        self.stem = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(nn.Linear(width, width), act(activation), nn.Linear(width, width))
                for _ in range(2)
            ]
        )
        self.adds = nn.Sequential(nn.Add(), nn.Add())
        self.act = act(activation)
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        h = self.stem(x)
        for block, add in zip(self.blocks, self.adds):
            h = add(h, block(h))
        return self.head(self.act(h))


def residual(width: int, activation: str):
    return lambda n_in, n_out: ResidualMLP(n_in, n_out, width, activation)


def cnn(side: int, channels: tuple[int, int], activation: str, batchnorm: bool):
    def build(n_in: int, n_out: int) -> nn.Module:
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c))
            layers += [act(activation), nn.AvgPool2d(2)]
            c_in = c
        final = side // 4
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * final * final, n_out))

    return build


def lenet5(activation: str):
    """The paper's LeNet-5 (no batch norm), with any activation or none."""

    def build(n_in: int, n_out: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), act(activation), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), act(activation), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), act(activation), nn.Linear(120, 84), act(activation),
            nn.Linear(84, n_out),
        )  # fmt: skip

    return build


CE, MSE, BCE = nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss

PROBLEMS = [
    # development: settings are chosen here
    Problem(
        "digits-mlp1-tanh",
        "development",
        "digits, MLP 64-64-10 tanh, CE",
        digits_flat,
        mlp((64,), "tanh"),
        CE,
    ),
    Problem(
        "digits-mlp2-relu",
        "development",
        "digits, MLP 64-64-32-10 ReLU, CE",
        digits_flat,
        mlp((64, 32), "relu"),
        CE,
    ),
    Problem(
        "cancer-mlp1-sigmoid",
        "development",
        "breast cancer, MLP 30-16-1 sigmoid, BCE",
        breast_cancer,
        mlp((16,), "sigmoid"),
        BCE,
        epochs=10,
    ),
    Problem(
        "diabetes-mlp2-elu",
        "development",
        "diabetes, MLP 10-32-32-1 ELU, MSE",
        diabetes,
        mlp((32, 32), "elu"),
        MSE,
        epochs=10,
    ),
    Problem(
        "mnistA-cnn-relu",
        "development",
        "MNIST t10k 3000..5000, CNN 8-16 ReLU, CE",
        lambda: mnist_slice(3000, 5000, False, 0),
        cnn(28, (8, 16), "relu", False),
        CE,
        epochs=3,
    ),
    Problem(
        "mnistA-mlp2-relu",
        "development",
        "MNIST t10k 3000..5000, MLP 784-64-32-10 ReLU, CE",
        lambda: mnist_slice(3000, 5000, True, 0),
        mlp((64, 32), "relu"),
        CE,
    ),
    Problem(
        "classes-mlp3-sin",
        "development",
        "synthetic 4 classes, MLP 20-32-32-32-4 sin, CE",
        synthetic_classes,
        mlp((32, 32, 32), "sin"),
        CE,
    ),
    Problem(
        "wine-mlp1-none",
        "development",
        "wine, MLP 13-16-3 no activation, CE",
        wine,
        mlp((16,), "none"),
        CE,
        epochs=10,
    ),
    Problem(
        "digits-resnet-tanh",
        "development",
        "digits, residual MLP width 64 tanh, CE",
        digits_flat,
        residual(64, "tanh"),
        CE,
    ),
    Problem(
        "digits-cnn-bn-tanh",
        "development",
        "digits 8x8, CNN 8-16 BN tanh, CE",
        digits_images,
        cnn(8, (8, 16), "tanh", True),
        CE,
    ),
    Problem(
        "classes-mlp2-bn-relu",
        "development",
        "synthetic 4 classes, MLP 20-64-64-4 BN ReLU, CE",
        synthetic_classes,
        mlp((64, 64), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistA-cnn-bn-sigmoid",
        "development",
        "MNIST t10k 3000..5000, CNN 8-16 BN sigmoid, CE",
        lambda: mnist_slice(3000, 5000, False, 0),
        cnn(28, (8, 16), "sigmoid", True),
        CE,
        epochs=3,
    ),
    # added with holdout-4, to choose a step rule for sigmoid after batch norm
    Problem(
        "moons-mlp2-bn-sigmoid",
        "development",
        "two moons, MLP 2-32-32-1 BN sigmoid, BCE",
        moons,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "classes-mlp2-bn-sigmoid",
        "development",
        "synthetic 4 classes, MLP 20-64-64-4 BN sigmoid, CE",
        synthetic_classes,
        mlp((64, 64), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "friedman-mlp2-bn-sigmoid",
        "development",
        "Friedman #1, MLP 10-32-32-1 BN sigmoid, MSE",
        friedman,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
    ),
    # evaluation: run only to report
    Problem(
        "mnistB-mlp2-relu",
        "evaluation",
        "MNIST t10k 5000..7000, MLP 784-128-64-10 ReLU, CE",
        lambda: mnist_slice(5000, 7000, True, 1),
        mlp((128, 64), "relu"),
        CE,
    ),
    Problem(
        "mnistC-cnn-bn-elu",
        "evaluation",
        "MNIST t10k 7000..9000, CNN 8-16 BN ELU, CE",
        lambda: mnist_slice(7000, 9000, False, 2),
        cnn(28, (8, 16), "elu", True),
        CE,
        epochs=3,
    ),
    Problem(
        "digits-cnn-bn-relu",
        "evaluation",
        "digits 8x8, CNN 8-16 BN ReLU, CE",
        digits_images,
        cnn(8, (8, 16), "relu", True),
        CE,
    ),
    Problem(
        "friedman-mlp4-tanh",
        "evaluation",
        "Friedman #1, MLP 10-32x4-1 tanh, MSE",
        friedman,
        mlp((32, 32, 32, 32), "tanh"),
        MSE,
    ),
    Problem(
        "wine-mlp2-sigmoid",
        "evaluation",
        "wine, MLP 13-32-32-3 sigmoid, CE",
        wine,
        mlp((32, 32), "sigmoid"),
        CE,
        epochs=10,
    ),
    Problem(
        "cancer-mlp3-relu",
        "evaluation",
        "breast cancer, MLP 30-32-32-32-1 ReLU, BCE",
        breast_cancer,
        mlp((32, 32, 32), "relu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "moons-mlp2-sin",
        "evaluation",
        "two moons, MLP 2-32-32-1 sin, BCE",
        moons,
        mlp((32, 32), "sin"),
        BCE,
    ),
    Problem(
        "mnistD-resnet-relu",
        "evaluation",
        "MNIST t10k 1000..3000, residual MLP 128 ReLU, CE",
        lambda: mnist_slice(1000, 3000, True, 3),
        residual(128, "relu"),
        CE,
    ),
    Problem(
        "mnistE-mlp1-none",
        "evaluation",
        "MNIST t10k 0..2000 reshuffled, MLP 784-32-10 none, CE",
        lambda: mnist_slice(0, 2000, True, 4),
        mlp((32,), "none"),
        CE,
    ),
]
# development, second set: written after holdout-8 had been run, to choose newton-krylov's
# epoch rollback on problems like those whose loss rose late there (BatchNorm, small data,
# long runs) and on the low-dimensional toy sets where Adam moves fast
DEVELOPMENT2 = [
    Problem(
        "iris-mlp1-bn-relu",
        "development",
        "iris, MLP 4-32-3 BN ReLU, CE",
        iris,
        mlp((32,), "relu", batchnorm=True),
        CE,
        epochs=20,
    ),
    Problem(
        "friedman2C-mlp2-bn-sigmoid",
        "development",
        "Friedman #2, noise 15, MLP 4-32-32-1 BN sigmoid, MSE",
        friedman2_dev,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
        epochs=10,
    ),
    Problem(
        "moons4-mlp2-tanh",
        "development",
        "two moons, noise 0.25, MLP 2-32-32-1 tanh, BCE",
        moons_dev,
        mlp((32, 32), "tanh"),
        BCE,
    ),
    Problem(
        "circles4-mlp2-bn-relu",
        "development",
        "two circles, factor 0.55, MLP 2-32-32-1 BN ReLU, BCE",
        circles_dev,
        mlp((32, 32), "relu", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "wine-mlp2-bn-elu",
        "development",
        "wine, MLP 13-32-32-3 BN ELU, CE",
        wine,
        mlp((32, 32), "elu", batchnorm=True),
        CE,
        epochs=20,
    ),
]
# the paper's Fig. 5: LeNet-5 without batch norm, one activation each (not in either half)
FIG5 = [
    Problem(
        f"fig5-lenet5-{a}",
        "fig5",
        f"MNIST t10k 0..2000, LeNet-5 {a}, CE",
        lambda: mnist_slice(0, 2000, False, 5),
        lenet5(a),
        CE,
        epochs=3,
    )
    for a in ("none", "relu", "sigmoid", "sin")
]
# holdout: a second evaluation half, added after the first had been seen (so that settings
# changed since can be reported on problems nobody here looked at while choosing them)
HOLDOUT = [
    Problem(
        "mnistF-mlp1-elu",
        "holdout",
        "MNIST t10k 9000..10000, MLP 784-96-10 ELU, CE",
        lambda: mnist_slice(9000, 10000, True, 6),
        mlp((96,), "elu"),
        CE,
    ),
    Problem(
        "digits-cnn-tanh",
        "holdout",
        "digits 8x8, CNN 8-16 tanh, CE",
        digits_images,
        cnn(8, (8, 16), "tanh", False),
        CE,
    ),
    Problem(
        "wine-mlp1-relu",
        "holdout",
        "wine, MLP 13-64-3 ReLU, CE",
        wine,
        mlp((64,), "relu"),
        CE,
        epochs=10,
    ),
    Problem(
        "diabetes-mlp1-none",
        "holdout",
        "diabetes, MLP 10-64-1 no activation, MSE",
        diabetes,
        mlp((64,), "none"),
        MSE,
        epochs=10,
    ),
    Problem(
        "cancer-mlp2-elu",
        "holdout",
        "breast cancer, MLP 30-64-64-1 ELU, BCE",
        breast_cancer,
        mlp((64, 64), "elu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "friedman3-mlp2-sin",
        "holdout",
        "Friedman #3, MLP 4-32-32-1 sin, MSE",
        friedman3,
        mlp((32, 32), "sin"),
        MSE,
    ),
    Problem(
        "circles-mlp2-tanh",
        "holdout",
        "two circles, MLP 2-16-16-1 tanh, BCE",
        circles,
        mlp((16, 16), "tanh"),
        BCE,
    ),
    Problem(
        "digits-resnet-relu",
        "holdout",
        "digits, residual MLP width 32 ReLU, CE",
        digits_flat,
        residual(32, "relu"),
        CE,
    ),
    Problem(
        "iris-mlp1-sigmoid",
        "holdout",
        "iris, MLP 4-16-3 sigmoid, CE",
        iris,
        mlp((16,), "sigmoid"),
        CE,
        epochs=20,
    ),
    Problem(
        "digits-cnn-bn-sigmoid",
        "holdout",
        "digits 8x8, CNN 8-16 BN sigmoid, CE",
        digits_images,
        cnn(8, (8, 16), "sigmoid", True),
        CE,
    ),
]
# holdout-2: a third evaluation half, written before the development half had BatchNorm
# problems and before any setting was tried on them, and run once after the setting was fixed
HOLDOUT2 = [
    Problem(
        "digits-cnn-bn-elu",
        "holdout-2",
        "digits 8x8, CNN 8-16 BN ELU, CE",
        digits_images,
        cnn(8, (8, 16), "elu", True),
        CE,
    ),
    Problem(
        "digits-cnn-bn-sin-wide",
        "holdout-2",
        "digits 8x8, CNN 16-32 BN sin, CE",
        digits_images,
        cnn(8, (16, 32), "sin", True),
        CE,
    ),
    Problem(
        "mnistG-cnn-bn-relu",
        "holdout-2",
        "MNIST t10k 6000..8000 reshuffled, CNN 8-16 BN ReLU, CE",
        lambda: mnist_slice(6000, 8000, False, 8),
        cnn(28, (8, 16), "relu", True),
        CE,
        epochs=3,
    ),
    Problem(
        "moons-mlp2-bn-tanh",
        "holdout-2",
        "two moons, MLP 2-32-32-1 BN tanh, BCE",
        moons,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
    ),
    Problem(
        "friedman-mlp2-bn-relu",
        "holdout-2",
        "Friedman #1, MLP 10-64-64-1 BN ReLU, MSE",
        friedman,
        mlp((64, 64), "relu", batchnorm=True),
        MSE,
    ),
    Problem(
        "wine-mlp3-bn-sigmoid",
        "holdout-2",
        "wine, MLP 13-32-32-32-3 BN sigmoid, CE",
        wine,
        mlp((32, 32, 32), "sigmoid", batchnorm=True),
        CE,
        epochs=10,
    ),
    Problem(
        "iris-mlp2-elu",
        "holdout-2",
        "iris, MLP 4-32-32-3 ELU, CE",
        iris,
        mlp((32, 32), "elu"),
        CE,
        epochs=20,
    ),
    Problem(
        "cancer-mlp1-tanh",
        "holdout-2",
        "breast cancer, MLP 30-32-1 tanh, BCE",
        breast_cancer,
        mlp((32,), "tanh"),
        BCE,
        epochs=10,
    ),
    Problem(
        "classes3-resnet-sin",
        "holdout-2",
        "synthetic 3 classes, residual MLP width 32 sin, CE",
        synthetic_three_classes,
        residual(32, "sin"),
        CE,
    ),
    Problem(
        "diabetes-mlp3-tanh",
        "holdout-2",
        "diabetes, MLP 10-32-32-32-1 tanh, MSE",
        diabetes,
        mlp((32, 32, 32), "tanh"),
        MSE,
        epochs=10,
    ),
]
# holdout-3: a fourth evaluation half, written after holdout-2 had been seen and before the
# limit was taken per output channel, and run once after that change
HOLDOUT3 = [
    Problem(
        "digits-cnn-bn-none",
        "holdout-3",
        "digits 8x8, CNN 8-16 BN no activation, CE",
        digits_images,
        cnn(8, (8, 16), "none", True),
        CE,
    ),
    Problem(
        "circles-mlp2-bn-sigmoid",
        "holdout-3",
        "two circles, MLP 2-32-32-1 BN sigmoid, BCE",
        circles,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "iris-mlp2-bn-relu",
        "holdout-3",
        "iris, MLP 4-32-32-3 BN ReLU, CE",
        iris,
        mlp((32, 32), "relu", batchnorm=True),
        CE,
        epochs=20,
    ),
    Problem(
        "cancer-mlp2-bn-tanh",
        "holdout-3",
        "breast cancer, MLP 30-32-32-1 BN tanh, BCE",
        breast_cancer,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "friedman3-mlp2-bn-elu",
        "holdout-3",
        "Friedman #3, MLP 4-32-32-1 BN ELU, MSE",
        friedman3,
        mlp((32, 32), "elu", batchnorm=True),
        MSE,
    ),
    Problem(
        "mnistH-cnn-bn-tanh",
        "holdout-3",
        "MNIST t10k 8000..10000 reshuffled, CNN 8-16 BN tanh, CE",
        lambda: mnist_slice(8000, 10000, False, 11),
        cnn(28, (8, 16), "tanh", True),
        CE,
        epochs=3,
    ),
    Problem(
        "classes3-mlp3-bn-sin",
        "holdout-3",
        "synthetic 3 classes, MLP 12-32-32-32-3 BN sin, CE",
        synthetic_three_classes,
        mlp((32, 32, 32), "sin", batchnorm=True),
        CE,
    ),
    Problem(
        "diabetes-mlp2-bn-sigmoid",
        "holdout-3",
        "diabetes, MLP 10-32-32-1 BN sigmoid, MSE",
        diabetes,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
        epochs=10,
    ),
    Problem(
        "digits-mlp2-elu",
        "holdout-3",
        "digits, MLP 64-128-64-10 ELU, CE",
        digits_flat,
        mlp((128, 64), "elu"),
        CE,
    ),
    Problem(
        "moons-mlp3-relu",
        "holdout-3",
        "two moons, MLP 2-32-32-32-1 ReLU, BCE",
        moons,
        mlp((32, 32, 32), "relu"),
        BCE,
    ),
]
# holdout-4: a fifth evaluation half, written with the three development problems above and
# before any step rule was tried on them, and run once after the setting was fixed
HOLDOUT4 = [
    Problem(
        "blobs-mlp2-bn-sigmoid",
        "holdout-4",
        "5 Gaussian blobs in 10-d, MLP 10-32-32-5 BN sigmoid, CE",
        blobs,
        mlp((32, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "quantiles-mlp2-bn-sigmoid",
        "holdout-4",
        "Gaussian quantiles, 3 classes in 4-d, MLP 4-32-32-3 BN sigmoid, CE",
        gaussian_quantiles,
        mlp((32, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "hastie-mlp3-bn-sigmoid",
        "holdout-4",
        "Hastie 10.2, MLP 10-32-32-32-1 BN sigmoid, BCE",
        hastie,
        mlp((32, 32, 32), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "friedman2-mlp2-bn-sigmoid",
        "holdout-4",
        "Friedman #2, MLP 4-32-32-1 BN sigmoid, MSE",
        friedman2,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
    ),
    Problem(
        "mnistI-cnn-bn-sigmoid",
        "holdout-4",
        "MNIST t10k 2000..4000 reshuffled, CNN 4-8 BN sigmoid, CE",
        lambda: mnist_slice(2000, 4000, False, 12),
        cnn(28, (4, 8), "sigmoid", True),
        CE,
        epochs=3,
    ),
    Problem(
        "quantiles-mlp3-bn-elu",
        "holdout-4",
        "Gaussian quantiles, 3 classes in 4-d, MLP 4-32-32-32-3 BN ELU, CE",
        gaussian_quantiles,
        mlp((32, 32, 32), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "hastie-mlp2-tanh",
        "holdout-4",
        "Hastie 10.2, MLP 10-64-64-1 tanh, BCE",
        hastie,
        mlp((64, 64), "tanh"),
        BCE,
    ),
    Problem(
        "swissroll-mlp3-relu",
        "holdout-4",
        "swiss roll position from 3-d, MLP 3-32-32-32-1 ReLU, MSE",
        swiss_roll,
        mlp((32, 32, 32), "relu"),
        MSE,
    ),
    Problem(
        "blobs-resnet-elu",
        "holdout-4",
        "5 Gaussian blobs in 10-d, residual MLP width 64 ELU, CE",
        blobs,
        residual(64, "elu"),
        CE,
    ),
    Problem(
        "digits-cnn-bn-sin",
        "holdout-4",
        "digits 8x8, CNN 8-16 BN sin, CE",
        digits_images,
        cnn(8, (8, 16), "sin", True),
        CE,
    ),
]
# holdout-5: a sixth evaluation half, written after holdout-4's problems had been written and
# before any per-row curvature fit was tried, and run once after the setting was fixed
HOLDOUT5 = [
    Problem(
        "wine-mlp2-bn-sigmoid",
        "holdout-5",
        "wine, MLP 13-32-32-3 BN sigmoid, CE",
        wine,
        mlp((32, 32), "sigmoid", batchnorm=True),
        CE,
        epochs=10,
    ),
    Problem(
        "binary-mlp3-bn-sigmoid",
        "holdout-5",
        "synthetic 2 classes in 16-d, MLP 16-64-64-64-1 BN sigmoid, BCE",
        synthetic_binary,
        mlp((64, 64, 64), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "regression-mlp2-bn-sigmoid",
        "holdout-5",
        "tanh of a linear regression in 8-d, MLP 8-32-32-1 BN sigmoid, MSE",
        regression,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
    ),
    Problem(
        "digits-mlp2-bn-sigmoid",
        "holdout-5",
        "digits, MLP 64-64-64-10 BN sigmoid, CE",
        digits_flat,
        mlp((64, 64), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistJ-mlp2-bn-sigmoid",
        "holdout-5",
        "MNIST t10k 4000..6000 reshuffled, MLP 784-64-32-10 BN sigmoid, CE",
        lambda: mnist_slice(4000, 6000, True, 13),
        mlp((64, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "iris-mlp1-bn-sigmoid",
        "holdout-5",
        "iris, MLP 4-16-3 BN sigmoid, CE",
        iris,
        mlp((16,), "sigmoid", batchnorm=True),
        CE,
        epochs=20,
    ),
    Problem(
        "binary-mlp2-bn-tanh",
        "holdout-5",
        "synthetic 2 classes in 16-d, MLP 16-32-32-1 BN tanh, BCE",
        synthetic_binary,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
    ),
    Problem(
        "regression-mlp3-elu",
        "holdout-5",
        "tanh of a linear regression in 8-d, MLP 8-32-32-32-1 ELU, MSE",
        regression,
        mlp((32, 32, 32), "elu"),
        MSE,
    ),
    Problem(
        "digits-cnn-bn-elu-wide",
        "holdout-5",
        "digits 8x8, CNN 16-32 BN ELU, CE",
        digits_images,
        cnn(8, (16, 32), "elu", True),
        CE,
    ),
    Problem(
        "wine-resnet-sigmoid",
        "holdout-5",
        "wine, residual MLP width 32 sigmoid, CE",
        wine,
        residual(32, "sigmoid"),
        CE,
        epochs=10,
    ),
]
# holdout-6: a seventh evaluation half, written before the epoch rollback was tried, and run
# once after the setting was fixed
HOLDOUT6 = [
    Problem(
        "moons2-mlp2-bn-sigmoid",
        "holdout-6",
        "two moons, noise 0.25, MLP 2-64-64-1 BN sigmoid, BCE",
        moons_wide,
        mlp((64, 64), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "circles2-mlp3-bn-relu",
        "holdout-6",
        "two circles, noise 0.15, MLP 2-32-32-32-1 BN ReLU, BCE",
        circles_noisy,
        mlp((32, 32, 32), "relu", batchnorm=True),
        BCE,
    ),
    Problem(
        "friedmanB-mlp3-bn-tanh",
        "holdout-6",
        "Friedman #1, noise 1.0, MLP 10-64-64-64-1 BN tanh, MSE",
        friedman_b,
        mlp((64, 64, 64), "tanh", batchnorm=True),
        MSE,
    ),
    Problem(
        "classes5-mlp2-bn-sigmoid",
        "holdout-6",
        "synthetic 5 classes in 24-d, MLP 24-64-64-5 BN sigmoid, CE",
        synthetic_five_classes,
        mlp((64, 64), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistK-mlp2-bn-tanh",
        "holdout-6",
        "MNIST t10k 2500..4500 reshuffled, MLP 784-64-64-10 BN tanh, CE",
        lambda: mnist_slice(2500, 4500, True, 17),
        mlp((64, 64), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "digits-cnn-bn-relu-wide",
        "holdout-6",
        "digits 8x8, CNN 16-32 BN ReLU, CE",
        digits_images,
        cnn(8, (16, 32), "relu", True),
        CE,
    ),
    Problem(
        "sparse-mlp2-elu",
        "holdout-6",
        "sparse uncorrelated regression in 10-d, MLP 10-32-32-1 ELU, MSE",
        sparse_uncorrelated,
        mlp((32, 32), "elu"),
        MSE,
    ),
    Problem(
        "wine-mlp2-bn-relu",
        "holdout-6",
        "wine, MLP 13-64-64-3 BN ReLU, CE",
        wine,
        mlp((64, 64), "relu", batchnorm=True),
        CE,
        epochs=10,
    ),
    Problem(
        "cancer-mlp2-bn-sigmoid",
        "holdout-6",
        "breast cancer, MLP 30-32-32-1 BN sigmoid, BCE",
        breast_cancer,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "scurve-mlp2-tanh",
        "holdout-6",
        "S-curve position from 3-d, MLP 3-32-32-1 tanh, MSE",
        s_curve,
        mlp((32, 32), "tanh"),
        MSE,
    ),
]
# holdout-7: an eighth evaluation half, written after holdout-6 had been run (the rollback of
# f = 1 froze one of its problems) and before the recovering rollback was tried
HOLDOUT7 = [
    Problem(
        "xor-mlp2-bn-tanh",
        "holdout-7",
        "XOR of signs in 4-d, MLP 4-32-32-1 BN tanh, BCE",
        xor_four,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
    ),
    Problem(
        "spirals-mlp2-relu",
        "holdout-7",
        "two spirals, MLP 2-64-64-1 ReLU, BCE",
        spirals,
        mlp((64, 64), "relu"),
        BCE,
    ),
    Problem(
        "classes6-mlp3-bn-elu",
        "holdout-7",
        "synthetic 6 classes in 30-d, MLP 30-64-64-64-6 BN ELU, CE",
        synthetic_six_classes,
        mlp((64, 64, 64), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "regressionB-mlp2-bn-relu",
        "holdout-7",
        "tanh of a linear regression in 12-d, MLP 12-64-64-1 BN ReLU, MSE",
        regression_b,
        mlp((64, 64), "relu", batchnorm=True),
        MSE,
    ),
    Problem(
        "mnistL-cnn-bn-sigmoid",
        "holdout-7",
        "MNIST t10k 6500..8000 reshuffled, CNN 4-8 BN sigmoid, CE",
        lambda: mnist_slice(6500, 8000, False, 19),
        cnn(28, (4, 8), "sigmoid", True),
        CE,
        epochs=3,
    ),
    Problem(
        "digits-mlp4-bn-relu",
        "holdout-7",
        "digits, MLP 64-64-64-64-64-10 BN ReLU, CE",
        digits_flat,
        mlp((64, 64, 64, 64), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "friedman3B-mlp2-sigmoid",
        "holdout-7",
        "Friedman #3, noise 0.1, MLP 4-64-64-1 sigmoid, MSE",
        friedman3_b,
        mlp((64, 64), "sigmoid"),
        MSE,
    ),
    Problem(
        "blobs3-mlp1-bn-sigmoid",
        "holdout-7",
        "3 Gaussian blobs in 6-d, MLP 6-32-3 BN sigmoid, CE",
        blobs_three,
        mlp((32,), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "cancer-resnet-elu",
        "holdout-7",
        "breast cancer, residual MLP width 32 ELU, BCE",
        breast_cancer,
        residual(32, "elu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "wine-mlp1-bn-tanh",
        "holdout-7",
        "wine, MLP 13-32-3 BN tanh, CE",
        wine,
        mlp((32,), "tanh", batchnorm=True),
        CE,
        epochs=10,
    ),
]
# holdout-8: a ninth evaluation half, written after holdout-7 had been run and before
# newton-krylov-fast's damping was chosen again on the development half
HOLDOUT8 = [
    Problem(
        "moons3-mlp3-relu",
        "holdout-8",
        "two moons, noise 0.3, MLP 2-32-32-32-1 ReLU, BCE",
        moons_noisy,
        mlp((32, 32, 32), "relu"),
        BCE,
    ),
    Problem(
        "circles3-mlp2-bn-tanh",
        "holdout-8",
        "two circles, factor 0.4, MLP 2-64-64-1 BN tanh, BCE",
        circles_tight,
        mlp((64, 64), "tanh", batchnorm=True),
        BCE,
    ),
    Problem(
        "classes4B-mlp2-sigmoid",
        "holdout-8",
        "synthetic 4 classes in 16-d, MLP 16-64-64-4 sigmoid, CE",
        synthetic_four_classes_b,
        mlp((64, 64), "sigmoid"),
        CE,
    ),
    Problem(
        "friedman2B-mlp3-bn-relu",
        "holdout-8",
        "Friedman #2, noise 20, MLP 4-32-32-32-1 BN ReLU, MSE",
        friedman2_b,
        mlp((32, 32, 32), "relu", batchnorm=True),
        MSE,
    ),
    Problem(
        "mnistM-mlp1-bn-relu",
        "holdout-8",
        "MNIST t10k 8500..10000 reshuffled, MLP 784-128-10 BN ReLU, CE",
        lambda: mnist_slice(8500, 10000, True, 23),
        mlp((128,), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "digits-cnn-bn-tanh-wide",
        "holdout-8",
        "digits 8x8, CNN 16-32 BN tanh, CE",
        digits_images,
        cnn(8, (16, 32), "tanh", True),
        CE,
    ),
    Problem(
        "quantiles2-mlp2-bn-elu",
        "holdout-8",
        "Gaussian quantiles, 2 classes in 3-d, MLP 3-32-32-1 BN ELU, BCE",
        gaussian_quantiles_two,
        mlp((32, 32), "elu", batchnorm=True),
        BCE,
    ),
    Problem(
        "hastieB-mlp1-relu",
        "holdout-8",
        "Hastie 10.2, MLP 10-64-1 ReLU, BCE",
        hastie_b,
        mlp((64,), "relu"),
        BCE,
    ),
    Problem(
        "iris-mlp2-bn-tanh",
        "holdout-8",
        "iris, MLP 4-32-32-3 BN tanh, CE",
        iris,
        mlp((32, 32), "tanh", batchnorm=True),
        CE,
        epochs=20,
    ),
    Problem(
        "diabetes-resnet-tanh",
        "holdout-8",
        "diabetes, residual MLP width 32 tanh, MSE",
        diabetes,
        residual(32, "tanh"),
        MSE,
        epochs=10,
    ),
]
# holdout-9: a tenth evaluation half, written after holdout-8 had been run and before
# newton-krylov's epoch rollback was tried on the second development set
HOLDOUT9 = [
    Problem(
        "moons5-mlp2-bn-sigmoid",
        "holdout-9",
        "two moons, noise 0.22, MLP 2-32-32-1 BN sigmoid, BCE",
        moons_h9,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "iris-mlp2-bn-elu",
        "holdout-9",
        "iris, MLP 4-32-32-3 BN ELU, CE",
        iris,
        mlp((32, 32), "elu", batchnorm=True),
        CE,
        epochs=20,
    ),
    Problem(
        "friedmanC-mlp2-bn-sigmoid",
        "holdout-9",
        "Friedman #1, noise 0.5, MLP 10-64-64-1 BN sigmoid, MSE",
        friedman_h9,
        mlp((64, 64), "sigmoid", batchnorm=True),
        MSE,
    ),
    Problem(
        "mnistN-cnn-bn-relu",
        "holdout-9",
        "MNIST t10k 1500..3000 reshuffled, CNN 8-16 BN ReLU, CE",
        lambda: mnist_slice(1500, 3000, False, 29),
        cnn(28, (8, 16), "relu", True),
        CE,
    ),
    Problem(
        "digits-resnet-sin",
        "holdout-9",
        "digits, residual MLP width 64 sin, CE",
        digits_flat,
        residual(64, "sin"),
        CE,
    ),
    Problem(
        "cancer-mlp3-bn-elu",
        "holdout-9",
        "breast cancer, MLP 30-32-32-32-1 BN ELU, BCE",
        breast_cancer,
        mlp((32, 32, 32), "elu", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "classes3C-mlp1-none",
        "holdout-9",
        "synthetic 3 classes in 14-d, MLP 14-32-3 none, CE",
        synthetic_three_classes_h9,
        mlp((32,), "none"),
        CE,
    ),
    Problem(
        "regressionC-mlp2-tanh",
        "holdout-9",
        "tanh of a linear regression in 10-d, MLP 10-64-64-1 tanh, MSE",
        regression_h9,
        mlp((64, 64), "tanh"),
        MSE,
    ),
    Problem(
        "blobs4-mlp2-bn-sin",
        "holdout-9",
        "4 Gaussian blobs in 8-d, MLP 8-32-32-4 BN sin, CE",
        blobs_four,
        mlp((32, 32), "sin", batchnorm=True),
        CE,
    ),
    Problem(
        "diabetes-mlp2-bn-relu",
        "holdout-9",
        "diabetes, MLP 10-32-32-1 BN ReLU, MSE",
        diabetes,
        mlp((32, 32), "relu", batchnorm=True),
        MSE,
        epochs=20,
    ),
]
# holdout-10: an eleventh evaluation half, written after holdout-9 had been run and before
# newton-krylov-fast without pre-batch screening was tried on the development half
HOLDOUT10 = [
    Problem(
        "circles6-mlp2-bn-sigmoid",
        "holdout-10",
        "two circles, factor 0.5, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h10,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistO-mlp2-relu",
        "holdout-10",
        "MNIST t10k 7500..9500 reshuffled, MLP 784-96-48-10 ReLU, CE",
        lambda: mnist_slice(7500, 9500, True, 31),
        mlp((96, 48), "relu"),
        CE,
    ),
    Problem(
        "friedman3C-mlp3-tanh",
        "holdout-10",
        "Friedman #3, noise 0.08, MLP 4-32-32-32-1 tanh, MSE",
        friedman3_h10,
        mlp((32, 32, 32), "tanh"),
        MSE,
        epochs=10,
    ),
    Problem(
        "classes5C-mlp2-bn-relu",
        "holdout-10",
        "synthetic 5 classes in 20-d, MLP 20-64-64-5 BN ReLU, CE",
        synthetic_five_classes_h10,
        mlp((64, 64), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "digits-cnn-elu",
        "holdout-10",
        "digits 8x8, CNN 8-16 ELU, CE",
        digits_images,
        cnn(8, (8, 16), "elu", False),
        CE,
    ),
    Problem(
        "quantiles3-mlp2-sin",
        "holdout-10",
        "Gaussian quantiles, 3 classes in 5-d, MLP 5-32-32-3 sin, CE",
        quantiles_h10,
        mlp((32, 32), "sin"),
        CE,
    ),
    Problem(
        "hastieC-mlp2-bn-tanh",
        "holdout-10",
        "Hastie 10.2, MLP 10-64-64-1 BN tanh, BCE",
        hastie_h10,
        mlp((64, 64), "tanh", batchnorm=True),
        BCE,
    ),
    Problem(
        "wine-mlp2-relu",
        "holdout-10",
        "wine, MLP 13-32-32-3 ReLU, CE",
        wine,
        mlp((32, 32), "relu"),
        CE,
        epochs=20,
    ),
    Problem(
        "cancer-resnet-sigmoid",
        "holdout-10",
        "breast cancer, residual MLP width 32 sigmoid, BCE",
        breast_cancer,
        residual(32, "sigmoid"),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistP-cnn-bn-elu",
        "holdout-10",
        "MNIST t10k 500..2000 reshuffled, CNN 8-16 BN ELU, CE",
        lambda: mnist_slice(500, 2000, False, 37),
        cnn(28, (8, 16), "elu", True),
        CE,
    ),
]
# holdout-11: a twelfth evaluation half, written after holdout-10 had been run and before
# newton-krylov-fast with fewer Krylov iterations per step was tried on the development half
HOLDOUT11 = [
    Problem(
        "moons7-mlp2-bn-sigmoid",
        "holdout-11",
        "two moons, noise 0.2, MLP 2-32-32-1 BN sigmoid, BCE",
        moons_h11,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "mnistQ-mlp2-tanh",
        "holdout-11",
        "MNIST t10k 1200..3200 reshuffled, MLP 784-64-32-10 tanh, CE",
        lambda: mnist_slice(1200, 3200, True, 41),
        mlp((64, 32), "tanh"),
        CE,
    ),
    Problem(
        "spiralsB-mlp3-relu",
        "holdout-11",
        "two spirals, noise 0.25, MLP 2-64-64-64-1 ReLU, BCE",
        spirals_h11,
        mlp((64, 64, 64), "relu"),
        BCE,
    ),
    Problem(
        "cancer-mlp2-bn-relu",
        "holdout-11",
        "breast cancer, MLP 30-32-32-1 BN ReLU, BCE",
        breast_cancer,
        mlp((32, 32), "relu", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "diabetes-mlp3-elu",
        "holdout-11",
        "diabetes, MLP 10-32-32-32-1 ELU, MSE",
        diabetes,
        mlp((32, 32, 32), "elu"),
        MSE,
        epochs=10,
    ),
    Problem(
        "digits-cnn-sigmoid",
        "holdout-11",
        "digits 8x8, CNN 8-16 sigmoid, CE",
        digits_images,
        cnn(8, (8, 16), "sigmoid", False),
        CE,
    ),
    Problem(
        "friedmanD-resnet-tanh",
        "holdout-11",
        "Friedman #1, noise 0.7, residual MLP width 32 tanh, MSE",
        friedman_h11,
        residual(32, "tanh"),
        MSE,
    ),
    Problem(
        "classes4D-mlp1-elu",
        "holdout-11",
        "synthetic 4 classes in 16-d, MLP 16-64-4 ELU, CE",
        synthetic_four_classes_h11,
        mlp((64,), "elu"),
        CE,
    ),
    Problem(
        "mnistR-cnn-relu",
        "holdout-11",
        "MNIST t10k 5500..7500 reshuffled, CNN 8-16 ReLU, CE",
        lambda: mnist_slice(5500, 7500, False, 43),
        cnn(28, (8, 16), "relu", False),
        CE,
        epochs=3,
    ),
    Problem(
        "wine-mlp2-bn-tanh",
        "holdout-11",
        "wine, MLP 13-32-32-3 BN tanh, CE",
        wine,
        mlp((32, 32), "tanh", batchnorm=True),
        CE,
        epochs=10,
    ),
]
# holdout-12: a thirteenth evaluation half, written after holdout-11 had been run and before
# newton-krylov's Taylor band eta was tried again on the development half
HOLDOUT12 = [
    Problem(
        "spiralsC-mlp2-tanh",
        "holdout-12",
        "two spirals, noise 0.3, MLP 2-64-64-1 tanh, BCE",
        spirals_h12,
        mlp((64, 64), "tanh"),
        BCE,
    ),
    Problem(
        "circles7-mlp3-relu",
        "holdout-12",
        "two circles, factor 0.5, MLP 2-32-32-32-1 ReLU, BCE",
        circles_h12,
        mlp((32, 32, 32), "relu"),
        BCE,
    ),
    Problem(
        "mnistS-mlp1-relu",
        "holdout-12",
        "MNIST t10k 6800..8800 reshuffled, MLP 784-128-10 ReLU, CE",
        lambda: mnist_slice(6800, 8800, True, 47),
        mlp((128,), "relu"),
        CE,
    ),
    Problem(
        "digits-mlp3-bn-relu",
        "holdout-12",
        "digits, MLP 64-64-64-64-10 BN ReLU, CE",
        digits_flat,
        mlp((64, 64, 64), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "friedman3D-mlp2-elu",
        "holdout-12",
        "Friedman #3, noise 0.06, MLP 4-32-32-1 ELU, MSE",
        friedman3_h12,
        mlp((32, 32), "elu"),
        MSE,
    ),
    Problem(
        "iris-mlp2-tanh",
        "holdout-12",
        "iris, MLP 4-32-32-3 tanh, CE",
        iris,
        mlp((32, 32), "tanh"),
        CE,
        epochs=20,
    ),
    Problem(
        "blobs5-resnet-relu",
        "holdout-12",
        "4 blobs in 8-d, residual MLP width 32 ReLU, CE",
        blobs_h12,
        residual(32, "relu"),
        CE,
    ),
    Problem(
        "mnistT-cnn-bn-tanh",
        "holdout-12",
        "MNIST t10k 3500..5000 reshuffled, CNN 8-16 BN tanh, CE",
        lambda: mnist_slice(3500, 5000, False, 53),
        cnn(28, (8, 16), "tanh", True),
        CE,
        epochs=3,
    ),
    Problem(
        "cancer-mlp3-sin",
        "holdout-12",
        "breast cancer, MLP 30-32-32-32-1 sin, BCE",
        breast_cancer,
        mlp((32, 32, 32), "sin"),
        BCE,
        epochs=10,
    ),
    Problem(
        "moons8-mlp2-bn-relu",
        "holdout-12",
        "two moons, noise 0.25, MLP 2-32-32-1 BN ReLU, BCE",
        moons_h12,
        mlp((32, 32), "relu", batchnorm=True),
        BCE,
    ),
]
# holdout-13: a fourteenth evaluation half, written after holdout-12 had been run and before
# newton-krylov-fast's Taylor band eta was tried on the development half
HOLDOUT13 = [
    Problem(
        "spiralsD-mlp2-elu",
        "holdout-13",
        "two spirals, noise 0.3, MLP 2-64-64-1 ELU, BCE",
        spirals_h13,
        mlp((64, 64), "elu"),
        BCE,
    ),
    Problem(
        "mnistU-mlp2-bn-tanh",
        "holdout-13",
        "MNIST t10k 4500..6500 reshuffled, MLP 784-64-32-10 BN tanh, CE",
        lambda: mnist_slice(4500, 6500, True, 59),
        mlp((64, 32), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "circles8-mlp2-bn-sigmoid",
        "holdout-13",
        "two circles, factor 0.5, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h13,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "digits-mlp2-sin",
        "holdout-13",
        "digits, MLP 64-64-32-10 sin, CE",
        digits_flat,
        mlp((64, 32), "sin"),
        CE,
    ),
    Problem(
        "friedmanE-mlp3-relu",
        "holdout-13",
        "Friedman #1, noise 0.5, MLP 10-32-32-32-1 ReLU, MSE",
        friedman_h13,
        mlp((32, 32, 32), "relu"),
        MSE,
    ),
    Problem(
        "wine-resnet-tanh",
        "holdout-13",
        "wine, residual MLP width 32 tanh, CE",
        wine,
        residual(32, "tanh"),
        CE,
        epochs=10,
    ),
    Problem(
        "classes3E-mlp2-bn-elu",
        "holdout-13",
        "synthetic 3 classes in 12-d, MLP 12-64-64-3 BN ELU, CE",
        synthetic_three_classes_h13,
        mlp((64, 64), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistV-cnn-sigmoid",
        "holdout-13",
        "MNIST t10k 2200..3700 reshuffled, CNN 8-16 sigmoid, CE",
        lambda: mnist_slice(2200, 3700, False, 61),
        cnn(28, (8, 16), "sigmoid", False),
        CE,
        epochs=3,
    ),
    Problem(
        "moons9-mlp1-relu",
        "holdout-13",
        "two moons, noise 0.2, MLP 2-64-1 ReLU, BCE",
        moons_h13,
        mlp((64,), "relu"),
        BCE,
    ),
    Problem(
        "diabetes-mlp2-bn-tanh",
        "holdout-13",
        "diabetes, MLP 10-32-32-1 BN tanh, MSE",
        diabetes,
        mlp((32, 32), "tanh", batchnorm=True),
        MSE,
        epochs=10,
    ),
]
# holdout-14: a fifteenth evaluation half, written after holdout-13 had been run and before
# newton-krylov's starting damping was tried again on the development half
HOLDOUT14 = [
    Problem(
        "circles9-mlp2-bn-sigmoid",
        "holdout-14",
        "two circles, factor 0.55, noise 0.12, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h14,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "friedman2D-mlp2-bn-elu",
        "holdout-14",
        "Friedman #2, noise 12, MLP 4-32-32-1 BN ELU, MSE",
        friedman2_h14,
        mlp((32, 32), "elu", batchnorm=True),
        MSE,
    ),
    Problem(
        "quantiles4-mlp3-tanh",
        "holdout-14",
        "Gaussian quantiles, 4 classes in 4-d, MLP 4-32-32-32-4 tanh, CE",
        quantiles_h14,
        mlp((32, 32, 32), "tanh"),
        CE,
    ),
    Problem(
        "hastieD-mlp1-sigmoid",
        "holdout-14",
        "Hastie 10.2, MLP 10-64-1 sigmoid, BCE",
        hastie_h14,
        mlp((64,), "sigmoid"),
        BCE,
    ),
    Problem(
        "moons10-mlp3-bn-sigmoid",
        "holdout-14",
        "two moons, noise 0.3, MLP 2-32-32-32-1 BN sigmoid, BCE",
        moons_h14,
        mlp((32, 32, 32), "sigmoid", batchnorm=True),
        BCE,
    ),
    Problem(
        "mnistW-mlp2-elu",
        "holdout-14",
        "MNIST t10k 8200..9800 reshuffled, MLP 784-64-32-10 ELU, CE",
        lambda: mnist_slice(8200, 9800, True, 67),
        mlp((64, 32), "elu"),
        CE,
    ),
    Problem(
        "digits-cnn-bn-relu-long",
        "holdout-14",
        "digits 8x8, CNN 8-16 BN ReLU, CE",
        digits_images,
        cnn(8, (8, 16), "relu", True),
        CE,
        epochs=8,
    ),
    Problem(
        "cancer-mlp2-bn-sigmoid-wide",
        "holdout-14",
        "breast cancer, MLP 30-64-64-1 BN sigmoid, BCE",
        breast_cancer,
        mlp((64, 64), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "iris-mlp3-relu",
        "holdout-14",
        "iris, MLP 4-32-32-32-3 ReLU, CE",
        iris,
        mlp((32, 32, 32), "relu"),
        CE,
        epochs=20,
    ),
    Problem(
        "mnistX-cnn-bn-sigmoid",
        "holdout-14",
        "MNIST t10k 6100..7600 reshuffled, CNN 8-16 BN sigmoid, CE",
        lambda: mnist_slice(6100, 7600, False, 71),
        cnn(28, (8, 16), "sigmoid", True),
        CE,
        epochs=3,
    ),
]
# holdout-15: a sixteenth evaluation half, written after holdout-14 had been run and before
# newton-krylov's Levenberg-Marquardt damping was looked at again on the development half
HOLDOUT15 = [
    Problem(
        "circles10-mlp2-bn-sigmoid",
        "holdout-15",
        "two circles, factor 0.6, noise 0.1, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h15,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "spiralsE-mlp2-relu",
        "holdout-15",
        "two spirals, noise 0.25, MLP 2-64-64-1 ReLU, BCE",
        spirals_h15,
        mlp((64, 64), "relu"),
        BCE,
    ),
    Problem(
        "mnistY-mlp2-bn-relu",
        "holdout-15",
        "MNIST t10k 1700..3500 reshuffled, MLP 784-64-32-10 BN ReLU, CE",
        lambda: mnist_slice(1700, 3500, True, 73),
        mlp((64, 32), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "friedmanF-mlp2-sin",
        "holdout-15",
        "Friedman #1, noise 1.0, MLP 10-32-32-1 sin, MSE",
        friedman_h15,
        mlp((32, 32), "sin"),
        MSE,
    ),
    Problem(
        "moons11-mlp2-bn-tanh",
        "holdout-15",
        "two moons, noise 0.2, MLP 2-32-32-1 BN tanh, BCE",
        moons_h15,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "classes5F-mlp3-elu",
        "holdout-15",
        "synthetic 5 classes in 16-d, MLP 16-64-64-64-5 ELU, CE",
        synthetic_five_classes_h15,
        mlp((64, 64, 64), "elu"),
        CE,
    ),
    Problem(
        "cancer-resnet-relu",
        "holdout-15",
        "breast cancer, residual MLP width 32 ReLU, BCE",
        breast_cancer,
        residual(32, "relu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistZ-cnn-relu",
        "holdout-15",
        "MNIST t10k 5200..6700 reshuffled, CNN 8-16 ReLU, CE",
        lambda: mnist_slice(5200, 6700, False, 79),
        cnn(28, (8, 16), "relu", False),
        CE,
        epochs=3,
    ),
    Problem(
        "digits-mlp4-none",
        "holdout-15",
        "digits, MLP 64-64-64-64-64-10 no activation, CE",
        digits_flat,
        mlp((64, 64, 64, 64), "none"),
        CE,
    ),
    Problem(
        "blobs6-mlp2-bn-sigmoid",
        "holdout-15",
        "blobs, 5 centres in 6-d, std 2.5, MLP 6-32-32-5 BN sigmoid, CE",
        blobs_h15,
        mlp((32, 32), "sigmoid", batchnorm=True),
        CE,
    ),
]
# holdout-16: a seventeenth evaluation half, written after holdout-15 had been run and before
# newton-krylov-fast's Taylor band and damping rule were tried on the seen halves
HOLDOUT16 = [
    Problem(
        "spiralsF-mlp3-relu",
        "holdout-16",
        "two spirals, noise 0.2, MLP 2-64-64-64-1 ReLU, BCE",
        spirals_h16,
        mlp((64, 64, 64), "relu"),
        BCE,
    ),
    Problem(
        "circles11-mlp2-bn-sigmoid",
        "holdout-16",
        "two circles, factor 0.5, noise 0.08, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h16,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "moons12-mlp2-relu",
        "holdout-16",
        "two moons, noise 0.15, MLP 2-32-32-1 ReLU, BCE",
        moons_h16,
        mlp((32, 32), "relu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "friedman3F-mlp2-bn-tanh",
        "holdout-16",
        "Friedman #3, noise 0.05, MLP 4-32-32-1 BN tanh, MSE",
        friedman3_h16,
        mlp((32, 32), "tanh", batchnorm=True),
        MSE,
    ),
    Problem(
        "classes4G-mlp2-bn-elu",
        "holdout-16",
        "synthetic 4 classes in 10-d, MLP 10-64-64-4 BN ELU, CE",
        synthetic_four_classes_h16,
        mlp((64, 64), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "quantiles3B-mlp2-sin",
        "holdout-16",
        "Gaussian quantiles, 3 classes in 3-d, MLP 3-32-32-3 sin, CE",
        quantiles_h16,
        mlp((32, 32), "sin"),
        CE,
        epochs=10,
    ),
    Problem(
        "mnistAA-mlp1-relu",
        "holdout-16",
        "MNIST t10k 300..2100 reshuffled, MLP 784-128-10 ReLU, CE",
        lambda: mnist_slice(300, 2100, True, 83),
        mlp((128,), "relu"),
        CE,
    ),
    Problem(
        "mnistAB-cnn-bn-relu",
        "holdout-16",
        "MNIST t10k 7300..8800 reshuffled, CNN 8-16 BN ReLU, CE",
        lambda: mnist_slice(7300, 8800, False, 89),
        cnn(28, (8, 16), "relu", True),
        CE,
        epochs=3,
    ),
    Problem(
        "wine-mlp3-sigmoid",
        "holdout-16",
        "wine, MLP 13-32-32-32-3 sigmoid, CE",
        wine,
        mlp((32, 32, 32), "sigmoid"),
        CE,
        epochs=20,
    ),
    Problem(
        "diabetes-resnet-relu",
        "holdout-16",
        "diabetes, residual MLP width 32 ReLU, MSE",
        diabetes,
        residual(32, "relu"),
        MSE,
        epochs=10,
    ),
]
# holdout-17: an eighteenth evaluation half, written after holdout-16 had been run and before
# newton-krylov-fast with newton-krylov's Taylor band, damping rule and starting damping was
# tried on the seen halves
HOLDOUT17 = [
    Problem(
        "spiralsG-mlp2-relu",
        "holdout-17",
        "two spirals, noise 0.3, MLP 2-32-32-1 ReLU, BCE",
        spirals_h17,
        mlp((32, 32), "relu"),
        BCE,
        epochs=10,
    ),
    Problem(
        "circles12-mlp2-bn-sigmoid",
        "holdout-17",
        "two circles, factor 0.45, noise 0.1, MLP 2-64-64-1 BN sigmoid, BCE",
        circles_h17,
        mlp((64, 64), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "moons13-mlp3-elu",
        "holdout-17",
        "two moons, noise 0.25, MLP 2-32-32-32-1 ELU, BCE",
        moons_h17,
        mlp((32, 32, 32), "elu"),
        BCE,
    ),
    Problem(
        "friedmanG-mlp2-bn-relu",
        "holdout-17",
        "Friedman #1 in 8-d, noise 0.3, MLP 8-64-64-1 BN ReLU, MSE",
        friedman_h17,
        mlp((64, 64), "relu", batchnorm=True),
        MSE,
    ),
    Problem(
        "classes6H-mlp2-tanh",
        "holdout-17",
        "synthetic 6 classes in 20-d, MLP 20-64-64-6 tanh, CE",
        synthetic_six_classes_h17,
        mlp((64, 64), "tanh"),
        CE,
    ),
    Problem(
        "mnistAC-mlp2-bn-sigmoid",
        "holdout-17",
        "MNIST t10k 2600..4400 reshuffled, MLP 784-64-32-10 BN sigmoid, CE",
        lambda: mnist_slice(2600, 4400, True, 97),
        mlp((64, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAD-mlp2-relu",
        "holdout-17",
        "MNIST t10k 5800..7600 reshuffled, MLP 784-64-32-10 ReLU, CE",
        lambda: mnist_slice(5800, 7600, True, 101),
        mlp((64, 32), "relu"),
        CE,
    ),
    Problem(
        "mnistAE-cnn-tanh",
        "holdout-17",
        "MNIST t10k 900..2400 reshuffled, CNN 8-16 tanh, CE",
        lambda: mnist_slice(900, 2400, False, 103),
        cnn(28, (8, 16), "tanh", False),
        CE,
        epochs=3,
    ),
    Problem(
        "cancer-mlp2-bn-tanh-wide",
        "holdout-17",
        "breast cancer, MLP 30-64-64-1 BN tanh, BCE",
        breast_cancer,
        mlp((64, 64), "tanh", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "digits-resnet-elu-narrow",
        "holdout-17",
        "digits, residual MLP width 32 ELU, CE",
        digits_flat,
        residual(32, "elu"),
        CE,
    ),
]
# holdout-18: a nineteenth evaluation half, written after holdout-17 had been run and before
# newton-krylov's starting damping was tried again, with lambda on the step taken, on the seen
# halves
HOLDOUT18 = [
    Problem(
        "circles13-mlp2-bn-sigmoid",
        "holdout-18",
        "two circles, factor 0.5, noise 0.15, MLP 2-48-48-1 BN sigmoid, BCE",
        circles_h18,
        mlp((48, 48), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "spiralsH-mlp2-elu",
        "holdout-18",
        "two spirals, noise 0.25, MLP 2-64-64-1 ELU, BCE",
        spirals_h18,
        mlp((64, 64), "elu"),
        BCE,
    ),
    Problem(
        "moons14-mlp2-bn-relu",
        "holdout-18",
        "two moons, noise 0.35, MLP 2-32-32-1 BN ReLU, BCE",
        moons_h18,
        mlp((32, 32), "relu", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "friedman2E-mlp3-tanh",
        "holdout-18",
        "Friedman #2, noise 20, MLP 4-32-32-32-1 tanh, MSE",
        friedman2_h18,
        mlp((32, 32, 32), "tanh"),
        MSE,
    ),
    Problem(
        "quantiles3C-mlp2-bn-sigmoid",
        "holdout-18",
        "Gaussian quantiles, 3 classes in 5-d, MLP 5-32-32-3 BN sigmoid, CE",
        quantiles_h18,
        mlp((32, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAF-mlp2-bn-tanh",
        "holdout-18",
        "MNIST t10k 4100..5900 reshuffled, MLP 784-64-32-10 BN tanh, CE",
        lambda: mnist_slice(4100, 5900, True, 107),
        mlp((64, 32), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAG-cnn-bn-sigmoid",
        "holdout-18",
        "MNIST t10k 8600..10000 reshuffled, CNN 8-16 BN sigmoid, CE",
        lambda: mnist_slice(8600, 10000, False, 109),
        cnn(28, (8, 16), "sigmoid", True),
        CE,
        epochs=3,
    ),
    Problem(
        "wine-resnet-relu",
        "holdout-18",
        "wine, residual MLP width 32 ReLU, CE",
        wine,
        residual(32, "relu"),
        CE,
        epochs=10,
    ),
    Problem(
        "diabetes-mlp3-sin",
        "holdout-18",
        "diabetes, MLP 10-32-32-32-1 sin, MSE",
        diabetes,
        mlp((32, 32, 32), "sin"),
        MSE,
        epochs=10,
    ),
    Problem(
        "digits-mlp2-bn-sigmoid-wide",
        "holdout-18",
        "digits, MLP 64-128-64-10 BN sigmoid, CE",
        digits_flat,
        mlp((128, 64), "sigmoid", batchnorm=True),
        CE,
    ),
]
# holdout-19: a twentieth evaluation half, written after holdout-18 had been run and before
# newton-krylov-fast's step band, damping rule and starting damping were tried again together
HOLDOUT19 = [
    Problem(
        "spiralsI-mlp2-relu",
        "holdout-19",
        "two spirals, noise 0.2, MLP 2-64-64-1 ReLU, BCE",
        spirals_h19,
        mlp((64, 64), "relu"),
        BCE,
    ),
    Problem(
        "circles14-mlp2-bn-tanh",
        "holdout-19",
        "two circles, factor 0.4, noise 0.12, MLP 2-32-32-1 BN tanh, BCE",
        circles_h19,
        mlp((32, 32), "tanh", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistAH-mlp1-relu",
        "holdout-19",
        "MNIST t10k 3000..4800 reshuffled, MLP 784-128-10 ReLU, CE",
        lambda: mnist_slice(3000, 4800, True, 113),
        mlp((128,), "relu"),
        CE,
    ),
    Problem(
        "mnistAI-lenet-relu",
        "holdout-19",
        "MNIST t10k 6200..7600 reshuffled, LeNet-5 ReLU, CE",
        lambda: mnist_slice(6200, 7600, False, 127),
        lenet5("relu"),
        CE,
        epochs=3,
    ),
    Problem(
        "moons15-mlp3-elu",
        "holdout-19",
        "two moons, noise 0.3, MLP 2-32-32-32-1 ELU, BCE",
        moons_h19,
        mlp((32, 32, 32), "elu"),
        BCE,
    ),
    Problem(
        "friedmanH-mlp2-sigmoid",
        "holdout-19",
        "Friedman #1, 6 features, noise 0.5, MLP 6-64-64-1 sigmoid, MSE",
        friedman_h19,
        mlp((64, 64), "sigmoid"),
        MSE,
    ),
    Problem(
        "cancer-resnet-tanh",
        "holdout-19",
        "breast cancer, residual MLP width 32 tanh, BCE",
        breast_cancer,
        residual(32, "tanh"),
        BCE,
        epochs=10,
    ),
    Problem(
        "classes5I-mlp4-relu",
        "holdout-19",
        "5 classes in 16-d (8 informative), MLP 16-64-64-64-64-5 ReLU, CE",
        synthetic_five_classes_h19,
        mlp((64, 64, 64, 64), "relu"),
        CE,
    ),
    Problem(
        "digits-cnn-relu",
        "holdout-19",
        "digits 8x8, CNN 8-16 ReLU, CE",
        digits_images,
        cnn(8, (8, 16), "relu", False),
        CE,
    ),
    Problem(
        "regressionD-mlp2-relu",
        "holdout-19",
        "tanh of a linear regression, 10 features, MLP 10-64-64-1 ReLU, MSE",
        regression_h19,
        mlp((64, 64), "relu"),
        MSE,
    ),
]
# holdout-20: a twenty-first evaluation half, written after holdout-19 had been run and before
# newton-krylov-fast's Krylov limit was tried on the seen halves
HOLDOUT20 = [
    Problem(
        "spiralsJ-mlp3-relu",
        "holdout-20",
        "two spirals, noise 0.25, MLP 2-48-48-48-1 ReLU, BCE",
        spirals_h20,
        mlp((48, 48, 48), "relu"),
        BCE,
    ),
    Problem(
        "circles15-mlp2-bn-sigmoid",
        "holdout-20",
        "two circles, factor 0.45, noise 0.1, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h20,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistAJ-mlp2-bn-relu",
        "holdout-20",
        "MNIST t10k 1200..3000 reshuffled, MLP 784-96-48-10 BN ReLU, CE",
        lambda: mnist_slice(1200, 3000, True, 131),
        mlp((96, 48), "relu", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAK-cnn-tanh",
        "holdout-20",
        "MNIST t10k 7000..8400 reshuffled, CNN 8-16 tanh, CE",
        lambda: mnist_slice(7000, 8400, False, 137),
        cnn(28, (8, 16), "tanh", False),
        CE,
        epochs=3,
    ),
    Problem(
        "moons16-mlp2-sigmoid",
        "holdout-20",
        "two moons, noise 0.2, MLP 2-32-32-1 sigmoid, BCE",
        moons_h20,
        mlp((32, 32), "sigmoid"),
        BCE,
    ),
    Problem(
        "friedman3G-mlp3-relu",
        "holdout-20",
        "Friedman #3, noise 0.1, MLP 4-32-32-32-1 ReLU, MSE",
        friedman3_h20,
        mlp((32, 32, 32), "relu"),
        MSE,
    ),
    Problem(
        "wine-mlp2-elu",
        "holdout-20",
        "wine, MLP 13-32-32-3 ELU, CE",
        wine,
        mlp((32, 32), "elu"),
        CE,
        epochs=10,
    ),
    Problem(
        "quantiles4C-mlp2-bn-tanh",
        "holdout-20",
        "Gaussian quantiles, 4 classes in 4-d, MLP 4-32-32-4 BN tanh, CE",
        quantiles_h20,
        mlp((32, 32), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "digits-mlp3-tanh",
        "holdout-20",
        "digits, MLP 64-64-64-64-10 tanh, CE",
        digits_flat,
        mlp((64, 64, 64), "tanh"),
        CE,
    ),
    Problem(
        "diabetes-resnet-elu",
        "holdout-20",
        "diabetes, residual MLP width 32 ELU, MSE",
        diabetes,
        residual(32, "elu"),
        MSE,
        epochs=10,
    ),
]
# holdout-21: a twenty-second evaluation half, written after holdout-20 had been run and before
# newton-krylov-fast's Krylov limit was tried again, apart for batch-norm networks
HOLDOUT21 = [
    Problem(
        "spiralsK-mlp2-relu",
        "holdout-21",
        "two spirals, noise 0.3, MLP 2-96-96-1 ReLU, BCE",
        spirals_h21,
        mlp((96, 96), "relu"),
        BCE,
    ),
    Problem(
        "moons17-mlp2-bn-sigmoid",
        "holdout-21",
        "two moons, noise 0.25, MLP 2-32-32-1 BN sigmoid, BCE",
        moons_h21,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "circles16-mlp3-elu",
        "holdout-21",
        "two circles, factor 0.55, noise 0.12, MLP 2-32-32-32-1 ELU, BCE",
        circles_h21,
        mlp((32, 32, 32), "elu"),
        BCE,
    ),
    Problem(
        "mnistAL-mlp2-relu",
        "holdout-21",
        "MNIST t10k 5000..6800 reshuffled, MLP 784-128-64-10 ReLU, CE",
        lambda: mnist_slice(5000, 6800, True, 139),
        mlp((128, 64), "relu"),
        CE,
    ),
    Problem(
        "mnistAM-cnn-bn-relu",
        "holdout-21",
        "MNIST t10k 400..1800 reshuffled, CNN 8-16 BN ReLU, CE",
        lambda: mnist_slice(400, 1800, False, 149),
        cnn(28, (8, 16), "relu", True),
        CE,
        epochs=3,
    ),
    Problem(
        "friedmanI-mlp2-bn-tanh",
        "holdout-21",
        "Friedman #1, 8 features, noise 0.4, MLP 8-64-64-1 BN tanh, MSE",
        friedman_h21,
        mlp((64, 64), "tanh", batchnorm=True),
        MSE,
    ),
    Problem(
        "classes3J-mlp3-relu",
        "holdout-21",
        "3 classes in 12-d (6 informative), MLP 12-64-64-64-3 ReLU, CE",
        synthetic_three_classes_h21,
        mlp((64, 64, 64), "relu"),
        CE,
    ),
    Problem(
        "cancer-mlp2-sin",
        "holdout-21",
        "breast cancer, MLP 30-32-32-1 sin, BCE",
        breast_cancer,
        mlp((32, 32), "sin"),
        BCE,
        epochs=10,
    ),
    Problem(
        "digits-cnn-bn-elu-long",
        "holdout-21",
        "digits 8x8, CNN 8-16 BN ELU, CE, 8 epochs",
        digits_images,
        cnn(8, (8, 16), "elu", True),
        CE,
        epochs=8,
    ),
    Problem(
        "iris-mlp2-relu",
        "holdout-21",
        "iris, MLP 4-32-32-3 ReLU, CE",
        iris,
        mlp((32, 32), "relu"),
        CE,
        epochs=20,
    ),
]
# holdout-22: a twenty-third evaluation half, written after holdout-21 had been run and before
# newton-krylov's Krylov limit on batch-norm batches was tried
HOLDOUT22 = [
    Problem(
        "circles17-mlp2-bn-sigmoid",
        "holdout-22",
        "two circles, factor 0.5, noise 0.1, MLP 2-64-64-1 BN sigmoid, BCE",
        circles_h22,
        mlp((64, 64), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistAN-mlp2-bn-sigmoid",
        "holdout-22",
        "MNIST t10k 6600..8400 reshuffled, MLP 784-64-32-10 BN sigmoid, CE",
        lambda: mnist_slice(6600, 8400, True, 151),
        mlp((64, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAO-mlp2-bn-tanh",
        "holdout-22",
        "MNIST t10k 1800..3600 reshuffled, MLP 784-96-32-10 BN tanh, CE",
        lambda: mnist_slice(1800, 3600, True, 157),
        mlp((96, 32), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "moons18-mlp3-bn-relu",
        "holdout-22",
        "two moons, noise 0.3, MLP 2-32-32-32-1 BN ReLU, BCE",
        moons_h22,
        mlp((32, 32, 32), "relu", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "quantiles3D-mlp2-bn-elu",
        "holdout-22",
        "Gaussian quantiles, 3 classes in 3-d, MLP 3-32-32-3 BN ELU, CE",
        quantiles_h22,
        mlp((32, 32), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "friedman2F-mlp2-bn-sigmoid",
        "holdout-22",
        "Friedman #2, noise 10, MLP 4-32-32-1 BN sigmoid, MSE",
        friedman2_h22,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
    ),
    Problem(
        "wine-mlp3-bn-tanh",
        "holdout-22",
        "wine, MLP 13-32-32-32-3 BN tanh, CE",
        wine,
        mlp((32, 32, 32), "tanh", batchnorm=True),
        CE,
        epochs=10,
    ),
    Problem(
        "digits-mlp2-bn-elu",
        "holdout-22",
        "digits, MLP 64-64-32-10 BN ELU, CE",
        digits_flat,
        mlp((64, 32), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "cancer-mlp3-tanh",
        "holdout-22",
        "breast cancer, MLP 30-32-32-32-1 tanh, BCE",
        breast_cancer,
        mlp((32, 32, 32), "tanh"),
        BCE,
        epochs=10,
    ),
    Problem(
        "diabetes-mlp2-relu",
        "holdout-22",
        "diabetes, MLP 10-64-64-1 ReLU, MSE",
        diabetes,
        mlp((64, 64), "relu"),
        MSE,
        epochs=10,
    ),
]
# holdout-23: a twenty-fourth evaluation half, written after holdout-22 had been run and before
# the batch-norm settings were compared over several seeds
HOLDOUT23 = [
    Problem(
        "circles18-mlp2-bn-sigmoid",
        "holdout-23",
        "two circles, factor 0.5, noise 0.1, MLP 2-64-64-1 BN sigmoid, BCE",
        circles_h23,
        mlp((64, 64), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "circles19-mlp2-bn-sigmoid",
        "holdout-23",
        "two circles, factor 0.45, noise 0.12, MLP 2-32-32-1 BN sigmoid, BCE",
        circles_h23b,
        mlp((32, 32), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "mnistAP-mlp2-bn-sigmoid",
        "holdout-23",
        "MNIST t10k 5200..7000 reshuffled, MLP 784-64-32-10 BN sigmoid, CE",
        lambda: mnist_slice(5200, 7000, True, 163),
        mlp((64, 32), "sigmoid", batchnorm=True),
        CE,
    ),
    Problem(
        "mnistAQ-mlp2-bn-tanh",
        "holdout-23",
        "MNIST t10k 300..2100 reshuffled, MLP 784-64-64-10 BN tanh, CE",
        lambda: mnist_slice(300, 2100, True, 167),
        mlp((64, 64), "tanh", batchnorm=True),
        CE,
    ),
    Problem(
        "moons19-mlp2-bn-sigmoid",
        "holdout-23",
        "two moons, noise 0.25, MLP 2-48-48-1 BN sigmoid, BCE",
        moons_h23,
        mlp((48, 48), "sigmoid", batchnorm=True),
        BCE,
        epochs=10,
    ),
    Problem(
        "blobs7-mlp2-bn-elu",
        "holdout-23",
        "blobs, 4 centres in 5-d, std 2.0, MLP 5-32-32-4 BN ELU, CE",
        blobs_h23,
        mlp((32, 32), "elu", batchnorm=True),
        CE,
    ),
    Problem(
        "friedman3H-mlp2-bn-sigmoid",
        "holdout-23",
        "Friedman #3, noise 0.05, MLP 4-32-32-1 BN sigmoid, MSE",
        friedman3_h23,
        mlp((32, 32), "sigmoid", batchnorm=True),
        MSE,
    ),
    Problem(
        "digits-cnn-bn-sigmoid-long",
        "holdout-23",
        "digits 8x8, CNN 8-16 BN sigmoid, CE, 8 epochs",
        digits_images,
        cnn(8, (8, 16), "sigmoid", batchnorm=True),
        CE,
        epochs=8,
    ),
    Problem(
        "spiralsL-mlp2-tanh",
        "holdout-23",
        "two spirals, noise 0.25, MLP 2-64-64-1 tanh, BCE",
        spirals_h23,
        mlp((64, 64), "tanh"),
        BCE,
        epochs=10,
    ),
    Problem(
        "cancer-mlp2-relu",
        "holdout-23",
        "breast cancer, MLP 30-64-64-1 ReLU, BCE",
        breast_cancer,
        mlp((64, 64), "relu"),
        BCE,
        epochs=10,
    ),
]
ALL_PROBLEMS = (
    PROBLEMS
    + DEVELOPMENT2
    + FIG5
    + HOLDOUT
    + HOLDOUT2
    + HOLDOUT3
    + HOLDOUT4
    + HOLDOUT5
    + HOLDOUT6
    + HOLDOUT7
    + HOLDOUT8
    + HOLDOUT9
    + HOLDOUT10
    + HOLDOUT11
    + HOLDOUT12
    + HOLDOUT13
    + HOLDOUT14
    + HOLDOUT15
    + HOLDOUT16
    + HOLDOUT17
    + HOLDOUT18
    + HOLDOUT19
    + HOLDOUT20
    + HOLDOUT21
    + HOLDOUT22
    + HOLDOUT23
)
BY_NAME = {p.name: p for p in ALL_PROBLEMS}
assert len(BY_NAME) == len(ALL_PROBLEMS), "problem names must be unique (--problem NAME)"
SPLITS = tuple(dict.fromkeys(p.split for p in ALL_PROBLEMS if p.split != "fig5")) + ("fig5",)


# --- running ------------------------------------------------------------------------------
def run_key(problem: str, solver: str, options: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{problem}__{solver}" + (f"__{opts}" if opts else "")


def _model(problem: Problem, x: np.ndarray, y: np.ndarray) -> nn.Module:
    n_out = int(y.max()) + 1 if y.dtype == np.int64 else y.shape[1]
    nn.manual_seed(SEED)
    return problem.model(int(np.prod(x.shape[1:])), n_out)


@functools.cache
def protocol(problem: Problem) -> dict:
    """How `mcnet.fit` measured a run, where it matters: BatchNorm's running statistics are
    recomputed at the parameters before each evaluation (since 2026-12; runs saved before
    kept the exponential average and are run anew)."""
    module = _model(problem, *problem.data())
    if any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in module.modules()):
        return {"batchnorm_statistics": "recompute"}
    return {}


def run_one(problem: Problem, solver: str, options: dict) -> dict:
    x, y = problem.data()
    module = _model(problem, x, y)
    history = mc.fit(
        module,
        problem.loss(),
        (x, y),
        mc.solvers.make(solver, **options),
        problem.epochs,
        batch_size=BATCH,
        seed=SEED,
        progress=False,
        batchnorm_statistics="recompute",
    )
    reasons: dict[str, int] = {}
    for record in history.records:
        for reason in filter(None, (record.get("reason") or "").split("; ")):
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "problem": problem.name,
        "solver": solver,
        "options": options,
        "config": mc.solvers.make(solver, **options).config(),
        "protocol": protocol(problem),
        "seed": SEED,
        "train_loss": [float(v) for v in history.train_loss],
        "seconds": list(history.epoch_time),
        "reasons": reasons,
        "step_sizes": [r.get("step_size") for r in history.records],
    }


# options added to a solver after runs were saved, at the value those runs were made with
ADDED_OPTIONS = {"damping_ratio": "full", "min_damping": 0.0, "scale_invariant_max_krylov": None}


def load_or_run(problem: Problem, solver: str, options: dict, rerun: bool) -> dict:
    """The saved run, or a new one (saved at once: runs of a split share one file). With
    ``--report`` (SAVED_ONLY) the saved run whatever settings it was made with, never a new
    one: a report of runs made before a default changed."""
    path = RESULTS / f"{problem.split}.json.gz"
    runs = _read(path)
    key = run_key(problem.name, solver, options)
    if SAVED_ONLY:
        if key not in runs:
            raise SystemExit(f"--report: no saved run {key!r} in {path}")
        return runs[key]
    config = json.loads(json.dumps(mc.solvers.make(solver, **options).config()))  # as saved
    saved = runs.get(key, {}).get("config")
    added = {k: v for k, v in ADDED_OPTIONS.items() if k in config}
    same = (
        saved is not None
        and {**added, **saved} == config
        and runs[key].get("seed", 0) == SEED
        and runs[key].get("protocol", {}) == protocol(problem)
    )
    if same and not rerun:
        return runs[key]  # a saved run of the same settings (a changed default runs anew)
    start = time.perf_counter()
    with threadpool_limits(1):
        record = run_one(problem, solver, options)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # several suite processes may share a half's file: read, add and replace it under a lock
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = {**_read(path), key: record}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with gzip.open(tmp, "wt") as f:
            json.dump(runs, f)
        tmp.replace(path)
    print(
        f"  {key}: final {record['train_loss'][-1]:.5g} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return record


def _read(path: Path) -> dict:
    if not path.exists():
        return {}
    with gzip.open(path, "rt") as f:
        return json.load(f)


# --- measures -----------------------------------------------------------------------------
def best_adam(records: list[dict]) -> dict:
    return min(records, key=lambda r: _final(r))


def _final(record: dict) -> float:
    value = record["train_loss"][-1]
    return value if math.isfinite(value) else math.inf


def solver_seconds(record: dict) -> list[float]:
    """The solver's cumulative seconds at each epoch's end, 0 first (``History.epoch_time``).
    Runs saved before 2026-12-07's fix hold, as ``time``, the running sum of those: it summed
    ``epoch_time`` again, as if it held each epoch's own seconds. Differences give them back."""
    if "seconds" in record:
        return record["seconds"]
    summed = record["time"]
    return [summed[0]] + [b - a for a, b in zip(summed, summed[1:])]


def loss_at(record: dict, t: float) -> float:
    """The last epoch-end training loss measured at or before time t."""
    best = record["train_loss"][0]
    for loss, when in zip(record["train_loss"], solver_seconds(record)):
        if when <= t:
            best = loss
    return best


def time_to(record: dict, target: float) -> float | None:
    for loss, when in zip(record["train_loss"], solver_seconds(record)):
        if loss <= target:
            return when
    return None


def frozen(record: dict, reference: float) -> bool:
    """Training loss unchanged to 8 digits over the last two epochs in a row (one epoch
    undone by a rollback ends where it began, and is not a freeze on its own), above
    ``reference`` (Adam's best final loss): a loss that stops below Adam's has converged."""
    a, b, c = record["train_loss"][-3:]
    flat = abs(a - b) <= 1e-8 * abs(a) and abs(b - c) <= 1e-8 * abs(b)
    return flat and c > reference


def row(problem: Problem, adam: dict, nk: dict) -> dict:
    reference = _final(adam)
    t_adam = solver_seconds(adam)[-1]
    to_target = time_to(nk, reference)
    return {
        "equal_epochs": _final(nk) / reference,
        "equal_time": loss_at(nk, t_adam) / reference,
        "time_to_adam": to_target,
        "adam_time": t_adam,
        "nk_time": solver_seconds(nk)[-1],
        "frozen": frozen(nk, reference),
        "monotone": all(b < a for a, b in zip(nk["train_loss"], nk["train_loss"][1:])),
    }


TITLES = {
    "fig5": "the paper's Fig. 5",
    "holdout": "Holdout problems (a second evaluation half)",
    "holdout-2": "Holdout-2 problems (a third evaluation half)",
    "holdout-3": "Holdout-3 problems (a fourth evaluation half)",
    "holdout-4": "Holdout-4 problems (a fifth evaluation half)",
    "holdout-5": "Holdout-5 problems (a sixth evaluation half)",
    "holdout-6": "Holdout-6 problems (a seventh evaluation half)",
    "holdout-7": "Holdout-7 problems (an eighth evaluation half)",
    "holdout-8": "Holdout-8 problems (a ninth evaluation half)",
    "holdout-9": "Holdout-9 problems (a tenth evaluation half)",
    "holdout-10": "Holdout-10 problems (an eleventh evaluation half)",
    "holdout-11": "Holdout-11 problems (a twelfth evaluation half)",
    "holdout-12": "Holdout-12 problems (a thirteenth evaluation half)",
    "holdout-13": "Holdout-13 problems (a fourteenth evaluation half)",
    "holdout-14": "Holdout-14 problems (a fifteenth evaluation half)",
    "holdout-15": "Holdout-15 problems (a sixteenth evaluation half)",
    "holdout-16": "Holdout-16 problems (a seventeenth evaluation half)",
    "holdout-17": "Holdout-17 problems (an eighteenth evaluation half)",
    "holdout-18": "Holdout-18 problems (a nineteenth evaluation half)",
    "holdout-19": "Holdout-19 problems (a twentieth evaluation half)",
    "holdout-20": "Holdout-20 problems (a twenty-first evaluation half)",
    "holdout-21": "Holdout-21 problems (a twenty-second evaluation half)",
    "holdout-22": "Holdout-22 problems (a twenty-third evaluation half)",
    "holdout-23": "Holdout-23 problems (a twenty-fourth evaluation half)",
}


def report(problems: list[Problem], settings: list[tuple[str, dict]], rerun: bool) -> str:
    lines = []
    for split in SPLITS:
        chosen = [p for p in problems if p.split == split]
        if not chosen:
            continue
        title = TITLES.get(split, f"{split.capitalize()} problems")
        lines += [f"## {title}", ""]
        header = (
            "| problem | Adam best lr, loss | "
            + " | ".join(f"{_label(s, o)}: epochs / time / t to Adam" for s, o in settings)
            + " |"
        )
        lines += [header, "|" + "---|" * (2 + len(settings))]
        counts = {_label(s, o): [] for s, o in settings}
        for problem in chosen:
            adams = [load_or_run(problem, "adam", {"lr": lr}, rerun) for lr in ADAM_LRS]
            adam = best_adam(adams)
            cells = [
                f"{problem.name} ({problem.description}, {problem.epochs} epochs)",
                f"{adam['options']['lr']:g}, {_final(adam):.4g} ({solver_seconds(adam)[-1]:.1f} s)",
            ]
            for solver, options in settings:
                nk = load_or_run(problem, solver, options, rerun)
                r = row(problem, adam, nk)
                counts[_label(solver, options)].append(r)
                t = "never" if r["time_to_adam"] is None else f"{r['time_to_adam']:.1f} s"
                flag = " **frozen**" if r["frozen"] else ""
                cells.append(f"{r['equal_epochs']:.2f} / {r['equal_time']:.2f} / {t}{flag}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for label, rows in counts.items():
            epochs = [r["equal_epochs"] for r in rows]
            times = [r["equal_time"] for r in rows]
            lines.append(
                f"- {label}: equal epochs <= 1.0 on {sum(e <= 1.0 for e in epochs)}/{len(rows)}, "
                f"<= 1.25 on {sum(e <= 1.25 for e in epochs)}/{len(rows)}, <= 2.0 on "
                f"{sum(e <= 2.0 for e in epochs)}/{len(rows)}, worst {max(epochs):.2f}; "
                f"equal time <= 1.0 on {sum(t <= 1.0 for t in times)}/{len(rows)}; frozen on "
                f"{sum(r['frozen'] for r in rows)}; training loss lower every epoch on "
                f"{sum(r['monotone'] for r in rows)}/{len(rows)}"
            )
        lines.append("")
    return "\n".join(lines)


def _label(solver: str, options: dict) -> str:
    return solver + (
        " " + ",".join(f"{k}={v}" for k, v in sorted(options.items())) if options else ""
    )


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> int:
    global RESULTS, SAVED_ONLY, SEED
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split",
        choices=(*SPLITS, "all"),
        default="all",
    )
    parser.add_argument("--problem", action="append", help="only these problems (repeatable)")
    parser.add_argument(
        "--solver",
        action="append",
        help=f"Newton-Krylov solvers to run (default: {', '.join(NK_SOLVERS)})",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for every --solver (repeatable)",
    )
    parser.add_argument("--rerun", action="store_true", help="ignore saved runs")
    parser.add_argument(
        "--report", action="store_true", help="tables from the saved runs only; run nothing"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of saved runs")
    parser.add_argument("--out", type=Path, help=f"also write the report here (e.g. {REPORT})")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights and the batch order (the tables: 0); give another "
        "seed its own --results folder",
    )
    args = parser.parse_args(argv)
    RESULTS = args.results
    SEED = args.seed
    SAVED_ONLY = args.report
    problems = [p for p in ALL_PROBLEMS if args.split in ("all", p.split)]
    if args.problem:
        unknown = [name for name in args.problem if name not in BY_NAME]
        if unknown:
            parser.error(f"--problem: no problem named {', '.join(map(repr, unknown))}")
        problems = [BY_NAME[name] for name in args.problem]
    options = dict(item.split("=", 1) for item in args.option)
    options = {k: _value(v) for k, v in options.items()}
    settings = [(s, options) for s in (args.solver or NK_SOLVERS)]
    text = report(problems, settings, args.rerun)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
