"""The evaluate stage: IS / FID / KID / precision-recall through torch-fidelity, a domain
classifier's FID and Inception-style score for small datasets (also through torch-fidelity,
as a registered feature extractor), and 2-D toy metrics.

Entry points for the runner: :func:`preflight` (before any training or sampling: are the
Inception weights there, do the metrics fit the data?) and :func:`evaluate`. See
docs/evaluation.md for the protocol.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from ncsn_core import io as atomic
from ncsn_core.errors import ReproError
from ncsn_core.values import Call

if TYPE_CHECKING:  # pragma: no cover
    from ncsn_core.data import DataSource

# The file torch-fidelity's Inception-v3 ("inception-v3-compat") loads: the basename of
# torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3, which torch.hub stores in
# <hub dir>/checkpoints/ when it downloads it.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_METRICS = ("inception_score", "fid", "kid", "precision_recall")
DOMAIN_METRICS = ("fid_domain", "is_domain")
TOY_METRICS = ("mode_weights", "mmd", "sliced_wasserstein")


class EvaluationError(ReproError):
    """Evaluation cannot run (weights missing offline, metrics that do not fit the data)."""


def _names(metrics: Any) -> list[str]:
    return [m.name if isinstance(m, Call) else str(m) for m in (metrics or ())]


def hub_weights_path() -> Path:
    """Where torch-fidelity's own download puts the Inception weights (torch's hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def find_inception_weights(setting: str = "") -> Path | None:
    """The Inception weights file, looked up in order: the evaluate block's
    ``inception_weights``, ``$REPRO_INCEPTION_WEIGHTS``, torch's hub cache."""
    for cand in (setting, os.environ.get("REPRO_INCEPTION_WEIGHTS", ""), str(hub_weights_path())):
        if cand and Path(cand).expanduser().is_file():
            return Path(cand).expanduser().resolve()
    return None


def weights_help(where: str) -> str:
    """The one message that says which file is needed and where to put it."""
    return (
        f"the Inception-v3 weights are needed for {where} but were not found. torch-fidelity "
        f"{_fidelity_version()} uses the file {INCEPTION_FILE} (it downloads it from its download URL, "
        "torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3). On a machine without internet, copy "
        "that file over and do one of: (1) write evaluate { inception_weights = "
        f'"/path/to/{INCEPTION_FILE}" }} in the experiment, (2) export REPRO_INCEPTION_WEIGHTS=/path/to/'
        f"{INCEPTION_FILE}, or (3) put it at {hub_weights_path()}. See docs/evaluation.md. (Small "
        "datasets with labels can use fid_domain / is_domain instead, which need no download.)"
    )


def _fidelity_version() -> str:
    try:
        import torch_fidelity

        return str(torch_fidelity.__version__)
    except Exception:  # noqa: BLE001 - not installed: the message still helps
        return "(not installed)"


def preflight(
    metrics: tuple[Call, ...] | None, settings: dict[str, Any], data: DataSource | None = None
) -> Path | None:
    """Check, before any training or sampling, that the evaluation can run.

    Returns the Inception weights file when an Inception metric is requested (``None``
    otherwise). Raises :class:`EvaluationError` when the weights are missing and cannot be
    downloaded (always when ``REPRO_OFFLINE`` is set), or, when ``data`` is given, when a
    metric does not fit the data (Inception metrics on points, toy metrics on images, the
    domain classifier without labels).
    """
    names = _names(metrics)
    if data is not None:
        check_fits(names, data)
    wanted = [n for n in names if n in FIDELITY_METRICS]
    if not wanted:
        return None
    where = ", ".join(wanted)
    setting = str(settings.get("inception_weights", "") or "")
    if setting and not Path(setting).expanduser().is_file():
        raise EvaluationError(
            f"evaluate.inception_weights = {setting!r}: no such file; " + weights_help(where)
        )
    found = find_inception_weights(setting)
    if found is not None:
        return found
    if os.environ.get("REPRO_OFFLINE"):
        raise EvaluationError(weights_help(where) + " (REPRO_OFFLINE is set, so no download was tried.)")
    # torch-fidelity's usual download, done now rather than after hours of training and sampling.
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        dst = hub_weights_path()
        atomic.write_with(dst, lambda f: _download(URL_INCEPTION_V3, f))
        return dst
    except Exception as e:  # noqa: BLE001 - offline, proxy, full disk...
        raise EvaluationError(
            weights_help(where) + f" The download failed: {type(e).__name__}: {e}"
        ) from None


def _download(url: str, f: IO[bytes]) -> None:
    """Stream ``url`` into ``f`` (as ``torch.hub.download_url_to_file`` does, without its own
    temporary file: :func:`ncsn_core.io.write_with` provides that)."""
    import shutil
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
    with urllib.request.urlopen(req) as resp:  # noqa: S310 - a fixed https URL
        shutil.copyfileobj(resp, f, 1 << 20)


def check_fits(names: list[str], data: DataSource) -> None:
    """Raise :class:`EvaluationError` when a metric cannot apply to ``data``."""
    kind = getattr(data, "kind", "image")
    dname = getattr(data, "name", "?")
    for n in names:
        if n in FIDELITY_METRICS and kind != "image":
            raise EvaluationError(
                f"metric {n} needs image data, but {dname} is {kind}; use mode_weights, mmd or sliced_wasserstein"
            )
        if n in TOY_METRICS and getattr(data, "mixture", None) is None:
            raise EvaluationError(
                f"metric {n} needs toy data with a known density (mixture2d), but the data is {dname}"
            )
        if n in DOMAIN_METRICS and (kind != "image" or getattr(data, "train_labels", None) is None):
            raise EvaluationError(
                f"metric {n} trains a classifier on the dataset's labels, but {dname} has "
                + ("no labels" if kind == "image" else "no images")
                + "; use fid / inception_score (image data) or the toy metrics (points)"
            )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def evaluate(
    metrics: tuple[Call, ...],
    samples: torch.Tensor,
    data: DataSource,
    *,
    settings: dict[str, Any],
    run_key: str,
    cache_dir: Path,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Compute every requested metric on ``samples``.

    ``samples``: float images in [0, 1] (N×C×H×W, the data's shape) or points (N×d).
    ``settings``: the evaluate block's parameters (reference split, batch size, weights path,
    cache). ``run_key``: the evaluation's hash, recorded in the protocol (the samples' features
    are never cached: the hash is the same for every seed). Returns a flat
    ``{metric: float, metric_std: float, ...}`` plus ``"protocol"``: sample count, reference
    split, implementation and version, weights file and SHA-256, the domain classifier's hash
    and floor, ...
    """
    from ncsn_core import registry
    from ncsn_core.evaluation import domain, fidelity, toy

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    calls = [m if isinstance(m, Call) else Call(str(m)) for m in (metrics or ())]
    names = [c.name for c in calls]
    for n in names:
        registry.lookup("metric", n)  # an unknown name fails here, with a did-you-mean
        if n not in FIDELITY_METRICS + DOMAIN_METRICS + TOY_METRICS:  # pragma: no cover - registry drift
            raise EvaluationError(f"metric {n} is registered but evaluate() does not compute it")
    check_fits(names, data)
    samples = samples.detach().cpu()
    bad = int((~torch.isfinite(samples.reshape(samples.shape[0], -1))).any(1).sum()) if samples.numel() else 0
    if bad:
        raise EvaluationError(
            f"{bad} of {samples.shape[0]} samples contain NaN or infinite values (the sampler diverged); "
            "no metric is computed on them"
        )
    if getattr(data, "kind", "image") == "image" and tuple(samples.shape[1:]) != tuple(data.shape):
        raise EvaluationError(
            f"samples have shape {tuple(samples.shape[1:])} but {data.name} images are {tuple(data.shape)}"
        )
    split = str(settings.get("reference", "train"))
    protocol: dict[str, Any] = {
        "samples": int(samples.shape[0]),
        "samples_requested": settings.get("samples"),
        "data": getattr(data, "identity", "?"),
        "run_key": run_key,
    }
    if any(n not in TOY_METRICS for n in names):
        ref = data.train if split == "train" else data.test
        protocol.update(
            reference=f"{data.name}:{split}",
            reference_split=split,
            reference_size=int(ref.shape[0]) if ref is not None else 0,
        )
    implementations: list[str] = []
    out: dict[str, Any] = {}
    fid_calls = [c for c in calls if c.name in FIDELITY_METRICS]
    if fid_calls:
        out.update(fidelity.compute(fid_calls, samples, data, settings, run_key, cache_dir, device, protocol))
        implementations.append(f"torch-fidelity {_fidelity_version()} (inception-v3-compat)")
    dom_calls = [c for c in calls if c.name in DOMAIN_METRICS]
    if dom_calls:
        out.update(domain.compute(dom_calls, samples, data, settings, run_key, cache_dir, device, protocol))
        implementations.append(
            f"torch-fidelity {_fidelity_version()} (domain classifier {protocol['domain_classifier']['hash']})"
        )
    toy_calls = [c for c in calls if c.name in TOY_METRICS]
    if toy_calls:
        for c in toy_calls:
            params, _ = registry.lookup("metric", c.name).check_params(dict(c.params))
            out.update(toy.compute(c.name, params, samples, data, protocol))
        implementations.append("repro toy metrics (exact mixture samples)")
        protocol.setdefault("reference", protocol["toy_reference"])
    protocol["implementation"] = "; ".join(implementations) or "none"
    out["protocol"] = protocol
    return out
