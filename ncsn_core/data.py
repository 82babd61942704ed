"""Datasets: the NCSN toy mixture, scikit-learn's digits (embedded default), Fashion-MNIST
from IDX files, and MNIST / CIFAR-10 / CelebA from local files or torchvision downloads.

Images are kept as uint8 tensors (N×C×H×W) and turned into floats in [0, 1] per batch, with
the papers' augmentations: random horizontal flips, and the uniform dequantisation of the
official code, x·255/256 + U/256 (reference.md).

Local files are read by our own small readers (IDX, CIFAR-10's python pickles, CelebA's
partition list + JPEGs), which need no checksums and no network; torchvision is used only to
download when the files are missing, ``download = true`` and ``REPRO_OFFLINE`` is not set.
The uint8 tensors of MNIST, CIFAR-10 and CelebA are converted once and cached as
``.repro-<name>-<key>.pt`` next to the data (key: the transform parameters and the sizes and
modification times of the files read).

``DataSource.identity`` names the data *content* (name, content-changing parameters such as
``image_size``, and a hash of a strided sample of the training tensor); it keys caches such as
Technique 1's and the FID reference statistics, and does not change with ``flip`` or
``dequantize`` (augmentations, which ``as_float`` never applies) or with the folder's path.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import torch

from ncsn_core import io as atomic
from ncsn_core.errors import DataError


# ----------------------------------------------------------------------------- mixtures
@attrs.define
class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(s_k²)); scores of the σ-perturbed mixture are exact.

    Two constructions of "the mixture at noise level σ" (``perturbed``):

    * ``convolution`` (the exact q_σ = p * N(0, σ²I) of NCSN Eq. 5): component k becomes
      N(μ_k, diag(s_k² + σ²));
    * ``component_std`` (the official toy runner, models/gmm.py GMMDistAnneal): σ *replaces*
      the components' standard deviation, component k becomes N(μ_k, σ²I). At σ = 0 (the
      data's own score, Fig. 3b) the components keep their stds s_k, as the official code's
      default σ = 1 does for the unit-std mixture.
    """

    weights: torch.Tensor  # [K]
    means: torch.Tensor  # [K, d]
    stds: torch.Tensor  # [K, d] per-axis standard deviations
    perturbed: str = "convolution"  # "convolution" | "component_std"

    def _params(self, sigma: float | torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sig2 = torch.as_tensor(sigma, dtype=x.dtype, device=x.device) ** 2
        data_var = self.stds.to(x) ** 2
        if self.perturbed == "component_std":
            var = torch.where(sig2 > 0, sig2.expand_as(data_var), data_var)
        else:
            var = data_var + sig2
        return self.means.to(x), var

    def _log_components(
        self, x: torch.Tensor, sigma: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, var = self._params(sigma, x)
        diff = x[:, None, :] - mu[None]  # [B, K, d]
        comp = -0.5 * ((diff**2) / var[None] + torch.log(2 * math.pi * var[None])).sum(-1)
        return comp + torch.log(self.weights.to(x))[None], -diff / var[None]

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """log q_σ(x): components N(μ_k, diag(s_k² + σ²)) (convolution) or N(μ_k, σ²I) (component_std)."""
        logw, _ = self._log_components(x, sigma)
        return torch.logsumexp(logw, dim=1)

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """∇ₓ log q_σ(x) in closed form: Σ_k r_k(x)·(μ_k − x)/v_k, r_k the responsibilities and
        v_k the component variance (s_k² + σ², or σ² with component_std)."""
        logw, comp_scores = self._log_components(x, sigma)
        r = torch.softmax(logw, dim=1)
        return (r[..., None] * comp_scores).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means[k] + self.stds[k] * z


# ----------------------------------------------------------------------------- the source
@attrs.define(eq=False)
class DataSource:
    name: str
    kind: str  # "image" | "points"
    shape: tuple[int, ...]
    train: torch.Tensor
    test: torch.Tensor | None
    identity: str
    flip: bool = False
    dequantize: str = "none"
    mixture: GaussianMixture | None = None
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.train.shape[0])

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "points":
            return x.float()
        return x.float() / 255.0

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training examples ``idx`` as float32 on idx's device, augmented as configured.

        The random numbers are drawn from ``generator`` (on its own device), so a batch is a
        function of (idx, generator state) only.
        """
        x = self._to_float(self.train[idx.cpu()])
        if self.kind == "image":
            dev = generator.device if generator is not None else torch.device("cpu")
            if self.dequantize == "uniform":
                # Official code: x·255/256 + U[0, 1)/256, a sample of a continuous density.
                u = torch.rand(x.shape, generator=generator, device=dev).to(x.device)
                x = x * (255.0 / 256.0) + u / 256.0
            if self.flip:
                f = (torch.rand(x.shape[0], generator=generator, device=dev) < 0.5).to(x.device)
                x = torch.where(f[:, None, None, None], x.flip(-1), x)
        return x.to(idx.device)

    def as_float(self, split: str = "train") -> torch.Tensor:
        """The whole split as float32 (images in [0, 1]), without any augmentation."""
        if split not in ("train", "test"):
            raise DataError(f"{self.name}: unknown split '{split}' (train or test)")
        t = self.train if split == "train" else self.test
        if t is None:
            raise DataError(f"{self.name} has no {split} split")
        return self._to_float(t)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _content_id(x: torch.Tensor, samples: int = 512) -> str:
    """A cheap hash of a tensor's content: its shape and a strided sample of its rows."""
    step = max(1, x.shape[0] // samples)
    h = hashlib.sha256(repr((tuple(x.shape), str(x.dtype))).encode())
    h.update(x[::step].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _identity(name: str, x: torch.Tensor, **params: Any) -> str:
    p = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}:{p}:{_content_id(x)}" if p else f"{name}:{_content_id(x)}"


def _files_key(paths: Iterable[Path]) -> tuple:
    """Names, sizes and modification times: a changed file invalidates a conversion cache."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p.name, -1, -1))
    return tuple(out)


def _offline() -> bool:
    return bool(os.environ.get("REPRO_OFFLINE"))


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
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
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


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N×C×H×W → N×C×size×size (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = torch.nn.functional.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


def fashion_mnist(root: str, flip: bool, dequantize: str, image_size: int) -> DataSource:
    r = Path(root).expanduser()
    xtr, ytr, xte, yte = _load_idx_folder(r, "Fashion-MNIST")
    xtr, xte = _resize(xtr[:, None], image_size), _resize(xte[:, None], image_size)
    s = image_size
    ident = _identity("fashion_mnist", xtr, size=s)
    return DataSource("fashion_mnist", "image", (1, s, s), xtr, xte, ident, flip, dequantize, None, ytr, yte)


# ----------------------------------------------------------------------------- MNIST / CIFAR-10 / CelebA


def _cache_path(root: Path, name: str, **kw: Any) -> Path:
    return root / f".repro-{name}-{_fingerprint(sorted(kw.items()))}.pt"


def _cached(root: Path, name: str, build: Callable[[], dict[str, torch.Tensor]], **kw: Any) -> dict[str, Any]:
    """The uint8 tensors of a dataset, converted once and cached next to the data."""
    p = _cache_path(root, name, **kw)
    if p.exists():
        try:
            return torch.load(p, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            p.unlink(missing_ok=True)
    out = build()
    try:
        atomic.write_with(p, lambda f: torch.save(out, f))
    except OSError:
        pass  # a read-only dataset folder: just don't cache
    return out


def _download(name: str, root: Path, expected: str, download: bool, fetch: Callable[[], Any]) -> None:
    """Run torchvision's download, or raise the DataError that says what is missing and why."""
    hint = 'Pass root = "..." pointing at a folder that holds them, or run once on a machine with internet.'
    if not download or _offline():
        why = "download = false" if not download else "REPRO_OFFLINE is set, so no download was tried"
        raise DataError(f"no {name} found under {root}: expected {expected}; {why}. {hint}")
    try:
        fetch()
    except Exception as e:  # noqa: BLE001 - no network, a bad archive, a full disk, ...
        raise DataError(
            f"no {name} found under {root}: expected {expected}; the download failed "
            f"({type(e).__name__}: {' '.join(str(e).split())}). {hint}"
        ) from None


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
        try:
            with open(folder / n, "rb") as f:
                d = pickle.load(f, encoding="latin1")
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
    from PIL import Image
    from torchvision.transforms import functional as TF

    part = folder / "list_eval_partition.txt"
    names: dict[str, list[str]] = {"train": [], "test": []}
    try:
        lines = part.read_text().splitlines()
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
        if fields[1] != "1":  # 0 train, 1 validation (unused), 2 test
            names["train" if fields[1] == "0" else "test"].append(fields[0])
    if limit:
        names["train"] = names["train"][:limit]
    out = {}
    for split, files in names.items():
        imgs = []
        for fname in files:
            p = folder / "img_align_celeba" / fname
            try:
                with Image.open(p) as im:
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
                raw = (p / n).read_bytes()
            except OSError as e:
                raise DataError(f"cannot read {p / n}: {e.strerror or e}") from None
            imgs.append(_decode_image(raw, str(p / n), image_size))
        return torch.stack(imgs)
    with zipfile.ZipFile(p) as z:
        return torch.stack([_decode_image(z.read(n), f"{n} in {p}", image_size) for n in names])


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
