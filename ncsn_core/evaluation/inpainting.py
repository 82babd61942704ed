"""The masked-region error of an inpainting run (metric ``inpainting_error``): the samples
against the reference images stage inpainting completed, on the occluded pixels only.

The sample stage saves what the stage used as ``inpainting.pt`` (``layout.INPAINTING``: one
row per reference image, its mask, 1 = known, and ``repeats``: sample j completes row
j // repeats). The runner hands the evaluate backends the sample stage through ``settings``
(:func:`with_sample_stage`): ``sample_stages`` (the stages' names), ``sample_samples`` (the
sample block's count) and ``sample_dir`` (its folder; absent at preflight). The metric reads
``inpainting.pt`` from ``sample_dir``.

``inpainting_mse`` = Σ (1 − m)·(clamp(x, 0, 1) − x_ref)² / Σ (1 − m) over every sample and
channel (known pixels do not count; samples clamped to [0, 1] as the PNGs show them);
``inpainting_psnr`` = 10·log10(1 / mse) (peak 1.0; an exact completion is reported as 100 dB).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ncsn_core import layout
from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.values import Call

PSNR_CAP = 100.0  # dB, reported for a zero error


def with_sample_stage(settings: dict[str, Any], spec: Any, sample_dir: Path | None = None) -> dict[str, Any]:
    """The evaluate block's ``settings`` plus the sample stage a metric may need (above)."""
    s = spec.sample.kwargs() if spec.sample is not None else {}
    out = {
        **settings,
        "sample_stages": tuple(st.name for st in spec.stages),
        "sample_samples": s.get("samples"),
    }
    if sample_dir is not None:
        out["sample_dir"] = sample_dir
    return out


def preflight(calls: list[Call], settings: dict[str, Any]) -> None:
    """Before anything runs: the run has a stage inpainting, and evaluates its own samples."""
    stages = settings.get("sample_stages")
    if stages is not None and "inpainting" not in stages:
        have = ", ".join(stages) or "none"
        raise EvaluationError(
            "metric inpainting_error compares the occluded pixels with the reference images of a "
            f"stage inpainting, but this run's sample block has no inpainting stage (its stages: {have}); "
            "add `stage inpainting { }` to the sample block or remove the metric"
        )
    n, m = settings.get("samples"), settings.get("sample_samples")
    if stages is not None and n is not None and m is not None and n != m:
        raise EvaluationError(
            f"metric inpainting_error evaluates the inpainting stage's own samples (sample.samples = {m}), "
            f"but evaluate.samples = {n}; set evaluate {{ samples = {m} }}"
        )


def masked_error(
    samples: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, repeats: int
) -> tuple[float, float, int]:
    """(MSE, PSNR, occluded values counted) of ``samples`` (N × C × H × W) against row
    j // ``repeats`` of ``reference`` on the pixels where ``mask`` (rows × C × H × W, 1 = known)
    is 0."""
    n = samples.shape[0]
    rows = torch.arange(n) // int(repeats)
    if n == 0 or int(rows[-1]) >= reference.shape[0]:
        raise EvaluationError(
            f"inpainting_error: {n} samples need {int(rows[-1]) + 1 if n else 0} reference images, "
            f"but the sample stage saved {reference.shape[0]}"
        )
    ref, occluded = reference[rows].double(), 1.0 - mask[rows].double()
    x = samples.double().clamp(0, 1)
    count = float(occluded.sum())
    if count == 0:
        raise EvaluationError("inpainting_error: the mask occludes no pixel")
    mse = float((occluded * (x - ref) ** 2).sum() / count)
    psnr = PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else 10 * math.log10(1.0 / mse)
    return mse, psnr, int(count)


def compute(calls: list[Call], samples: torch.Tensor, ctx: EvalContext) -> dict[str, Any]:
    data, settings, run_key, cache_dir, device, protocol = ctx.unpack()
    preflight(calls, settings)
    folder = settings.get("sample_dir")
    path = None if folder is None else Path(folder) / layout.INPAINTING
    if path is None or not path.exists():
        raise EvaluationError(
            f"inpainting_error needs the reference images stage inpainting used ({layout.INPAINTING} "
            f"in the sample stage folder), but {'no sample folder was given' if path is None else f'{path} is missing'}"
        )
    used = torch.load(path, weights_only=True)
    if tuple(samples.shape[1:]) != tuple(used["reference"].shape[1:]):
        raise EvaluationError(
            f"inpainting_error: samples shaped {tuple(samples.shape[1:])}, reference images "
            f"{tuple(used['reference'].shape[1:])}"
        )
    mse, psnr, count = masked_error(samples, used["reference"], used["mask"], int(used["repeats"]))
    protocol["inpainting"] = {
        "reference_images": int(used["reference"].shape[0]),
        "repeats": int(used["repeats"]),
        "occluded_values": count,
    }
    return {"inpainting_mse": mse, "inpainting_psnr": psnr}


def implementation(protocol: dict[str, Any]) -> str:
    return "inpainting_error: MSE/PSNR (peak 1) on the occluded pixels against stage inpainting's references"
