"""LSUN (LMDB export) and image folders / zips: tiny files the tests write, read back through
the official NCSNv2 preprocessing (Resize shorter side + CenterCrop), cached, with clear errors."""

from __future__ import annotations

import sys
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ncsn_core.data_images as data_mod
from ncsn_core.data import DataError, images, lsun, read_lmdb_images, resize_center_crop

NO_AUG = {"flip": False, "dequantize": "none"}


def _png(arr: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _random(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _columns(h: int, w: int) -> np.ndarray:
    """An image whose column j has the colour (j, 2j, 255 − j): a crop shows where it started."""
    j = np.arange(w, dtype=np.uint8)
    return np.broadcast_to(np.stack([j, 2 * j, 255 - j], -1)[None], (h, w, 3)).copy()


# ----------------------------------------------------------------------------- preprocessing
def test_resize_center_crop_keeps_the_centre_of_a_wide_image() -> None:
    # 8 high, 20 wide: the shorter side is already 8 (no resampling), the crop keeps columns 6..13.
    x = resize_center_crop(Image.fromarray(_columns(8, 20)), 8)
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8
    assert x[:, 0, 0].tolist() == [6, 12, 249] and x[:, 5, 7].tolist() == [13, 26, 242]
    # A tall image: rows cropped; a grayscale one upscaled becomes RGB.
    tall = resize_center_crop(Image.fromarray(_columns(8, 20).transpose(1, 0, 2).copy()), 8)
    assert tall[:, 0, 0].tolist() == [6, 12, 249]
    gray = resize_center_crop(Image.fromarray(np.full((4, 6), 77, np.uint8)), 12)  # L → RGB
    assert gray.shape == (3, 12, 12) and int(gray.min()) == int(gray.max()) == 77


# ----------------------------------------------------------------------------- image folders / zips
def _folder(root: Path, n: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrs = []
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        a = _random(rng, 12, 16)
        arrs.append(a)
        # Names sort as 000..009 whatever the folder: some in a subfolder, mixed suffixes.
        where = root / "sub" if i % 3 == 0 else root
        Image.fromarray(a).save(where / f"{i:03d}.png")
    (root / "notes.txt").write_text("not an image")
    return arrs


def test_image_folder_split_order_and_centre_crop(tmp_path: Path) -> None:
    root = tmp_path / "ffhq"
    arrs = _folder(root)
    d = images(path=str(root), image_size=12, limit=0, test_fraction=0.2, **NO_AUG)
    assert d.shape == (3, 12, 12) and d.train.dtype == torch.uint8
    assert d.train.shape == (8, 3, 12, 12) and d.test.shape == (2, 3, 12, 12)
    # Sorted by relative path: 001, 002, 004, ... then sub/000, sub/003, ...; the last 2 are the test set.
    names = sorted(
        [f"{i:03d}.png" for i in range(10) if i % 3] + [f"sub/{i:03d}.png" for i in range(10) if i % 3 == 0]
    )
    order = [int(n[-7:-4]) for n in names]
    expected = torch.stack([torch.from_numpy(arrs[i][:, 2:14]).permute(2, 0, 1) for i in order])
    assert torch.equal(torch.cat([d.train, d.test]), expected)  # 12×16 → centre 12×12, exact
    again = images(path=str(root), image_size=12, limit=0, test_fraction=0.2, flip=True, dequantize="uniform")
    assert torch.equal(again.train, d.train) and again.identity == d.identity  # deterministic
    lim = images(path=str(root), image_size=6, limit=3, test_fraction=0.2, **NO_AUG)
    assert lim.train.shape == (3, 3, 6, 6) and lim.test.shape == (2, 3, 6, 6)  # the test split is fixed
    assert images(path=str(root), image_size=6, limit=0, test_fraction=0.0, **NO_AUG).test is None


def test_image_folder_cache_is_reused_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "imgs"
    _folder(root, 4)
    d = images(path=str(root), image_size=8, limit=0, test_fraction=0.25, **NO_AUG)
    assert len(list(root.glob(".repro-images-*.pt"))) == 1  # cached next to the data

    def boom(*a: object) -> torch.Tensor:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data_mod, "read_image_files", boom)
    assert torch.equal(
        images(path=str(root), image_size=8, limit=0, test_fraction=0.25, **NO_AUG).train, d.train
    )
    monkeypatch.undo()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "001.png")  # a changed file: rebuilt
    changed = images(path=str(root), image_size=8, limit=0, test_fraction=0.25, **NO_AUG)
    assert int(changed.train[0].max()) == 0 and changed.identity != d.identity


def test_zip_of_images_matches_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "f"
    _folder(root, 5)
    z = tmp_path / "ffhq.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, "images1024x1024/" + p.relative_to(root).as_posix())
        zf.writestr("__MACOSX/images1024x1024/._000.png", b"junk")
    a = images(path=str(z), image_size=10, limit=0, test_fraction=0.2, **NO_AUG)
    b = images(path=str(root), image_size=10, limit=0, test_fraction=0.2, **NO_AUG)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert list(tmp_path.glob(".repro-images-*.pt"))  # a zip's cache sits next to the zip


def test_image_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"no images found at {missing}: expected a folder of image files"):
        images(path=str(missing), image_size=8, limit=0, test_fraction=0.1, **NO_AUG)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=f"{empty} holds no image files"):
        images(path=str(empty), image_size=8, limit=0, test_fraction=0.1, **NO_AUG)
    bad = tmp_path / "bad"
    _folder(bad, 3)
    (bad / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=f"cannot read {bad / '002.png'} as an image"):
        images(path=str(bad), image_size=8, limit=0, test_fraction=0.0, **NO_AUG)
    notzip = tmp_path / "x.zip"
    notzip.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=f"{notzip} is neither a folder nor a readable zip"):
        images(path=str(notzip), image_size=8, limit=0, test_fraction=0.1, **NO_AUG)
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(one / "a.jpg")
    with pytest.raises(DataError, match="leaves no training images"):
        images(path=str(one), image_size=4, limit=0, test_fraction=0.9, **NO_AUG)


# ----------------------------------------------------------------------------- LSUN
def _lmdb(folder: Path, items: list[tuple[bytes, bytes]]) -> None:
    lmdb = pytest.importorskip("lmdb")
    folder.mkdir(parents=True)
    env = lmdb.open(str(folder), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in items:
            txn.put(k, v)
    env.close()


def _lsun(root: Path, category: str = "church_outdoor", n: int = 6, val: int = 2) -> list[bytes]:
    """An LMDB export of n 24×32 images (and val ones); returns the stored bytes in key order."""
    rng = np.random.default_rng(1)
    # LSUN's keys are hex hashes; the LMDB returns them sorted, our order. Values: JPEG, one WEBP.
    keys = [f"{h:040x}".encode() for h in rng.permutation(1000)[:n]]
    vals = [_jpeg(_random(rng, 24, 32)) for _ in range(n)]
    buf = BytesIO()
    Image.fromarray(_random(rng, 24, 32)).save(buf, format="WEBP", lossless=True)
    vals[0] = buf.getvalue()
    _lmdb(root / f"{category}_train_lmdb", list(zip(keys, vals)))
    if val:
        _lmdb(root / f"{category}_val_lmdb", [(b"%02d" % i, _png(_random(rng, 20, 20))) for i in range(val)])
    return [v for _, v in sorted(zip(keys, vals))]


def test_lsun_from_lmdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lmdb")
    stored = _lsun(tmp_path)
    d = lsun(root=str(tmp_path), category="church_outdoor", image_size=16, limit=0, **NO_AUG)
    assert d.shape == (3, 16, 16) and d.train.shape == (6, 3, 16, 16) and d.test.shape == (2, 3, 16, 16)
    assert d.train.dtype == torch.uint8 and d.name == "lsun_church_outdoor"
    # Key order, and the official preprocessing (24×32 → 16×21 → centre 16×16) of each decoded image.
    want = torch.stack([resize_center_crop(Image.open(BytesIO(v)), 16) for v in stored])
    assert torch.equal(d.train, want)
    assert list(tmp_path.glob(".repro-lsun-church_outdoor-*.pt"))

    def boom(*a: object, **k: object) -> torch.Tensor:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data_mod, "read_lmdb_images", boom)
    again = lsun(
        root=str(tmp_path), category="church_outdoor", image_size=16, limit=0, flip=True, dequantize="uniform"
    )
    assert torch.equal(again.train, d.train) and again.identity == d.identity
    monkeypatch.undo()
    lim = lsun(root=str(tmp_path), category="church_outdoor", image_size=8, limit=4, **NO_AUG)
    assert lim.train.shape == (4, 3, 8, 8) and torch.equal(
        lim.train, read_lmdb_images(tmp_path / "church_outdoor_train_lmdb", 8)[:4]
    )


def test_lsun_without_val_split_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lmdb")
    _lsun(tmp_path, "tower", n=3, val=0)
    d = lsun(root=str(tmp_path), category="tower", image_size=8, limit=0, **NO_AUG)
    assert d.train.shape == (3, 3, 8, 8) and d.test is None
    with pytest.raises(
        DataError, match=f"no LSUN bedroom found under {tmp_path}.*bedroom_train_lmdb.*data.mdb"
    ):
        lsun(root=str(tmp_path), category="bedroom", image_size=8, limit=0, **NO_AUG)
    _lmdb(tmp_path / "kitchen_train_lmdb", [(b"a", _png(np.zeros((4, 4, 3), np.uint8))), (b"b", b"garbage")])
    with pytest.raises(
        DataError, match=f"cannot read the image under key 'b' in {tmp_path / 'kitchen_train_lmdb'}"
    ):
        lsun(root=str(tmp_path), category="kitchen", image_size=4, limit=0, **NO_AUG)
    _lmdb(tmp_path / "bridge_train_lmdb", [])
    with pytest.raises(DataError, match="holds no images"):
        lsun(root=str(tmp_path), category="bridge", image_size=4, limit=0, **NO_AUG)


def test_lsun_without_the_lmdb_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "church_outdoor_train_lmdb"
    db.mkdir()
    (db / "data.mdb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(DataError, match=r"needs the lmdb package.*pip install lmdb"):
        lsun(root=str(tmp_path), category="church_outdoor", image_size=8, limit=0, **NO_AUG)
