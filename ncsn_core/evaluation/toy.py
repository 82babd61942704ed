"""Metrics for 2-D toy data: mode weights, MMD and sliced Wasserstein against exact samples
of the mixture (drawn with a fixed seed, as many as there are samples)."""

from __future__ import annotations

from typing import Any

import torch

from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.values import Call

REFERENCE_SEED = 12345
MMD_MAX = 2000  # MMD is quadratic in memory: at most this many points of each set (recorded)


def mode_weights(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose nearest mixture mean is each component's (NCSN Fig. 3)."""
    d = torch.cdist(x.double(), means.double())
    k = d.argmin(1)
    return torch.bincount(k, minlength=means.shape[0]).double() / x.shape[0]


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.0) -> float:
    """Unbiased MMD² with an RBF kernel; bandwidth 0 → the median heuristic on the pooled data."""
    x, y = x.double(), y.double()
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z) ** 2
    if bandwidth <= 0:
        bandwidth = float(d2[d2 > 0].median().sqrt())
    k = torch.exp(-d2 / (2 * bandwidth**2))
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(
        (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """SW₂ = (E_θ W₂²(θᵀx, θᵀy))^½ over random unit directions θ (equal-size sets: sorted pairs)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=0, keepdim=True)
    n = min(x.shape[0], y.shape[0])
    px = (x[:n].double() @ v).sort(0).values
    py = (y[:n].double() @ v).sort(0).values
    return float(((px - py) ** 2).mean().sqrt())


def compute(calls: list[Call], samples: torch.Tensor, ctx: EvalContext) -> dict[str, float]:
    """The toy metrics of ``calls`` against exact samples of the mixture."""
    data, settings, run_key, cache_dir, device, protocol = ctx.unpack()
    out: dict[str, float] = {}
    for c in calls:
        out.update(_one(c.name, dict(c.params), samples, data, protocol))
    protocol.setdefault("reference", protocol["toy_reference"])
    return out


def implementation(protocol: dict[str, Any]) -> str:
    return "repro toy metrics (exact mixture samples)"


def _one(
    name: str, params: dict[str, Any], samples: torch.Tensor, data: Any, protocol: dict[str, Any]
) -> dict[str, float]:
    """One toy metric; ``mode_weight_k`` is the fraction nearest mean k (k = 1 is (-5, -5) in
    NCSN's mixture), ``mode_weight_error`` the largest deviation from the true weights."""
    mix = getattr(data, "mixture", None)
    if mix is None:
        raise EvaluationError(f"metric {name} needs toy data with a known density (mixture2d)")
    x = samples.reshape(samples.shape[0], -1).cpu()
    if not torch.isfinite(x).all():
        raise EvaluationError(f"metric {name}: the samples contain non-finite values")
    ref = mix.sample(x.shape[0], torch.Generator().manual_seed(REFERENCE_SEED))
    protocol.setdefault("toy_reference", f"{x.shape[0]} exact samples of the mixture (seed {REFERENCE_SEED})")
    if name == "mode_weights":
        w = mode_weights(x, mix.means)
        out = {f"mode_weight_{k + 1}": float(v) for k, v in enumerate(w)}
        out["mode_weight_error"] = float((w - mix.weights.double()).abs().max())
        protocol["mode_means"] = [[float(c) for c in m] for m in mix.means]
        protocol["mode_weights_true"] = [float(v) for v in mix.weights]
        return out
    if name == "mmd":
        k = min(x.shape[0], MMD_MAX)
        bw = float(params.get("bandwidth", 0.0))
        protocol["mmd_points"] = k
        protocol["mmd_bandwidth"] = bw if bw > 0 else "median heuristic"
        return {"mmd": mmd_rbf(x[:k], ref[:k], bw)}
    if name == "sliced_wasserstein":
        p = int(params.get("projections", 256))
        protocol["sliced_wasserstein_projections"] = p
        return {"sliced_wasserstein": sliced_wasserstein(x, ref, p)}
    raise EvaluationError(f"unknown toy metric {name}")  # pragma: no cover
