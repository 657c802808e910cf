"""The model zoo: the networks of the paper and its baselines, PyTorch-compatible state dicts.

Every model is built from ``mcnet.nn`` layers with PyTorch's parameter names and layout, so
the same architecture written in PyTorch (as given in each docstring) loads its state dict
unchanged.  ``activation`` names: "sigmoid", "tanh", "relu", "elu", "softplus", "sin".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mcnet.nn.activation import ELU, ReLU, Sigmoid, Sin, Softplus, Tanh
from mcnet.nn.batchnorm import BatchNorm2d
from mcnet.nn.container import Sequential
from mcnet.nn.conv import Conv2d
from mcnet.nn.flatten import Flatten
from mcnet.nn.linear import Linear
from mcnet.nn.module import Module
from mcnet.nn.pooling import AvgPool2d, MaxPool2d
from mcnet.tensor import Tensor

ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "elu": ELU,
    "softplus": Softplus,
    "sin": Sin,
}


def activation_layer(name: str) -> Module:
    """A fresh activation module by name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None


def lenet5(activation: str = "sigmoid") -> Sequential:
    """LeNet-5 for 1x28x28 images (the paper's): 61,706 parameters.

    Sequential(Conv2d(1, 6, 5, padding=2), act, AvgPool2d(2), Conv2d(6, 16, 5), act,
    AvgPool2d(2), Flatten(), Linear(400, 120), act, Linear(120, 84), act, Linear(84, 10));
    outputs are the 10 class logits (use with CrossEntropyLoss).
    """
    act = lambda: activation_layer(activation)  # noqa: E731 - a fresh module per use
    return Sequential(
        Conv2d(1, 6, 5, padding=2), act(), AvgPool2d(2),
        Conv2d(6, 16, 5), act(), AvgPool2d(2),
        Flatten(),
        Linear(400, 120), act(),
        Linear(120, 84), act(),
        Linear(84, 10),
    )  # fmt: skip


def mlp(sizes: Sequence[int], activation: str = "relu") -> Sequential:
    """Linear layers between consecutive ``sizes``, the activation between them (not after the
    last: the output is linear).  ``mlp([784, 100, 10])`` = Linear, act, Linear."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp needs at least two positive layer sizes, got {list(sizes)}")
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(activation_layer(activation))
        layers.append(Linear(n_in, n_out))
    return Sequential(*layers)


def autoencoder(activation: str = "sigmoid") -> Sequential:
    """The deep autoencoder of Hinton & Salakhutdinov (2006) for (N, 784) MNIST vectors.

    Encoder 784-1000-500-250-30, decoder 30-250-500-1000-784: logistic units (``activation``)
    after every layer except the 30-unit code layer, which is linear as in the paper, and the
    output layer, which returns logits: H&S's logistic output with cross-entropy error is
    ``BCEWithLogitsLoss`` on these logits against the pixel intensities (the numerically
    stable form).  For a squared error on pixels, append ``Sigmoid()`` and use ``MSELoss``.
    State dict: the 8 ``Linear`` layers at Sequential indices 0, 2, 4, 6, 7, 9, 11, 13.
    """
    act = lambda: activation_layer(activation)  # noqa: E731 - a fresh module per use
    return Sequential(
        Linear(784, 1000), act(), Linear(1000, 500), act(), Linear(500, 250), act(),
        Linear(250, 30),
        Linear(30, 250), act(), Linear(250, 500), act(), Linear(500, 1000), act(),
        Linear(1000, 784),
    )  # fmt: skip


VGG11_CONFIG: tuple[int | str, ...] = (
    64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M",
)  # fmt: skip


class VGG(Module):
    """VGG for 3x32x32 images (CIFAR-10), laid out as kuangliu/pytorch-cifar's ``VGG``.

    ``features``: for each number c in the config, Conv2d(in, c, 3, padding=1), BatchNorm2d(c),
    activation; for each "M", MaxPool2d(2); then AvgPool2d(1, 1) (a no-op kept for the layout).
    Five poolings take 32x32 to 1x1, so ``classifier`` is a single Linear(512, num_classes) on
    the flattened 512 features.  State dict keys: ``features.<i>.weight`` / ``.bias`` /
    ``.running_mean`` / ``.running_var`` / ``.num_batches_tracked``, ``classifier.weight`` /
    ``.bias``: a state dict of that PyTorch model loads unchanged (the activation has no
    parameters; the paper's VGG uses ELU where that model uses ReLU).
    """

    def __init__(
        self,
        config: Sequence[int | str] = VGG11_CONFIG,
        num_classes: int = 10,
        activation: str = "elu",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(MaxPool2d(2, 2))
                continue
            layers += [Conv2d(channels, int(item), 3, padding=1), BatchNorm2d(int(item))]
            layers.append(activation_layer(activation))
            channels = int(item)
        layers.append(AvgPool2d(1, 1))
        self.features = Sequential(*layers)
        self.flatten = Flatten()
        self.classifier = Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))


def vgg11(num_classes: int = 10) -> VGG:
    """VGG-11 with batch norm before each ELU, for 32x32 inputs (see ``VGG``)."""
    return VGG(VGG11_CONFIG, num_classes=num_classes, activation="elu")


def logistic_regression(n_features: int, n_classes: int) -> Linear:
    """Multinomial logistic regression: one Linear(n_features, n_classes) giving logits
    (use with CrossEntropyLoss)."""
    return Linear(n_features, n_classes)


def linear_svm(n_features: int, n_classes: int) -> Linear:
    """A linear multi-class SVM: one Linear(n_features, n_classes) giving class scores
    (use with SquaredHingeLoss, the L2-SVM)."""
    return Linear(n_features, n_classes)


__all__ = [
    "ACTIVATIONS",
    "VGG",
    "activation_layer",
    "autoencoder",
    "lenet5",
    "linear_svm",
    "logistic_regression",
    "mlp",
    "vgg11",
]
