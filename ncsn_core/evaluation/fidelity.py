"""Inception-based metrics through torch-fidelity, guarding its pitfalls:
only options it knows are passed (it ignores unknown ones silently), each feature extractor
gets its weights file explicitly, cache names carry the run key and the weights hash (its
cache keys ignore both), and images are fed as uint8 3-channel tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ncsn_core.values import Call


class _Uint8Images(torch.utils.data.Dataset):
    """Float images in [0, 1] (or uint8) → uint8 C×H×W with 3 channels, as torch-fidelity wants."""

    def __init__(self, x: torch.Tensor) -> None:
        if x.dtype != torch.uint8:
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.x = x.contiguous()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def checked_kwargs(**kw: Any) -> dict[str, Any]:
    """Refuse options torch-fidelity does not know instead of letting it ignore them."""
    from torch_fidelity.defaults import DEFAULTS

    unknown = sorted(set(kw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"torch-fidelity does not know the option(s) {unknown}")
    return kw


def compute(
    calls: list[Call],
    samples: torch.Tensor,
    data: Any,
    settings: dict[str, Any],
    run_key: str,
    cache_dir: Path,
    device: Any,
    protocol: dict[str, Any],
) -> dict[str, float]:
    import torch_fidelity

    from ncsn_core.evaluation import EvaluationError, preflight, sha256_file

    if getattr(data, "kind", "image") != "image":
        raise EvaluationError(
            "inception_score / fid / kid / precision_recall need image data; use mmd or mode_weights"
        )
    weights = preflight(calls, settings)
    assert weights is not None
    whash = sha256_file(weights)
    names = {c.name: dict(c.params) for c in calls}
    split = settings.get("reference", "train")
    ref = data.train if split == "train" else data.test
    n = int(samples.shape[0])
    kw = checked_kwargs(
        input1=_Uint8Images(samples),
        input2=_Uint8Images(ref),
        cuda=torch.device(device).type == "cuda",
        batch_size=int(settings.get("batch_size", 500)),
        isc="inception_score" in names,
        fid="fid" in names,
        kid="kid" in names,
        prc="precision_recall" in names,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights),
        cache=bool(settings.get("cache", True)),
        cache_root=str(cache_dir / "torch-fidelity"),
        input1_cache_name=None,  # samples are never cached: their name would not change with them
        input2_cache_name=f"ref-{data.identity}-{split}-w{whash[:12]}".replace(":", "_"),
        kid_subset_size=min(1000, n, int(ref.shape[0])),
        verbose=False,
        samples_find_deep=False,
    )
    if "inception_score" in names:
        kw["isc_splits"] = int(names["inception_score"].get("splits", 10))
    res = torch_fidelity.calculate_metrics(**kw)
    out: dict[str, float] = {}
    if "inception_score" in names:
        out["inception_score"] = float(res["inception_score_mean"])
        out["inception_score_std"] = float(res["inception_score_std"])
    if "fid" in names:
        out["fid"] = float(res["frechet_inception_distance"])
    if "kid" in names:
        out["kid"] = float(res["kernel_inception_distance_mean"])
        out["kid_std"] = float(res["kernel_inception_distance_std"])
    if "precision_recall" in names:
        out["precision"] = float(res["precision"])
        out["recall"] = float(res["recall"])
    protocol.update(
        implementation=f"torch-fidelity {torch_fidelity.__version__}",
        inception_weights=str(weights),
        inception_weights_sha256=whash,
        run_key=run_key,
    )
    return out
