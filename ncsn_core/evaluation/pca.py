"""``fid_pixel_pca``: a classifier-free Fréchet distance, on the top ``components`` principal
components of the pixels (the PCA fitted on the training split, pixels in [0, 1]).

Why: FID (domain) lives in the features of a classifier trained for a few epochs; when it
disagrees with the eye, or two methods' gap looks too large, this metric tells whether the
classifier is the cause (issue 24: the order of NCSN and NCSNv2 held, the 2.8× gap shrank to
1.3×). It sees low-frequency structure and contrast, not class identity.

Like the domain metrics it records its matched floor as mean ± sd over
:data:`~.floors.FLOOR_DRAWS` draws of n real images of the other split, and a bootstrap
interval over the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ncsn_core.evaluation import floors
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.values import Call

_BASES: dict[tuple[str, int], torch.Tensor] = {}  # (data identity, k) → D×k basis, per process


def _flat(x: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images → N×D float64 in [0, 1]."""
    x = x.reshape(x.shape[0], -1)
    return x.double() / 255.0 if x.dtype == torch.uint8 else x.double()


def basis(train: torch.Tensor, identity: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the top-k principal directions (D×k, by decreasing variance) of the training
    pixels; deterministic (eigh of the D×D covariance), cached per process."""
    key = (identity, k)
    if key not in _BASES:
        x = _flat(train)
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / max(x.shape[0] - 1, 1)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        top = vecs[:, torch.argsort(vals, descending=True)[: min(k, vecs.shape[1])]]
        # Fix each direction's sign (eigh's is arbitrary): its largest entry positive.
        top = top * torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))
        _BASES[key] = torch.cat([mean[None], top.T])
    stacked = _BASES[key]
    return stacked[0], stacked[1:].T


def project(x: torch.Tensor, mean: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    return (_flat(x) - mean) @ dirs


def compute(calls: list[Call], samples: torch.Tensor, ctx: EvalContext) -> dict[str, Any]:
    data, settings, _run_key, _cache, _device, protocol = ctx.unpack()
    params = dict(calls[0].params)
    k = int(params.get("components", 64))
    split = str(settings.get("reference", "train"))
    ref = data.train if split == "train" else data.test
    other_split = "test" if split == "train" else "train"
    other = data.test if split == "train" else data.train
    mean, dirs = basis(data.train, data.identity, k)
    ref_stats = floors.gaussian_stats(project(ref, mean, dirs))
    z = project(samples, mean, dirs)
    n = int(samples.shape[0])
    out: dict[str, Any] = {"fid_pixel_pca": floors.fid_features(z, ref_stats)}
    if n >= 2:
        ci = floors.bootstrap(lambda i: floors.fid_features(z[i], ref_stats), n, out["fid_pixel_pca"])
        out.update({f"fid_pixel_pca_{key}": v for key, v in ci.items()})
    info: dict[str, Any] = {
        "components": int(dirs.shape[1]),
        "fitted_on": f"{data.name}:train ({int(data.train.shape[0])} images, pixels in [0, 1])",
        "bootstrap": f"{floors.BOOTSTRAP} resamples of the {n} samples (seed {floors.BOOTSTRAP_SEED}), value ± 1.96 sd",
    }
    if other is not None and other.shape[0] >= n:
        zo = project(other, mean, dirs)
        draws = [
            {
                "fid_pixel_pca": floors.fid_features(
                    zo[floors.subset(zo.shape[0], n, floors.draw_seed(d))], ref_stats
                )
            }
            for d in range(floors.FLOOR_DRAWS)
        ]
        out.update(floors.summarize(draws))
        info["floor"] = {
            "what": f"{floors.FLOOR_DRAWS} draws of {n} real {other_split} images against the {split} split",
            "fid_pixel_pca": draws[0]["fid_pixel_pca"],  # draw 0 (seed 0), as domain_floor
            "values": [d["fid_pixel_pca"] for d in draws],
        }
    protocol["fid_pixel_pca"] = info
    return out


def implementation(protocol: dict[str, Any]) -> str:
    k = protocol.get("fid_pixel_pca", {}).get("components", "?")
    return f"repro pixel PCA (top {k} components of the training pixels, numpy {np.__version__})"
