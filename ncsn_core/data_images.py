"""Image sets: LSUN's LMDB export and any folder or zip of image files (FFHQ), with NCSNv2's
Resize + CenterCrop. Zip members are capped by their declared size before they are read
(:data:`MAX_IMAGE_BYTES`), and every file read is a regular file. See :mod:`ncsn_core.data`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ncsn_core.data_source import MAX_IMAGE_BYTES, DataSource, _cached, _files_key, _identity
from ncsn_core.errors import DataError
from ncsn_core.io import read_regular_bytes, regular_file

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_BYTES", "images", "lsun", "read_image_files", "read_lmdb_images"]


# ----------------------------------------------------------------------------- LSUN (LMDB) and image folders / zips
# NCSNv2's preprocessing for LSUN (and our image folders): ``transforms.Resize(image_size)``
# (the shorter side to image_size) then ``CenterCrop(image_size)``, RGB, as uint8.

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def resize_center_crop(im: Any, size: int) -> torch.Tensor:
    """A PIL image → uint8 3×size×size: the shorter side resized to ``size`` (bilinear,
    antialiased, as torchvision's ``Resize(size)``), then the centre ``size``×``size`` crop."""
    from torchvision.transforms import functional as TF

    im = TF.resize(im.convert("RGB"), size)
    return TF.pil_to_tensor(TF.center_crop(im, size))


def _decode_image(raw: bytes, what: str, size: int) -> torch.Tensor:
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(raw)) as im:
            return resize_center_crop(im, size)
    except Exception as e:  # noqa: BLE001 - a truncated file, an unknown format, ...
        msg = " ".join(str(e).split())
        raise DataError(
            f"cannot read {what} as an image ({type(e).__name__}: {msg}); expected PNG, JPEG or WEBP "
            "bytes. Replace or delete the damaged file."
        ) from None


def _require_lmdb() -> Any:
    try:
        import lmdb
    except ImportError:
        raise DataError(
            "reading LSUN's LMDB export needs the lmdb package, which is not installed: "
            "pip install lmdb (or pip install 'repro-ncsn[lsun]')."
        ) from None
    return lmdb


def read_lmdb_images(path: Path, image_size: int, limit: int = 0) -> torch.Tensor:
    """The images of one LMDB (LSUN's official export: keys → JPEG/WEBP bytes) in key order,
    resized and centre-cropped to ``image_size``, as uint8 N×3×s×s; the first ``limit`` if > 0."""
    lmdb = _require_lmdb()
    path = Path(path)
    try:
        env = lmdb.open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False, subdir=path.is_dir()
        )
    except lmdb.Error as e:
        raise DataError(
            f"{path} is not a readable LMDB database ({type(e).__name__}: {e}); expected LSUN's "
            "official export, a folder holding data.mdb and lock.mdb"
        ) from None
    imgs = []
    try:
        with env.begin(write=False) as txn:
            for key, value in txn.cursor():
                name = key.decode("ascii", "replace")
                imgs.append(_decode_image(value, f"the image under key '{name}' in {path}", image_size))
                if limit and len(imgs) >= limit:
                    break
    except lmdb.Error as e:
        raise DataError(f"cannot read the LMDB database {path} ({type(e).__name__}: {e})") from None
    finally:
        env.close()
    if not imgs:
        raise DataError(f"the LMDB database {path} holds no images")
    return torch.stack(imgs)


def _lmdb_folder(root: Path, category: str, split: str) -> Path | None:
    p = root / f"{category}_{split}_lmdb"
    return p if (p / "data.mdb").is_file() else None


def lsun(root: str, category: str, image_size: int, flip: bool, dequantize: str, limit: int) -> DataSource:
    r = Path(root).expanduser()
    train_db = _lmdb_folder(r, category, "train")
    if train_db is None:
        raise DataError(
            f"no LSUN {category} found under {r}: expected the official LMDB export "
            f"{r / (category + '_train_lmdb')}/ (holding data.mdb), as unzipped from {category}_train_lmdb.zip "
            f"(fyu/lsun's download.py -c {category}); {category}_val_lmdb/ next to it, when present, "
            'is the test split. Pass root = "..." pointing at the folder that holds them.'
        )
    val_db = _lmdb_folder(r, category, "val")

    def build() -> dict[str, torch.Tensor]:
        out = {"train": read_lmdb_images(train_db, image_size, limit)}
        if val_db is not None:
            out["test"] = read_lmdb_images(val_db, image_size)
        return out

    dbs = [train_db] + ([val_db] if val_db is not None else [])
    files = tuple((db.name, _files_key([db / "data.mdb"])) for db in dbs)
    t = _cached(r, f"lsun-{category}", build, image_size=image_size, limit=limit, files=files)
    s = image_size
    ident = _identity(f"lsun_{category}", t["train"], size=s, limit=limit)
    return DataSource(
        f"lsun_{category}", "image", (3, s, s), t["train"], t.get("test"), ident, flip, dequantize
    )


def _image_names(p: Path) -> list[str]:
    """Every image file (IMAGE_SUFFIXES, any case) under a folder or inside a zip, sorted by name."""
    import zipfile

    def ok(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")

    if p.is_dir():
        return sorted(q.relative_to(p).as_posix() for q in p.rglob("*") if q.is_file() and ok(q.name))
    regular_file(p, "image zip", error=DataError)  # a FIFO or device would block zipfile forever
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{p} is neither a folder nor a readable zip file ({type(e).__name__}: {e}); expected a "
            "folder of images or a .zip of them"
        ) from None
    return sorted(n for n in names if ok(n))


def read_image_files(p: Path, names: list[str], image_size: int) -> torch.Tensor:
    """The named images of a folder or zip, resized and centre-cropped, as uint8 N×3×s×s."""
    import zipfile

    if p.is_dir():
        imgs = []
        for n in names:
            try:
                raw = read_regular_bytes(p / n, "image file", MAX_IMAGE_BYTES, error=DataError)
            except DataError:
                raise
            except OSError as e:
                raise DataError(f"cannot read {p / n}: {e.strerror or e}") from None
            imgs.append(_decode_image(raw, str(p / n), image_size))
        return torch.stack(imgs)
    regular_file(p, "image zip", error=DataError)
    with zipfile.ZipFile(p) as z:
        return torch.stack(
            [
                _decode_image(read_zip_member(z, n, p, MAX_IMAGE_BYTES), f"{n} in {p}", image_size)
                for n in names
            ]
        )


def read_zip_member(z: Any, name: str, path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """One member of an open zip, refused unread when its declared uncompressed size is over
    ``max_bytes``, and read with that bound (zipfile stops at the declared size and checks the
    CRC, so a member that lies about its size is an error, not a larger allocation)."""
    import zipfile

    try:
        info = z.getinfo(name)
        if info.file_size > max_bytes:
            raise DataError(
                f"{name} in {path} declares {info.file_size / 1e6:.1f} MB uncompressed, over the limit of "
                f"{max_bytes / 1e6:.0f} MB for one image; refusing to read it (remove it from the zip)"
            )
        with z.open(info) as f:
            raw = f.read(max_bytes + 1)
    except DataError:
        raise
    except (OSError, KeyError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise DataError(f"cannot read {name} in {path} ({type(e).__name__}: {e})") from None
    if len(raw) > max_bytes:  # pragma: no cover - zipfile stops at the declared size
        raise DataError(f"{name} in {path} is over the limit of {max_bytes / 1e6:.0f} MB")
    return raw


def images(
    path: str, image_size: int, flip: bool, dequantize: str, limit: int, test_fraction: float
) -> DataSource:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"no images found at {p}: expected a folder of image files ({', '.join(IMAGE_SUFFIXES)}, "
            "searched recursively) or a .zip of them (FFHQ: its images1024x1024/ folder or a zip of it). "
            'Pass path = "..." pointing at it.'
        )
    names = _image_names(p)
    if not names:
        raise DataError(
            f"{p} holds no image files: expected files ending in {', '.join(IMAGE_SUFFIXES)} "
            f"{'under the folder' if p.is_dir() else 'inside the zip'}"
        )
    n_test = int(round(len(names) * test_fraction))
    if n_test >= len(names):
        raise DataError(
            f"{p}: test_fraction = {test_fraction:g} of {len(names)} image(s) leaves no training images"
        )
    train_names, test_names = names[: len(names) - n_test], names[len(names) - n_test :]
    if limit:
        train_names = train_names[:limit]

    def build() -> dict[str, torch.Tensor]:
        out = {"train": read_image_files(p, train_names, image_size)}
        if test_names:
            out["test"] = read_image_files(p, test_names, image_size)
        return out

    if p.is_dir():
        cache_dir, files = p, _files_key(p / n for n in train_names + test_names)
        files = tuple(zip(train_names + test_names, files))  # relative names: same base name in two folders
    else:
        cache_dir, files = p.parent, _files_key([p])
    t = _cached(
        cache_dir,
        "images",
        build,
        image_size=image_size,
        limit=limit,
        test_fraction=test_fraction,
        files=files,
    )
    s = image_size
    ident = _identity("images", t["train"], size=s, limit=limit, test_fraction=test_fraction)
    return DataSource("images", "image", (3, s, s), t["train"], t.get("test"), ident, flip, dequantize)
