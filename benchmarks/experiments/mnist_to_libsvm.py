"""Write MNIST's t10k images as a LIBSVM text file, to run the LIBSVM path offline.

    python benchmarks/experiments/mnist_to_libsvm.py /work/shared/data /tmp/mnist-t10k.libsvm

Features are pixel / 255 (LIBSVM's ``mnist.scale`` uses the same scaling), indices 1..784,
labels 0..9 as written. Only the t10k split is read because that is what ships offline;
with the real ``mnist.scale`` from the LIBSVM site, pass it to ``--train-file`` directly.
"""

from __future__ import annotations

import sys

from sklearn.datasets import dump_svmlight_file

import mcnet as mc


def main(root: str, path: str) -> None:
    images, labels = mc.datasets.mnist(root, split="test")
    dump_svmlight_file(images.reshape(len(images), -1), labels, path, zero_based=False)
    print(f"wrote {len(images)} examples to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
