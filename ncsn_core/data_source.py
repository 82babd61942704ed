"""The in-memory dataset every stage uses (:class:`DataSource`), the toy Gaussian mixture,
and the helpers the file readers share: content identities, the conversion cache next to the
data (read weights-only), torchvision's download, resizing. See :mod:`ncsn_core.data`."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import torch

from ncsn_core import io as atomic
from ncsn_core.errors import DataError

MAX_IMAGE_BYTES = 256 << 20  # one image file (or zip member) larger than this is refused unread


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


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N×C×H×W → N×C×size×size (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = torch.nn.functional.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


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


def _outermost_missing(root: Path) -> Path | None:
    """The outermost of ``root`` and its parents that does not exist yet (None if root exists):
    what a download into ``root`` creates."""
    p, missing = root.absolute(), None
    while not p.exists() and p != p.parent:
        missing, p = p, p.parent
    return missing


def _remove_created(folder: Path | None) -> None:
    """Remove a folder a failed download created (it did not exist before, so all it holds,
    e.g. a partial archive, is this download's)."""
    import shutil

    if folder is not None and folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def _download(name: str, root: Path, expected: str, download: bool, fetch: Callable[[], Any]) -> None:
    """Run torchvision's download, or raise the DataError that says what is missing and why."""
    hint = 'Pass root = "..." pointing at a folder that holds them, or run once on a machine with internet.'
    if not download or _offline():
        why = "download = false" if not download else "REPRO_OFFLINE is set, so no download was tried"
        raise DataError(f"no {name} found under {root}: expected {expected}; {why}. {hint}")
    created = _outermost_missing(root)
    try:
        fetch()
    except Exception as e:  # noqa: BLE001 - no network, a bad archive, a full disk, ...
        _remove_created(created)  # a failed download leaves no empty data/<name> folders behind
        raise DataError(
            f"no {name} found under {root}: expected {expected}; the download failed "
            f"({type(e).__name__}: {' '.join(str(e).split())}). {hint}"
        ) from None


def require_spread(distance: float, data: DataSource, parameter: str = "noise.sigma_max") -> float:
    """``distance`` (Technique 1's largest pairwise distance of ``data``) if it is > 0; else a
    :class:`DataError` naming the parameter and the data: ``auto`` cannot pick a noise scale for
    a training set whose points are all identical (the checker would say only "must be > 0")."""
    if distance > 0 and math.isfinite(distance):
        return distance
    n = len(data)
    what = "all identical" if distance == 0 else f"at distance {distance!r} of each other"
    raise DataError(
        f"{parameter} = auto (NCSNv2 Technique 1: the largest distance between two training points) "
        f"found the {n} training point(s) of data {data.name} ({data.identity}) {what}, so it would be "
        f"{distance!r}; a noise scale must be > 0. Use data with at least two different points, or set "
        f"{parameter} to a number."
    )
