"""The evaluate stage: IS / FID / KID / precision-recall through torch-fidelity, a domain
classifier's FID and Inception-style score for small datasets, and toy 2-D metrics.

Entry points for the runner: :func:`preflight` (before any training or sampling: are the
Inception weights there?) and :func:`evaluate`. See docs/evaluation.md for the protocol.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ncsn_core.errors import ReproError
from ncsn_core.values import Call

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_METRICS = ("inception_score", "fid", "kid", "precision_recall")


class EvaluationError(ReproError):
    """Evaluation cannot run (weights missing offline, bad settings)."""


def _names(metrics: Any) -> list[str]:
    return [m.name if isinstance(m, Call) else str(m) for m in (metrics or ())]


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def find_inception_weights(setting: str) -> Path | None:
    """The Inception weights file: the evaluate block's path, $REPRO_INCEPTION_WEIGHTS, or
    torch's hub cache (where torch-fidelity's own download puts it)."""
    for cand in (setting, os.environ.get("REPRO_INCEPTION_WEIGHTS", ""), str(hub_weights_path())):
        if cand and Path(cand).expanduser().is_file():
            return Path(cand).expanduser()
    return None


def _needed_message(where: str) -> str:
    return (
        f"the Inception weights are needed for {where} but were not found. torch-fidelity uses the file "
        f"{INCEPTION_FILE} (its download URL is torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3). "
        f"On a machine without internet, copy that file here and either set evaluate {{ inception_weights = "
        f'"/path/{INCEPTION_FILE}" }}, or export REPRO_INCEPTION_WEIGHTS=/path/{INCEPTION_FILE}, or put it at '
        f"{hub_weights_path()}. (Small datasets can use fid_domain / is_domain instead, which need no download.)"
    )


def preflight(metrics: Any, settings: dict[str, Any]) -> Path | None:
    """Fail before sampling when Inception-based metrics cannot run. Returns the weights path."""
    wanted = [n for n in _names(metrics) if n in FIDELITY_METRICS]
    if not wanted:
        return None
    setting = settings.get("inception_weights", "") or ""
    if setting and not Path(setting).expanduser().is_file():
        raise EvaluationError(
            f"evaluate.inception_weights = {setting!r}: no such file. " + _needed_message(", ".join(wanted))
        )
    found = find_inception_weights(setting)
    if found is not None:
        return found
    if os.environ.get("REPRO_OFFLINE"):
        raise EvaluationError(
            _needed_message(", ".join(wanted)) + " (REPRO_OFFLINE is set, so no download was tried)"
        )
    # torch-fidelity's usual download, done now rather than after hours of sampling.
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        dst = hub_weights_path()
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(dst), progress=False)
        return dst
    except Exception as e:  # noqa: BLE001 - offline, proxy, disk...
        raise EvaluationError(
            _needed_message(", ".join(wanted)) + f" The download failed: {type(e).__name__}: {e}"
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def evaluate(
    metrics: Any,
    samples: torch.Tensor,
    data: Any,
    *,
    settings: dict[str, Any],
    run_key: str,
    cache_dir: Path,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Compute every requested metric on ``samples``; returns numbers plus a ``protocol``."""
    from ncsn_core import registry
    from ncsn_core.evaluation import domain, fidelity, toy

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    calls = [m if isinstance(m, Call) else Call(str(m)) for m in (metrics or ())]
    out: dict[str, Any] = {}
    protocol: dict[str, Any] = {
        "samples": int(samples.shape[0]),
        "reference": f"{getattr(data, 'name', '?')}:{settings.get('reference', 'train')}",
    }
    fid_calls = [c for c in calls if c.name in FIDELITY_METRICS]
    if fid_calls:
        out.update(fidelity.compute(fid_calls, samples, data, settings, run_key, cache_dir, device, protocol))
    for c in calls:
        if c.name in FIDELITY_METRICS:
            continue
        comp = registry.lookup("metric", c.name)
        params, _ = comp.check_params(dict(c.params))
        kind = getattr(comp.builder, "family", "")
        if kind == "domain":
            out.update(domain.compute(c.name, params, samples, data, settings, cache_dir, device, protocol))
        else:
            out.update(toy.compute(c.name, params, samples, data, settings, protocol))
    out["protocol"] = protocol
    return out
