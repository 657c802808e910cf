"""Data sets as NumPy arrays, and seeded minibatches over them.

Image loaders return ``(images, labels)``: float images NCHW scaled to [0, 1] (float64 unless
``dtype=np.float32`` is asked for) and int64 labels. They read the standard distribution files
from ``root``, by default ``$MCNET_DATA`` or ``~/.mcnet/data`` (see :func:`data_root`), looking
in ``root/<name>/`` and then in ``root/`` itself; :func:`download` fetches those files into
``root/<name>/``. Missing files raise :class:`DatasetNotFoundError` (a ``FileNotFoundError``)
naming them and the folder to put them in; malformed files raise
:class:`mcnet.DataError` (a ``ValueError``) naming the file and the fault.
"""

from ._files import DOWNLOAD_TIMEOUT, RESOURCES, DatasetNotFoundError, data_root, download
from ._sklearn import digits, libsvm
from .batching import DataLoader, batches
from .cifar import cifar10
from .idx import fashion_mnist, mnist, read_idx
from .svhn import svhn

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "RESOURCES",
    "DataLoader",
    "DatasetNotFoundError",
    "batches",
    "cifar10",
    "data_root",
    "digits",
    "download",
    "fashion_mnist",
    "libsvm",
    "mnist",
    "read_idx",
    "svhn",
]
