"""The evaluate stage: every metric is a registered component whose implementation is its
backend (see :mod:`ncsn_core.declarations.metrics`): torch-fidelity's IS / FID / KID /
precision-recall (:mod:`.fidelity`), a domain classifier's FID and Inception-style score for
small labelled datasets, also through torch-fidelity (:mod:`.domain`), and the 2-D toy
metrics (:mod:`.toy`). A backend module may define ``preflight(calls, settings)`` (run before
any training or sampling) and ``implementation(protocol)`` (its line in the protocol).

Entry points for the runner: :func:`preflight` and :func:`evaluate`. See docs/evaluation.md
for the protocol.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ncsn_core import progress, registry
from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.evaluation.fits import check_fits
from ncsn_core.evaluation.weights import INCEPTION_FILE, find_inception_weights, hub_weights_path
from ncsn_core.values import Call

__all__ = [
    "INCEPTION_FILE",
    "EvaluationError",
    "check_fits",
    "evaluate",
    "find_inception_weights",
    "hub_weights_path",
    "preflight",
]


def _calls(metrics: Any) -> list[Call]:
    return [m if isinstance(m, Call) else Call(str(m)) for m in (metrics or ())]


def _by_backend(calls: list[Call]) -> dict[str, list[Call]]:
    """Calls grouped by their backend, in the order metrics were asked for."""
    groups: dict[str, list[Call]] = {}
    for c in calls:
        groups.setdefault(registry.lookup("metric", c.name).impl, []).append(c)
    return groups


def _module(impl: str) -> Any:
    registry.load_object(impl)  # imports the backend's module
    return sys.modules[impl.partition(":")[0]]


def preflight(metrics: tuple[Call, ...] | None, settings: dict[str, Any], data: Any = None) -> Path | None:
    """Check, before any training or sampling, that the evaluation can run: the metrics fit the
    data (when ``data`` is given) and each backend's own preflight (torch-fidelity's: the
    Inception weights are there or can be downloaded now). Returns the Inception weights file
    when a metric needs it, else ``None``."""
    calls = _calls(metrics)
    if data is not None:
        check_fits([c.name for c in calls], data)
    found = None
    for impl, group in _by_backend(calls).items():
        check = getattr(_module(impl), "preflight", None)
        if check is not None:
            found = check(group, settings) or found
    return found


def evaluate(
    metrics: tuple[Call, ...],
    samples: torch.Tensor,
    data: Any,
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
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    calls = _calls(metrics)
    groups = _by_backend(calls)  # an unknown name fails here, with a did-you-mean
    check_fits([c.name for c in calls], data)
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
    if any(registry.lookup("metric", c.name).facts.needs != "density" for c in calls):
        ref = data.train if split == "train" else data.test
        protocol.update(
            reference=f"{data.name}:{split}",
            reference_split=split,
            reference_size=int(ref.shape[0]) if ref is not None else 0,
        )
    implementations: list[str] = []
    out: dict[str, Any] = {}
    ctx = EvalContext(data, settings, run_key, cache_dir, device, protocol)
    for impl, group in groups.items():
        # Each metric's parameters with their defaults filled in.
        full = [
            Call(
                c.name,
                tuple(sorted(registry.lookup("metric", c.name).check_params(dict(c.params))[0].items())),
            )
            for c in group
        ]
        needs_ref = any(registry.lookup("metric", c.name).facts.needs != "density" for c in group)
        progress.note(
            f"evaluate: computing {', '.join(c.name for c in group)} on {int(samples.shape[0])} samples"
            + (f" against {data.name}:{split}" if needs_ref else "")
        )
        out.update(registry.load_object(impl)(full, samples, ctx))
        describe = getattr(_module(impl), "implementation", None)
        if describe is not None:
            implementations.append(describe(protocol))
    protocol["implementation"] = "; ".join(implementations) or "none"
    out["protocol"] = protocol
    return out
