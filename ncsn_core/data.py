"""Datasets: the NCSN toy mixture, scikit-learn's digits (embedded default), Fashion-MNIST
from IDX files, and MNIST / CIFAR-10 / CelebA from local files or torchvision downloads.

Images are kept as uint8 tensors (N×C×H×W) and turned into floats in [0, 1] per batch, with
the papers' augmentations: random horizontal flips, and the uniform dequantisation of the
official code, x·255/256 + U/256 (reference.md).

Local files are read by our own small readers (IDX, CIFAR-10's python pickles through a
restricted unpickler, CelebA's partition list + JPEGs), which need no checksums and no network; torchvision is used only to
download when the files are missing, ``download = true`` and ``REPRO_OFFLINE`` is not set.
The uint8 tensors of MNIST, CIFAR-10 and CelebA are converted once and cached as
``.repro-<name>-<key>.pt`` next to the data (key: the transform parameters and the sizes and
modification times of the files read).

``DataSource.identity`` names the data *content* (name, content-changing parameters such as
``image_size``, and a hash of a strided sample of the training tensor); it keys caches such as
Technique 1's and the FID reference statistics, and does not change with ``flip`` or
``dequantize`` (augmentations, which ``as_float`` never applies) or with the folder's path.

The code lives in :mod:`ncsn_core.data_source` (the source, the mixture, the shared helpers),
:mod:`ncsn_core.data_files` (toy, digits, IDX, CIFAR-10, CelebA) and
:mod:`ncsn_core.data_images` (LSUN, image folders and zips); this module names them all, and
the declarations' implementations (``ncsn_core.data:<name>``) are looked up here.
"""

from __future__ import annotations

from ncsn_core.data_files import (
    CifarPickleError,
    celeba,
    cifar10,
    digits,
    fashion_mnist,
    load_cifar_batch,
    mixture2d,
    mnist,
    read_celeba_folder,
    read_cifar10_folder,
    read_idx,
)
from ncsn_core.data_images import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_BYTES,
    images,
    lsun,
    read_image_files,
    read_lmdb_images,
    resize_center_crop,
)
from ncsn_core.data_source import DataSource, GaussianMixture, require_spread
from ncsn_core.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "CifarPickleError",
    "DataError",
    "DataSource",
    "GaussianMixture",
    "celeba",
    "cifar10",
    "digits",
    "fashion_mnist",
    "images",
    "load_cifar_batch",
    "lsun",
    "mixture2d",
    "mnist",
    "read_celeba_folder",
    "read_cifar10_folder",
    "read_idx",
    "read_image_files",
    "read_lmdb_images",
    "require_spread",
    "resize_center_crop",
]
