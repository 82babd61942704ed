"""Datasets: the NCSN toy mixture, scikit-learn's digits (embedded default), Fashion-MNIST
from IDX files, and MNIST / CIFAR-10 / CelebA through torchvision or local files.

Images are kept as uint8 tensors (N×C×H×W) and turned into floats in [0, 1] per batch, with
the papers' augmentations: random horizontal flips, and the uniform dequantisation of the
official code, x·255/256 + U/256 (reference.md).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import attrs
import torch

from ncsn_core.registry import Bool, Choice, Float, Int, ListOf, Param, Str, register


class DataError(Exception):
    """A dataset that is missing or damaged; the message names the path and what was expected."""


# ----------------------------------------------------------------------------- mixtures
@attrs.define
class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(s_k²)); scores of the σ-perturbed mixture are exact."""

    weights: torch.Tensor  # [K]
    means: torch.Tensor  # [K, d]
    stds: torch.Tensor  # [K, d] per-axis standard deviations

    def _params(self, sigma: float | torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var = self.stds.to(x) ** 2 + torch.as_tensor(sigma, dtype=x.dtype, device=x.device) ** 2
        return self.means.to(x), var

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """log q_σ(x) with q_σ = p * N(0, σ²I): components N(μ_k, diag(s_k² + σ²))."""
        mu, var = self._params(sigma, x)
        diff = x[:, None, :] - mu[None]  # [B, K, d]
        comp = -0.5 * ((diff**2) / var[None] + torch.log(2 * math.pi * var[None])).sum(-1)
        return torch.logsumexp(comp + torch.log(self.weights.to(x))[None], dim=1)

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """∇ₓ log q_σ(x) in closed form: Σ_k r_k(x)·(μ_k − x)/(s_k² + σ²)."""
        mu, var = self._params(sigma, x)
        diff = x[:, None, :] - mu[None]
        comp = -0.5 * ((diff**2) / var[None] + torch.log(2 * math.pi * var[None])).sum(-1)
        r = torch.softmax(comp + torch.log(self.weights.to(x))[None], dim=1)  # responsibilities
        return (r[..., None] * (-diff / var[None])).sum(1)

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
        x = self._to_float(self.train[idx.cpu()])
        if self.kind == "image":
            if self.dequantize == "uniform":
                # Official code: x·255/256 + U[0, 1/256) — a sample of the continuous density.
                x = x * (255.0 / 256.0) + torch.rand(x.shape, generator=generator) / 256.0
            if self.flip:
                f = torch.rand(x.shape[0], generator=generator) < 0.5
                x = torch.where(f[:, None, None, None], x.flip(-1), x)
        return x.to(idx.device)

    def as_float(self, split: str = "train") -> torch.Tensor:
        t = self.train if split == "train" else self.test
        if t is None:
            raise DataError(f"{self.name} has no {split} split")
        return self._to_float(t)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


_FLIP = Param("flip", Bool(), False, "random horizontal flips during training")
_DEQ = Param("dequantize", Choice(("none", "uniform")), "uniform", "uniform dequantisation x·255/256 + U/256")


# ----------------------------------------------------------------------------- toy
@register(
    "data",
    "mixture2d",
    params=[
        Param("weights", ListOf(Float(min=0.0), min_len=1), (0.2, 0.8), "mixture weights (normalised)"),
        Param(
            "means",
            ListOf(Float()),
            (-5.0, -5.0, 5.0, 5.0),
            "component means, flattened (x₁, y₁, x₂, y₂, ...)",
        ),
        Param(
            "std", Float(min=0.0, exclusive_min=True), 1.0, "isotropic standard deviation of every component"
        ),
        Param(
            "stds",
            ListOf(Float(min=0.0, exclusive_min=True)),
            (),
            "per-component per-axis stds, flattened; overrides std",
        ),
        Param("n_train", Int(min=1), 100_000, "size of the fixed training set drawn from the mixture"),
        Param("seed", Int(min=0), 0, "seed of the training-set draw"),
    ],
    doc="NCSN's 2-D toy mixture 1/5 N((-5,-5), I) + 4/5 N((5,5), I) (§3.2), or any 2-D Gaussian mixture",
)
def mixture2d(
    weights: tuple[float, ...],
    means: tuple[float, ...],
    std: float,
    stds: tuple[float, ...],
    n_train: int,
    seed: int,
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
    )
    g = torch.Generator().manual_seed(seed)
    train = mix.sample(n_train, g)
    test = mix.sample(10_000, g)
    ident = "mixture2d:" + _fingerprint(weights, means, std, stds, n_train, seed)
    return DataSource("mixture2d", "points", (2,), train, test, ident, mixture=mix)


# ----------------------------------------------------------------------------- digits
@register(
    "data",
    "digits",
    params=[_FLIP, _DEQ],
    doc="scikit-learn's 8×8 handwritten digits (1797 images, shipped with the package): the embedded default",
)
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
        "digits:sklearn:" + _fingerprint(int(x.sum()), x.shape),
        flip,
        dequantize,
        train_labels=y[:-n_test],
        test_labels=y[-n_test:],
    )


# ----------------------------------------------------------------------------- IDX (MNIST format)
def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (gz or raw) as a uint8/int tensor; DataError if it is not one."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is not a valid gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    n = math.prod(dims)
    body = raw[4 + 4 * ndim :]
    if len(body) != n:
        raise DataError(
            f"{path}: expected {n} bytes of data for shape {dims}, found {len(body)} (truncated?)"
        )
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*dims)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / name
        if p.exists():
            return p
    return None


def _load_idx_folder(root: Path, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    stems = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    found = [_find(root, s) for s in stems]
    if any(f is None for f in found):
        missing = [s for s, f in zip(stems, found) if f is None]
        raise DataError(
            f"no {what} found under {root}: expected the IDX files {', '.join(stems)} (optionally .gz); "
            f'missing {", ".join(missing)}. Pass root = "..." pointing at the folder that holds them'
            + (" (Debian: apt-get install dataset-fashion-mnist)." if "Fashion" in what else ".")
        )
    xtr, ytr, xte, yte = (read_idx(f) for f in found)  # type: ignore[arg-type]
    return xtr, ytr.long(), xte, yte.long()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = torch.nn.functional.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


@register(
    "data",
    "fashion_mnist",
    params=[
        Param(
            "root",
            Str(),
            "/usr/share/datasets/fashion-mnist",
            "folder with the IDX files (Debian's dataset-fashion-mnist)",
        ),
        _FLIP,
        _DEQ,
        Param("image_size", Int(min=4), 28, "resize to this size"),
    ],
    doc="Fashion-MNIST read from local IDX files (28×28, 60k train / 10k test)",
)
def fashion_mnist(root: str, flip: bool, dequantize: str, image_size: int) -> DataSource:
    r = Path(root).expanduser()
    xtr, ytr, xte, yte = _load_idx_folder(r, "Fashion-MNIST")
    xtr, xte = _resize(xtr[:, None], image_size), _resize(xte[:, None], image_size)
    ident = "fashion_mnist:" + _fingerprint(str(r.resolve()), xtr.shape, int(xtr[:100].sum()), image_size)
    return DataSource(
        "fashion_mnist",
        "image",
        (1, image_size, image_size),
        xtr,
        xte,
        ident,
        flip,
        dequantize,
        None,
        ytr,
        yte,
    )


# ----------------------------------------------------------------------------- torchvision sets
_ROOT_DOC = "dataset folder; downloaded there when missing and download = true"
_DOWNLOAD = Param("download", Bool(), True, "download with torchvision when the files are not in root")


def _cache_path(root: Path, name: str, **kw: Any) -> Path:
    return root / f".repro-{name}-{_fingerprint(sorted(kw.items()))}.pt"


def _cached(root: Path, name: str, build: Any, **kw: Any) -> dict[str, torch.Tensor]:
    """The uint8 tensors of a dataset, converted once and cached next to the data."""
    p = _cache_path(root, name, **kw)
    if p.exists():
        try:
            return torch.load(p, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            p.unlink(missing_ok=True)
    out = build()
    try:
        tmp = p.with_suffix(".tmp")
        torch.save(out, tmp)
        tmp.replace(p)
    except OSError:
        pass  # a read-only dataset folder: just don't cache
    return out


@register(
    "data",
    "mnist",
    params=[
        Param("root", Str(), "data/mnist", _ROOT_DOC),
        _DOWNLOAD,
        _FLIP,
        _DEQ,
        Param("image_size", Int(min=4), 28, "resize to this size"),
    ],
    doc="MNIST (torchvision's MNIST/raw IDX files under root, or downloaded)",
)
def mnist(root: str, download: bool, flip: bool, dequantize: str, image_size: int) -> DataSource:
    r = Path(root).expanduser()

    def build() -> dict[str, torch.Tensor]:
        raw = r / "MNIST" / "raw"
        for folder in (raw, r):
            if all(_find(folder, s) for s in ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"]):
                xtr, ytr, xte, yte = _load_idx_folder(folder, "MNIST")
                break
        else:
            if not download:
                raise DataError(
                    f"no MNIST found under {r}: expected torchvision's MNIST/raw/ IDX files; download = false"
                )
            try:
                import torchvision

                torchvision.datasets.MNIST(str(r), train=True, download=True)
                torchvision.datasets.MNIST(str(r), train=False, download=True)
            except Exception as e:  # noqa: BLE001
                raise DataError(
                    f"no MNIST found under {r} and the download failed ({type(e).__name__}: {e}). Put torchvision's "
                    f"MNIST/raw/ IDX files there, or run once on a machine with internet."
                ) from None
            xtr, ytr, xte, yte = _load_idx_folder(raw, "MNIST")
        return {
            "train": _resize(xtr[:, None], image_size),
            "test": _resize(xte[:, None], image_size),
            "ytr": ytr,
            "yte": yte,
        }

    t = _cached(r, "mnist", build, image_size=image_size)
    ident = "mnist:" + _fingerprint(t["train"].shape, int(t["train"][:100].sum()), image_size)
    s = image_size
    return DataSource(
        "mnist", "image", (1, s, s), t["train"], t["test"], ident, flip, dequantize, None, t["ytr"], t["yte"]
    )


def read_cifar10_folder(folder: Path) -> dict[str, torch.Tensor]:
    """CIFAR-10's python pickles (cifar-10-batches-py/data_batch_1..5, test_batch)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise DataError(f"CIFAR-10 under {folder} is incomplete: missing {', '.join(missing)}")
    parts: dict[str, list[Any]] = {"train": [], "ytr": [], "test": [], "yte": []}
    for n in names:
        try:
            with open(folder / n, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            x = torch.as_tensor(d["data"], dtype=torch.uint8).view(-1, 3, 32, 32)
            y = torch.as_tensor(d["labels"], dtype=torch.long)
        except Exception as e:  # noqa: BLE001 - any damage to a batch file
            raise DataError(f"{folder / n} is not a CIFAR-10 batch file ({type(e).__name__}: {e})") from None
        key = "test" if n == "test_batch" else "train"
        parts[key].append(x)
        parts["yte" if key == "test" else "ytr"].append(y)
    return {k: torch.cat(v) for k, v in parts.items()}


@register(
    "data",
    "cifar10",
    params=[
        Param("root", Str(), "data/cifar10", _ROOT_DOC),
        _DOWNLOAD,
        Param("flip", Bool(), True, "random horizontal flips"),
        _DEQ,
    ],
    doc="CIFAR-10 32×32 (cifar-10-batches-py under root, or downloaded by torchvision)",
)
def cifar10(root: str, download: bool, flip: bool, dequantize: str) -> DataSource:
    r = Path(root).expanduser()

    def build() -> dict[str, torch.Tensor]:
        folder = r / "cifar-10-batches-py"
        if not folder.is_dir():
            if not download:
                raise DataError(
                    f"no CIFAR-10 found under {r}: expected torchvision's cifar-10-batches-py/ folder "
                    f"(data_batch_1..5, test_batch); download = false"
                )
            try:
                import torchvision

                torchvision.datasets.CIFAR10(str(r), train=True, download=True)
            except Exception as e:  # noqa: BLE001
                raise DataError(
                    f"no CIFAR-10 found under {r}: expected torchvision's cifar-10-batches-py/ folder "
                    f"(data_batch_1..5, test_batch); the download failed ({type(e).__name__}: {e}). Pass "
                    f'root = "..." or run once on a machine with internet.'
                ) from None
        return read_cifar10_folder(folder)

    t = _cached(r, "cifar10", build)
    ident = "cifar10:" + _fingerprint(t["train"].shape, int(t["train"][:100].sum()))
    return DataSource(
        "cifar10",
        "image",
        (3, 32, 32),
        t["train"],
        t["test"],
        ident,
        flip,
        dequantize,
        None,
        t["ytr"],
        t["yte"],
    )


@register(
    "data",
    "celeba",
    params=[
        Param("root", Str(), "data/celeba", _ROOT_DOC),
        _DOWNLOAD,
        Param("flip", Bool(), True, "random horizontal flips"),
        _DEQ,
        Param("image_size", Int(min=4), 32, "center-crop 140, then resize to this (NCSN: 32; NCSNv2: 64)"),
        Param("limit", Int(min=0), 0, "use only the first N training images (0 = all)"),
    ],
    doc="CelebA, center-cropped to 140×140 and resized (NCSN §5), through torchvision",
)
def celeba(root: str, download: bool, flip: bool, dequantize: str, image_size: int, limit: int) -> DataSource:
    r = Path(root).expanduser()

    def build() -> dict[str, torch.Tensor]:
        try:
            import torchvision
            from torchvision import transforms

            tf = transforms.Compose(
                [transforms.CenterCrop(140), transforms.Resize(image_size), transforms.PILToTensor()]
            )
            out = {}
            for split in ("train", "test"):
                ds = torchvision.datasets.CelebA(str(r), split=split, download=download, transform=tf)
                n = len(ds) if (limit == 0 or split == "test") else min(limit, len(ds))
                out[split] = torch.stack([ds[i][0] for i in range(n)])
            return out
        except Exception as e:  # noqa: BLE001
            raise DataError(
                f"no CelebA found under {r}: expected torchvision's celeba/ folder (img_align_celeba/, "
                f'list_eval_partition.txt, ...) ({type(e).__name__}: {e}). Pass root = "...".'
            ) from None

    t = _cached(r, "celeba", build, image_size=image_size, limit=limit)
    ident = "celeba:" + _fingerprint(t["train"].shape, int(t["train"][:10].sum()), image_size)
    s = image_size
    return DataSource("celeba", "image", (3, s, s), t["train"], t["test"], ident, flip, dequantize)


# Per-sample shapes known without reading any file (for `repro compile`'s parameter counts).
_STATIC_SHAPES = {
    "mixture2d": lambda p: (2,),
    "digits": lambda p: (1, 8, 8),
    "fashion_mnist": lambda p: (1, p["image_size"], p["image_size"]),
    "mnist": lambda p: (1, p["image_size"], p["image_size"]),
    "cifar10": lambda p: (3, 32, 32),
    "celeba": lambda p: (3, p["image_size"], p["image_size"]),
}


def static_shape(name: str, params: dict[str, Any]) -> tuple[int, ...] | None:
    """The per-sample shape of a dataset from its parameters alone, or None if unknown."""
    f = _STATIC_SHAPES.get(name)
    return None if f is None else tuple(f(params))
