"""Readers of the datasets stored as files: the toy mixture and scikit-learn's digits (no
files), IDX (MNIST / Fashion-MNIST), CIFAR-10's python pickles through a restricted unpickler
(:func:`load_cifar_batch`: only the types the format holds, so a payload never runs), and
CelebA's partition list + JPEGs. See :mod:`ncsn_core.data`."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from ncsn_core.data_source import (
    MAX_IMAGE_BYTES,
    DataSource,
    GaussianMixture,
    _cached,
    _content_id,
    _download,
    _files_key,
    _fingerprint,
    _identity,
    _resize,
)
from ncsn_core.errors import DataError
from ncsn_core.io import open_regular, read_regular_bytes

MAX_IDX_BYTES = 4 << 30  # an IDX file (or its decompressed gzip) larger than this is refused
MAX_CIFAR_BATCH_BYTES = 256 << 20  # a CIFAR-10 batch is 31 MB
MAX_LIST_BYTES = 64 << 20  # CelebA's list_eval_partition.txt is 3.4 MB


# ----------------------------------------------------------------------------- toy
def mixture2d(
    weights: tuple[float, ...],
    means: tuple[float, ...],
    std: float,
    stds: tuple[float, ...],
    n_train: int,
    seed: int,
    perturbed: str = "convolution",
) -> DataSource:
    k = len(weights)
    if len(means) != 2 * k:
        raise DataError(f"mixture2d: {k} weights need {2 * k} mean coordinates, got {len(means)}")
    if stds and len(stds) != 2 * k:
        raise DataError(f"mixture2d: stds needs {2 * k} values (one per component and axis), got {len(stds)}")
    w = torch.tensor(weights, dtype=torch.float64)
    if float(w.sum()) <= 0:
        raise DataError("mixture2d: the weights sum to zero")
    mix = GaussianMixture(
        (w / w.sum()).float(),
        torch.tensor(means, dtype=torch.float32).view(k, 2),
        torch.tensor(stds, dtype=torch.float32).view(k, 2) if stds else torch.full((k, 2), float(std)),
        perturbed,
    )
    g = torch.Generator().manual_seed(seed)
    train = mix.sample(n_train, g)
    test = mix.sample(10_000, g)
    ident = "mixture2d:" + _fingerprint(weights, means, std, stds, n_train, seed)
    return DataSource("mixture2d", "points", (2,), train, test, ident, mixture=mix)


# ----------------------------------------------------------------------------- digits
def digits(flip: bool, dequantize: str) -> DataSource:
    from sklearn.datasets import load_digits

    d = load_digits()
    # Values 0..16 → 0..255 (uint8) so every image dataset shares one representation.
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round()).to(torch.uint8)[:, None]
    y = torch.from_numpy(d.target).long()
    n_test = 297  # a fixed split: the last 297 images are the test set
    return DataSource(
        "digits",
        "image",
        (1, 8, 8),
        x[:-n_test],
        x[-n_test:],
        "digits:sklearn:" + _content_id(x),
        flip,
        dequantize,
        train_labels=y[:-n_test],
        test_labels=y[-n_test:],
    )


# ----------------------------------------------------------------------------- IDX (MNIST format)
def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (gz or raw) as a uint8 tensor; DataError if it is not one."""
    path = Path(path)
    try:
        raw = read_regular_bytes(path, "IDX file", MAX_IDX_BYTES, error=DataError)
        if raw[:2] == b"\x1f\x8b":  # decompressed with a bound: a gzip bomb stops at the cap
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(MAX_IDX_BYTES + 1)
            if len(raw) > MAX_IDX_BYTES:
                raise DataError(f"{path} decompresses to more than {MAX_IDX_BYTES >> 20} MB; refusing it")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is not a valid gzip file ({e})") from None
    # Magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions; then big-endian sizes.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header with {ndim} dimensions is truncated")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    n = math.prod(dims)
    body = raw[4 + 4 * ndim :]
    if len(body) != n:
        raise DataError(
            f"{path}: expected {n} bytes of data for shape {dims}, found {len(body)} (truncated?)"
        )
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*dims)


_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / name
        if p.is_file():
            return p
    return None


def _idx_files(folder: Path) -> list[Path] | None:
    found = [_find(folder, s) for s in _IDX_STEMS]
    return None if any(f is None for f in found) else found  # type: ignore[return-value]


def _load_idx_folder(root: Path, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    found = [_find(root, s) for s in _IDX_STEMS]
    if any(f is None for f in found):
        missing = [s for s, f in zip(_IDX_STEMS, found) if f is None]
        raise DataError(
            f"no {what} found under {root}: expected the IDX files {', '.join(_IDX_STEMS)} (optionally .gz); "
            f'missing {", ".join(missing)}. Pass root = "..." pointing at the folder that holds them'
            + (" (Debian: apt-get install dataset-fashion-mnist)." if "Fashion" in what else ".")
        )
    xtr, ytr, xte, yte = (read_idx(f) for f in found)  # type: ignore[arg-type]
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "t10k")):
        if x.dim() != 3 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"{what} under {root}: the {split} images {tuple(x.shape)} and labels {tuple(y.shape)} "
                "do not match (expected N×H×W images and N labels)"
            )
    return xtr, ytr.long(), xte, yte.long()


def fashion_mnist(root: str, flip: bool, dequantize: str, image_size: int) -> DataSource:
    r = Path(root).expanduser()
    xtr, ytr, xte, yte = _load_idx_folder(r, "Fashion-MNIST")
    xtr, xte = _resize(xtr[:, None], image_size), _resize(xte[:, None], image_size)
    s = image_size
    ident = _identity("fashion_mnist", xtr, size=s)
    return DataSource("fashion_mnist", "image", (1, s, s), xtr, xte, ident, flip, dequantize, None, ytr, yte)


def _mnist_folder(r: Path) -> Path | None:
    for folder in (r / "MNIST" / "raw", r):  # torchvision's layout, or the IDX files directly in root
        if _idx_files(folder) is not None:
            return folder
    return None


def mnist(root: str, download: bool, flip: bool, dequantize: str, image_size: int) -> DataSource:
    r = Path(root).expanduser()
    folder = _mnist_folder(r)
    if folder is None:

        def fetch() -> None:
            import torchvision

            for train in (True, False):
                torchvision.datasets.MNIST(str(r), train=train, download=True)

        _download(
            "MNIST", r, "torchvision's MNIST/raw/ IDX files (" + ", ".join(_IDX_STEMS) + ")", download, fetch
        )
        folder = _mnist_folder(r)
        if folder is None:
            raise DataError(
                f"the MNIST download under {r} did not leave the IDX files in {r / 'MNIST' / 'raw'}"
            )

    def build() -> dict[str, torch.Tensor]:
        xtr, ytr, xte, yte = _load_idx_folder(folder, "MNIST")
        return {
            "train": _resize(xtr[:, None], image_size),
            "test": _resize(xte[:, None], image_size),
            "ytr": ytr,
            "yte": yte,
        }

    t = _cached(r, "mnist", build, image_size=image_size, files=_files_key(_idx_files(folder) or []))
    s = image_size
    ident = _identity("mnist", t["train"], size=s)
    return DataSource(
        "mnist", "image", (1, s, s), t["train"], t["test"], ident, flip, dequantize, None, t["ytr"], t["yte"]
    )


_CIFAR_NAMES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


class CifarPickleError(DataError):
    """A CIFAR-10 batch whose pickle asks for something other than the format's plain types."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy ≥ 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed = {"_reconstruct": multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}
    out: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        for name, obj in allowed.items():
            out[(mod, name)] = obj
    return out


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2 (a batch rewritten by Python
    3): only a string to latin-1 bytes, no other codec."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(
            f"_codecs.encode of {type(text).__name__} to {encoding!r} is not bytes data"
        )
    return text.encode("latin-1")


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``)
    and latin-1 ``_codecs.encode`` (bytes at protocol 2); the rest of a CIFAR-10 batch is dicts, lists, bytes, strings and ints, which need no
    global. Anything else (``os.system``, ``builtins.eval``, ...) is refused before it is
    called, so a ``__reduce__`` payload never runs."""

    def __init__(self, f: Any, path: Path) -> None:
        super().__init__(f, encoding="latin1")
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise CifarPickleError(
                f"{self._path} is refused: a CIFAR-10 batch holds only numpy arrays, dicts, lists, bytes "
                f"and numbers, but this pickle asks for {module}.{name}, which could run code. Nothing in it "
                "was run; delete the file (or the folder, to download it again) if you do not know where it "
                "came from."
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise CifarPickleError(
            f"{self._path} is refused: it holds persistent references, which CIFAR-10 never has"
        )


def load_cifar_batch(path: Path) -> dict[str, Any]:
    """One CIFAR-10 python batch through the restricted unpickler: a dict with ``data``
    (N×3072 uint8 array) and ``labels``. :class:`CifarPickleError` for a pickle that needs any
    other global, :class:`DataError` for anything else that is not such a batch."""
    path = Path(path)
    with open_regular(path, "CIFAR-10 batch file", MAX_CIFAR_BATCH_BYTES, error=DataError) as f:
        try:
            d = _CifarUnpickler(f, path).load()
        except CifarPickleError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated, not a pickle, a huge allocation...
            raise DataError(
                f"{path} is not a CIFAR-10 batch file ({type(e).__name__}: {e}); expected a python pickle "
                "with 'data' (N×3072 uint8) and 'labels'. Delete the folder to download it again."
            ) from None
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise DataError(f"{path} is not a CIFAR-10 batch file: expected a dict with 'data' and 'labels'")
    return d


def read_cifar10_folder(folder: Path) -> dict[str, torch.Tensor]:
    """CIFAR-10's python pickles (cifar-10-batches-py/data_batch_1..5, test_batch), no checksums."""
    missing = [n for n in _CIFAR_NAMES if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 under {folder} is incomplete: missing {', '.join(missing)} "
            "(expected data_batch_1..5 and test_batch from cifar-10-python.tar.gz)"
        )
    parts: dict[str, list[Any]] = {"train": [], "ytr": [], "test": [], "yte": []}
    for n in _CIFAR_NAMES:
        d = load_cifar_batch(folder / n)
        try:
            # Each row: 1024 red, 1024 green, 1024 blue values, row-major 32×32.
            x = torch.as_tensor(d["data"], dtype=torch.uint8).view(-1, 3, 32, 32)
            y = torch.as_tensor(d["labels"], dtype=torch.long)
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        except Exception as e:  # noqa: BLE001 - any damage to a batch file
            raise DataError(
                f"{folder / n} is not a CIFAR-10 batch file ({type(e).__name__}: {e}); expected a python "
                "pickle with 'data' (N×3072 uint8) and 'labels'. Delete the folder to download it again."
            ) from None
        key = "test" if n == "test_batch" else "train"
        parts[key].append(x)
        parts["yte" if key == "test" else "ytr"].append(y)
    return {k: torch.cat(v) for k, v in parts.items()}


def _cifar_folder(r: Path) -> Path | None:
    for folder in (r / "cifar-10-batches-py", r):  # torchvision's layout, or the batches directly in root
        if (folder / "data_batch_1").exists():
            return folder
    return None


def cifar10(root: str, download: bool, flip: bool, dequantize: str, image_size: int = 32) -> DataSource:
    r = Path(root).expanduser()
    expected = "torchvision's cifar-10-batches-py/ folder (data_batch_1..5, test_batch)"
    folder = _cifar_folder(r)
    if folder is None:

        def fetch() -> None:
            import torchvision

            torchvision.datasets.CIFAR10(str(r), train=True, download=True)

        _download("CIFAR-10", r, expected, download, fetch)
        folder = r / "cifar-10-batches-py"

    def build() -> dict[str, torch.Tensor]:
        t = read_cifar10_folder(folder)
        t["train"], t["test"] = _resize(t["train"], image_size), _resize(t["test"], image_size)
        return t

    files = _files_key(folder / n for n in _CIFAR_NAMES)
    t = _cached(r, "cifar10", build, image_size=image_size, files=files)
    s = image_size
    ident = _identity("cifar10", t["train"], size=s)
    return DataSource(
        "cifar10",
        "image",
        (3, s, s),
        t["train"],
        t["test"],
        ident,
        flip,
        dequantize,
        None,
        t["ytr"],
        t["yte"],
    )


def _celeba_folder(r: Path) -> Path | None:
    for folder in (r / "celeba", r):  # torchvision's layout, or the files directly in root
        if (folder / "list_eval_partition.txt").is_file() and (folder / "img_align_celeba").is_dir():
            return folder
    return None


def read_celeba_folder(folder: Path, image_size: int, limit: int = 0) -> dict[str, torch.Tensor]:
    """CelebA's aligned JPEGs by list_eval_partition.txt (0 train, 2 test), center-crop 140 and
    resize (NCSN §5 / App. B: ``CenterCrop(140)``, ``Resize(image_size)``), as uint8."""
    from io import BytesIO

    from PIL import Image
    from torchvision.transforms import functional as TF

    part = folder / "list_eval_partition.txt"
    names: dict[str, list[str]] = {"train": [], "test": []}
    try:
        lines = read_regular_bytes(part, "CelebA's partition list", MAX_LIST_BYTES, error=DataError)
        lines = lines.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read CelebA's partition list {part} ({type(e).__name__}: {e})") from None
    for ln, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{part}, line {ln}: {line[:60]!r} is not '<image>.jpg <0|1|2>' (CelebA's partition list)"
            )
        if "/" in fields[0] or "\\" in fields[0] or fields[0] in (".", ".."):
            raise DataError(f"{part}, line {ln}: {fields[0]!r} is not a file name inside img_align_celeba/")
        if fields[1] != "1":  # 0 train, 1 validation (unused), 2 test
            names["train" if fields[1] == "0" else "test"].append(fields[0])
    if limit:
        names["train"] = names["train"][:limit]
    out = {}
    for split, files in names.items():
        imgs = []
        for fname in files:
            p = folder / "img_align_celeba" / fname
            raw = read_regular_bytes(p, "CelebA image", MAX_IMAGE_BYTES, error=DataError)
            try:
                with Image.open(BytesIO(raw)) as im:
                    im = TF.resize(TF.center_crop(im.convert("RGB"), 140), image_size)
                    imgs.append(TF.pil_to_tensor(im))
            except Exception as e:  # noqa: BLE001 - a missing or damaged image
                raise DataError(f"cannot read CelebA image {p} ({type(e).__name__}: {e})") from None
        if not imgs:
            raise DataError(f"{part} lists no {split} images")
        out[split] = torch.stack(imgs)
    return out


def celeba(root: str, download: bool, flip: bool, dequantize: str, image_size: int, limit: int) -> DataSource:
    r = Path(root).expanduser()
    expected = "torchvision's celeba/ folder with img_align_celeba/ (the JPEGs) and list_eval_partition.txt"
    folder = _celeba_folder(r)
    if folder is None:

        def fetch() -> None:
            import torchvision

            torchvision.datasets.CelebA(str(r), split="all", download=True)

        _download("CelebA", r, expected, download, fetch)
        folder = r / "celeba"

    files = _files_key([folder / "list_eval_partition.txt", folder / "img_align_celeba"])
    t = _cached(
        r,
        "celeba",
        lambda: read_celeba_folder(folder, image_size, limit),
        image_size=image_size,
        limit=limit,
        files=files,
    )
    s = image_size
    ident = _identity("celeba", t["train"], size=s, limit=limit)
    return DataSource("celeba", "image", (3, s, s), t["train"], t["test"], ident, flip, dequantize)
