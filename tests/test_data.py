"""Datasets: the embedded digits, IDX and CIFAR-10 files written by the tests, clear errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ncsn_core.data import DataError, cifar10, digits, fashion_mnist, mixture2d, mnist, read_idx


def test_digits_is_embedded_and_deterministic() -> None:
    d = digits(flip=False, dequantize="none")
    assert d.kind == "image" and d.shape == (1, 8, 8)
    assert d.train.dtype == torch.uint8 and len(d) == 1500 and d.test.shape[0] == 297
    x = d.as_float()
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert digits(flip=False, dequantize="none").identity == d.identity
    assert d.train_labels.shape == (1500,)


def test_dequantize_and_flip() -> None:
    d = digits(flip=True, dequantize="uniform")
    idx = torch.arange(64)
    a = d.batch(idx, torch.Generator().manual_seed(0))
    b = d.batch(idx, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # reproducible with the generator
    clean = d.as_float()[:64]
    # x·255/256 + U/256 stays within one quantisation bin of the clean value, or its mirror image.
    err = torch.minimum((a - clean * 255 / 256).abs(), (a - clean.flip(-1) * 255 / 256).abs())
    assert float(err.max()) < 1 / 256 + 1e-6
    flipped = ((a - clean.flip(-1) * 255 / 256).abs().amax((1, 2, 3)) < 1 / 256 + 1e-6) & (
        (a - clean * 255 / 256).abs().amax((1, 2, 3)) >= 1 / 256
    )
    assert 10 < int(flipped.sum()) < 54  # about half the batch is flipped


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (20, 28, 28)), gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (20,)), gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (5, 28, 28)), gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (5,)), gz)
    d = fashion_mnist(root=str(tmp_path), flip=False, dequantize="none", image_size=28)
    assert d.train.shape == (20, 1, 28, 28) and d.test.shape == (5, 1, 28, 28)
    small = fashion_mnist(root=str(tmp_path), flip=False, dequantize="none", image_size=16)
    assert small.shape == (1, 16, 16)
    m = mnist(root=str(tmp_path), download=False, flip=False, dequantize="none", image_size=28)
    assert m.train.shape == (20, 1, 28, 28)


def test_real_fashion_mnist_if_installed() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    d = fashion_mnist(root=str(root), flip=False, dequantize="none", image_size=28)
    assert d.train.shape == (60000, 1, 28, 28) and int(d.train_labels.max()) == 9


def test_bad_idx_files(tmp_path: Path) -> None:
    bad = tmp_path / "x"
    bad.write_bytes(b"\x00\x00\x09\x01abcd")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    _write_idx(tmp_path / "t", np.zeros((4, 2, 2)), False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t")
    with pytest.raises(DataError, match=str(tmp_path / "none")):
        fashion_mnist(root=str(tmp_path / "none"), flip=False, dequantize="none", image_size=28)


def test_cifar10_from_local_batches_and_missing_root(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [0, 1, 2]}, f)
    d = cifar10(root=str(tmp_path), download=False, flip=True, dequantize="uniform")
    assert d.train.shape == (15, 3, 32, 32) and d.test.shape == (3, 3, 32, 32)
    assert list(tmp_path.glob(".repro-cifar10-*.pt"))  # converted once, cached
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        cifar10(root=str(tmp_path / "empty"), download=False, flip=True, dequantize="uniform")
    (folder / "data_batch_3").write_bytes(b"garbage")
    for p in tmp_path.glob(".repro-cifar10-*.pt"):
        p.unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        cifar10(root=str(tmp_path), download=False, flip=True, dequantize="uniform")


def test_mixture_source() -> None:
    d = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=5000, seed=0)
    assert d.kind == "points" and d.shape == (2,)
    frac = float((d.train.sum(1) < 0).float().mean())
    assert abs(frac - 0.2) < 0.02
    with pytest.raises(DataError, match="mean coordinates"):
        mixture2d(weights=(0.5, 0.5), means=(1.0,), std=1.0, stds=(), n_train=10, seed=0)
