"""Inception-based metrics through torch-fidelity, guarding its pitfalls:

- it silently ignores options it does not know: every option passed is checked against
  ``torch_fidelity.defaults.DEFAULTS`` first (:func:`checked_kwargs`);
- each feature extractor gets its weights file explicitly, so nothing is downloaded behind our
  back and the file's hash can be recorded; torch-fidelity would unpickle that path with
  full (code-running) unpickling (a payload in the file would run), so the extractor it builds is our
  subclass registered in place of ``inception-v3-compat`` (:func:`verified_extractor`), which
  reads the file with
  :func:`~ncsn_core.evaluation.weights.load_inception_state` (weights-only, hash-checked) and
  hands torch-fidelity's constructor an in-memory copy of the verified tensors, never the path;
- its feature caches are keyed by the names we give and the extractor's name only (not the
  weights, not the sample count, not the content): the reference set's name carries the
  dataset identity, the split, its size and the weights' hash. The samples' features are never
  cached (``input1_cache_name = None``): the eval stage's metrics.json is their cache, the
  evaluation hash (``run_key``) is the same for every seed, and 50k samples' Inception
  features would take about 600 MB per evaluation;
- images are fed as uint8 3-channel tensors (a Dataset wrapper; 1-channel data is repeated),
  with no DataLoader worker processes (the tensors are in memory already);
- ``cuda = True`` moves the extractor to the *current* CUDA device, so a run on ``cuda:1``
  sets it for the call.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.evaluation.weights import fidelity_version, load_inception_state, preflight, sha256_file
from ncsn_core.values import Call

FEATURE_EXTRACTOR = "inception-v3-compat"
RNG_SEED = 2020  # torch-fidelity's default, stated so it is part of the protocol
KID_SUBSETS = 100


class Uint8Images(torch.utils.data.Dataset):
    """Images as torch-fidelity wants them: uint8, C×H×W, 3 channels.

    Float input is taken to be in [0, 1] and rounded to the nearest of 256 levels (as
    ``torchvision.utils.save_image`` does); uint8 input passes unchanged.
    """

    def __init__(self, x: torch.Tensor) -> None:
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected N×1×H×W or N×3×H×W images, got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.x = x.contiguous()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def verified_extractor() -> str:
    """Put (once) in torch-fidelity's registry, under :data:`FEATURE_EXTRACTOR`, its own
    Inception-v3 subclassed to load a weights file through :func:`load_inception_state`: the
    same network and features, fed an in-memory copy of the verified tensors instead of the
    path (which torch-fidelity 0.4 unpickles with full (code-running) unpickling). Returns the name."""
    import io

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if getattr(FEATURE_EXTRACTORS_REGISTRY.get(FEATURE_EXTRACTOR), "repro_verified", False):
        return FEATURE_EXTRACTOR

    class VerifiedInceptionV3(FeatureExtractorInceptionV3):  # type: ignore[misc]
        repro_verified = True

        def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
            path = kwargs.pop("feature_extractor_weights_path", None)
            if path is not None:  # None: torch-fidelity's own download from its fixed URL
                buf = io.BytesIO()
                torch.save(load_inception_state(Path(path)), buf)  # tensors only, written by us
                buf.seek(0)
                path = buf
            super().__init__(name, features_list, feature_extractor_weights_path=path, **kwargs)

    FEATURE_EXTRACTORS_REGISTRY[FEATURE_EXTRACTOR] = VerifiedInceptionV3
    return FEATURE_EXTRACTOR


def checked_kwargs(**kw: Any) -> dict[str, Any]:
    """Refuse options torch-fidelity does not know instead of letting it ignore them."""
    from torch_fidelity.defaults import DEFAULTS

    unknown = sorted(set(kw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"torch-fidelity does not know the option(s) {unknown}; it would ignore them")
    return kw


def cache_name(*parts: Any) -> str:
    """A file-name-safe feature-cache name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts if p != ""))


def content_hash(x: torch.Tensor, n: int = 16) -> str:
    """SHA-256 of a tensor's bytes (its shape and dtype included)."""
    x = x.detach().cpu().contiguous()
    h = hashlib.sha256(repr((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()[:n]


@contextlib.contextmanager
def _on(device: torch.device | str) -> Iterator[bool]:
    """Yields torch-fidelity's ``cuda`` flag, with the right CUDA device current."""
    dev = torch.device(device)
    if dev.type == "cuda":
        with torch.cuda.device(dev.index if dev.index is not None else torch.cuda.current_device()):
            yield True
    else:
        yield False


def calculate(
    input1: torch.utils.data.Dataset,
    input2: torch.utils.data.Dataset | None,
    *,
    feature_extractor: str,
    weights: Path,
    input1_cache_name: str | None,
    input2_cache_name: str | None,
    cache_root: Path,
    settings: dict[str, Any],
    device: torch.device | str,
    **flags: Any,
) -> dict[str, float]:
    """One ``torch_fidelity.calculate_metrics`` call with checked options."""
    import torch_fidelity

    cache = bool(settings.get("cache", True))
    with _on(device) as cuda:
        kw = checked_kwargs(
            input1=input1,
            input2=input2,
            cuda=cuda,
            batch_size=int(settings.get("batch_size", 500)),
            feature_extractor=feature_extractor,
            feature_extractor_weights_path=str(weights),
            cache=cache,
            cache_root=str(cache_root),
            input1_cache_name=input1_cache_name if cache else None,
            input2_cache_name=input2_cache_name if cache else None,
            rng_seed=RNG_SEED,
            save_cpu_ram=True,  # no DataLoader worker processes for in-memory tensors
            samples_find_deep=False,
            verbose=False,
            **flags,
        )
        return dict(torch_fidelity.calculate_metrics(**kw))


def compute(calls: list[Call], samples: torch.Tensor, ctx: EvalContext) -> dict[str, float]:
    """IS / FID / KID / precision-recall with torch-fidelity's Inception-v3."""
    data, settings, run_key, cache_dir, device, protocol = ctx.unpack()
    import torch_fidelity

    if getattr(data, "kind", "image") != "image":
        raise EvaluationError(
            "inception_score / fid / kid / precision_recall need image data; use mmd or mode_weights"
        )
    weights = preflight(tuple(calls), settings)
    assert weights is not None
    whash = sha256_file(weights)
    names = {c.name: dict(c.params) for c in calls}
    split = str(settings.get("reference", "train"))
    ref = data.train if split == "train" else data.test
    if ref is None:
        raise EvaluationError(f"evaluate.reference = {split}: {data.name} has no {split} split")
    n, m = int(samples.shape[0]), int(ref.shape[0])
    binary = any(k in names for k in ("fid", "kid", "precision_recall"))
    flags: dict[str, Any] = {
        "isc": "inception_score" in names,
        "fid": "fid" in names,
        "kid": "kid" in names,
        "prc": "precision_recall" in names,
    }
    isc_splits = int(names.get("inception_score", {}).get("splits", 10))
    if flags["isc"]:
        if n < isc_splits:
            raise EvaluationError(
                f"inception_score with {isc_splits} splits needs at least that many samples"
            )
        flags["isc_splits"] = isc_splits
    kid_size = min(1000, n, m)
    if flags["kid"]:
        if kid_size < 2:
            raise EvaluationError("kid needs at least 2 samples")
        flags.update(kid_subsets=KID_SUBSETS, kid_subset_size=kid_size)
    ds = Uint8Images(samples)
    res = calculate(
        ds,
        Uint8Images(ref) if binary else None,
        feature_extractor=verified_extractor(),
        weights=weights,
        input1_cache_name=None,  # see the module docstring: samples are never cached
        input2_cache_name=cache_name("ref", data.identity, split, f"n{m}", f"w{whash[:12]}"),
        cache_root=cache_dir / "torch-fidelity",
        settings=settings,
        device=device,
        **flags,
    )
    out: dict[str, float] = {}
    if flags["isc"]:
        out["inception_score"] = float(res["inception_score_mean"])
        out["inception_score_std"] = float(res["inception_score_std"])
    if flags["fid"]:
        out["fid"] = float(res["frechet_inception_distance"])
    if flags["kid"]:
        out["kid"] = float(res["kernel_inception_distance_mean"])
        out["kid_std"] = float(res["kernel_inception_distance_std"])
    if flags["prc"]:
        out["precision"] = float(res["precision"])
        out["recall"] = float(res["recall"])
        out["f_score"] = float(res.get("f_score", float("nan")))
    protocol.update(
        samples_hash=content_hash(ds.x),
        feature_extractor=FEATURE_EXTRACTOR,
        inception_weights=str(weights),
        inception_weights_sha256=whash,
        torch_fidelity=str(torch_fidelity.__version__),
        rng_seed=RNG_SEED,
    )
    if flags["isc"]:
        protocol["isc_splits"] = isc_splits
    if flags["kid"]:
        protocol.update(kid_subsets=KID_SUBSETS, kid_subset_size=kid_size)
    return out


def implementation(protocol: dict[str, Any]) -> str:
    return f"torch-fidelity {fidelity_version()} (inception-v3-compat)"
