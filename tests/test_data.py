"""Datasets: exact mixture scores, the embedded digits, IDX / CIFAR-10 / MNIST / CelebA files
written by the tests in their usual on-disk formats, augmentation, and errors naming paths."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import ncsn_core.data_files as data_mod
from ncsn_core.data import DataError, celeba, cifar10, digits, fashion_mnist, mixture2d, mnist, read_idx

NO_AUG = {"flip": False, "dequantize": "none"}


# ----------------------------------------------------------------------------- mixtures
@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0, 10.0])
def test_mixture_score_is_exact_for_diagonal_components(sigma: float) -> None:
    # Three components, anisotropic per-axis stds (the ANSN case) and the isotropic default.
    aniso = mixture2d(
        weights=(0.2, 0.5, 0.3),
        means=(-5.0, -5.0, 5.0, 5.0, 0.0, 4.0),
        std=1.0,
        stds=(3.0, 0.3, 0.5, 2.0, 1.0, 0.1),
        n_train=10,
        seed=0,
    ).mixture
    iso = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=10, seed=0)
    for mix in (aniso, iso.mixture):
        x = (
            torch.randn(200, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 6
        ).requires_grad_()
        (g,) = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
        assert torch.allclose(mix.score(x.detach(), sigma), g, rtol=1e-10, atol=1e-12)


def test_mixture_log_prob_is_normalised_and_sampled_correctly() -> None:
    kw = dict(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(0.5, 2.0, 1.0, 1.0))
    d = mixture2d(**kw, n_train=20_000, seed=1)
    g = torch.linspace(-15, 15, 601, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = float(d.mixture.log_prob(grid, 0.5).exp().sum() * (g[1] - g[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=1e-3)
    lo = d.train[d.train.sum(1) < 0]
    assert abs(lo.shape[0] / 20_000 - 0.2) < 0.02
    assert lo.std(0).tolist() == pytest.approx([0.5, 2.0], rel=0.05)
    assert d.identity == mixture2d(**kw, n_train=20_000, seed=1).identity


def test_mixture_source_and_errors() -> None:
    d = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=5000, seed=0)
    assert d.kind == "points" and d.shape == (2,) and d.train.dtype == torch.float32 and len(d) == 5000
    assert torch.equal(d.batch(torch.arange(5)), d.train[:5])  # no augmentation for points
    with pytest.raises(DataError, match="mean coordinates"):
        mixture2d(weights=(0.5, 0.5), means=(1.0,), std=1.0, stds=(), n_train=10, seed=0)
    with pytest.raises(DataError, match="stds needs 4"):
        mixture2d(weights=(0.5, 0.5), means=(1.0, 1.0, 2.0, 2.0), std=1.0, stds=(1.0,), n_train=10, seed=0)


# ----------------------------------------------------------------------------- digits, augmentation
def test_digits_is_embedded_and_deterministic() -> None:
    d = digits(**NO_AUG)
    assert d.kind == "image" and d.shape == (1, 8, 8)
    assert d.train.dtype == torch.uint8 and len(d) == 1500 and d.test.shape[0] == 297
    assert int(d.train.max()) == 255 and int(d.train.min()) == 0
    x = d.as_float()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    again = digits(flip=True, dequantize="uniform")  # augmentation does not change the identity
    assert again.identity == d.identity and torch.equal(again.train, d.train)
    assert d.train_labels.shape == (1500,)
    assert torch.equal(d.batch(torch.arange(10)), x[:10])  # no augmentation configured


def test_dequantize_and_flip() -> None:
    d = digits(flip=True, dequantize="uniform")
    idx = torch.arange(64)
    a = d.batch(idx, torch.Generator().manual_seed(0))
    b = d.batch(idx, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # reproducible with the generator
    assert not torch.equal(a, d.batch(idx, torch.Generator().manual_seed(1)))
    clean = d.as_float()[:64]
    # x·255/256 + U/256 stays within one quantisation bin of the clean value, or of its mirror image.
    err = torch.minimum((a - clean * 255 / 256).abs(), (a - clean.flip(-1) * 255 / 256).abs())
    assert float(err.max()) < 1 / 256 + 1e-6 and 0 <= float(a.min()) and float(a.max()) <= 1
    flipped = ((a - clean.flip(-1) * 255 / 256).abs().amax((1, 2, 3)) < 1 / 256 + 1e-6) & (
        (a - clean * 255 / 256).abs().amax((1, 2, 3)) >= 1 / 256
    )
    assert 10 < int(flipped.sum()) < 54  # about half the batch is flipped
    only_deq = digits(flip=False, dequantize="uniform").batch(idx, torch.Generator().manual_seed(0))
    u = (only_deq - clean * 255 / 256) * 256
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.02  # U[0, 1)


# ----------------------------------------------------------------------------- IDX: Fashion-MNIST, MNIST
def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _write_idx_set(folder: Path, gz: bool, n_train: int = 20, n_test: int = 5) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    xtr = rng.integers(0, 256, (n_train, 28, 28))
    _write_idx(folder / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    _write_idx(folder / f"train-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (n_train,)), gz)
    _write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (n_test,)), gz)
    return xtr


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path: Path, gz: bool) -> None:
    xtr = _write_idx_set(tmp_path, gz)
    d = fashion_mnist(root=str(tmp_path), image_size=28, **NO_AUG)
    assert d.train.shape == (20, 1, 28, 28) and d.test.shape == (5, 1, 28, 28)
    assert np.array_equal(d.train[:, 0].numpy(), xtr)
    small = fashion_mnist(root=str(tmp_path), image_size=16, **NO_AUG)
    assert small.shape == (1, 16, 16) and small.train.shape == (20, 1, 16, 16)
    assert small.identity != d.identity


def test_mnist_from_torchvision_layout_without_network(tmp_path: Path) -> None:
    xtr = _write_idx_set(tmp_path / "MNIST" / "raw", gz=False)
    m = mnist(root=str(tmp_path), download=False, image_size=28, **NO_AUG)
    assert m.train.shape == (20, 1, 28, 28) and np.array_equal(m.train[:, 0].numpy(), xtr)
    assert list(tmp_path.glob(".repro-mnist-*.pt"))  # converted once, cached next to the data
    # download = true (the default) uses no network when the files are there.
    assert torch.equal(mnist(root=str(tmp_path), download=True, image_size=28, **NO_AUG).train, m.train)


def test_mnist_missing_root_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "nothing"
    with pytest.raises(DataError, match=f"no MNIST found under {root}.*MNIST/raw.*download = false"):
        mnist(root=str(root), download=False, image_size=28, **NO_AUG)
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    with pytest.raises(DataError, match="REPRO_OFFLINE"):
        mnist(root=str(root), download=True, image_size=28, **NO_AUG)


def test_real_fashion_mnist_if_installed() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    d = fashion_mnist(root=str(root), image_size=28, **NO_AUG)
    assert d.train.shape == (60000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
    assert int(d.train_labels.max()) == 9


def test_bad_idx_files(tmp_path: Path) -> None:
    bad = tmp_path / "x"
    bad.write_bytes(b"\x00\x00\x09\x01abcd")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match="header"):
        read_idx(bad)
    (tmp_path / "g").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "g")
    _write_idx(tmp_path / "t", np.zeros((4, 2, 2)), False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t")
    with pytest.raises(DataError, match=str(tmp_path / "none")):
        fashion_mnist(root=str(tmp_path / "none"), image_size=28, **NO_AUG)


# ----------------------------------------------------------------------------- CIFAR-10
def _write_cifar(root: Path, n: int = 3) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
            pickle.dump(batch, f)
    return folder


def test_cifar10_from_local_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _write_cifar(tmp_path)
    d = cifar10(root=str(tmp_path), download=False, flip=True, dequantize="uniform", image_size=32)
    assert d.train.shape == (15, 3, 32, 32) and d.test.shape == (3, 3, 32, 32) and d.shape == (3, 32, 32)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert np.array_equal(d.train[0].reshape(-1).numpy(), first)  # R, G, B planes, row-major
    assert list(tmp_path.glob(".repro-cifar10-*.pt"))  # converted once, cached

    def boom(folder: Path) -> dict:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data_mod, "read_cifar10_folder", boom)
    again = cifar10(root=str(tmp_path), download=True, flip=True, dequantize="uniform", image_size=32)
    assert torch.equal(again.train, d.train) and again.identity == d.identity
    monkeypatch.undo()
    small = cifar10(root=str(tmp_path), download=False, flip=True, dequantize="uniform", image_size=16)
    assert small.train.shape == (15, 3, 16, 16)


def test_cifar10_missing_or_corrupt(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(DataError, match=f"no CIFAR-10 found under {empty}.*cifar-10-batches-py"):
        cifar10(root=str(empty), download=False, flip=True, dequantize="uniform", image_size=32)
    folder = _write_cifar(tmp_path / "c")
    cifar10(root=str(tmp_path / "c"), download=False, flip=True, dequantize="uniform", image_size=32)
    # A changed file invalidates the conversion cache, and the damage is reported by file name.
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        cifar10(root=str(tmp_path / "c"), download=False, flip=True, dequantize="uniform", image_size=32)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        cifar10(root=str(tmp_path / "c"), download=False, flip=True, dequantize="uniform", image_size=32)


# ----------------------------------------------------------------------------- CelebA
def test_celeba_from_local_files(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(2)
    lines = []
    for i, split in enumerate([0, 0, 0, 1, 2, 2], 1):
        name = f"{i:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            folder / "img_align_celeba" / name
        )
        lines.append(f"{name} {split}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    d = celeba(root=str(tmp_path), download=False, flip=True, dequantize="uniform", image_size=32, limit=0)
    assert d.train.shape == (3, 3, 32, 32) and d.test.shape == (2, 3, 32, 32) and d.train.dtype == torch.uint8
    lim = celeba(root=str(tmp_path), download=False, flip=True, dequantize="uniform", image_size=16, limit=2)
    assert lim.train.shape == (2, 3, 16, 16)
    with pytest.raises(DataError, match=f"no CelebA found under {tmp_path / 'x'}.*list_eval_partition"):
        celeba(
            root=str(tmp_path / "x"), download=False, flip=True, dequantize="uniform", image_size=32, limit=0
        )
    (folder / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="000002.jpg"):
        celeba(root=str(tmp_path), download=False, flip=True, dequantize="uniform", image_size=8, limit=0)


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from ncsn_core.data_source import _download
    from ncsn_core.errors import DataError

    monkeypatch.delenv("REPRO_OFFLINE", raising=False)
    root = tmp_path / "data" / "cifar10"

    def fetch() -> None:  # what torchvision does before the network fails
        root.mkdir(parents=True)
        (root / "cifar-10-python.tar.gz.part").write_bytes(b"partial")
        raise OSError("Name or service not known")

    with pytest.raises(DataError, match="the download failed"):
        _download("CIFAR-10", root, "cifar-10-batches-py/", True, fetch)
    assert not (tmp_path / "data").exists()
    assert tmp_path.exists()
