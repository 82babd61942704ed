"""NCSNv2's techniques as computations (Song & Ermon 2020; the poster's Techniques 1, 2, 4).

- Technique 1: σ₁ = the maximum Euclidean distance between pairs of training points.
- Technique 2: a geometric ladder whose ratio γ solves
  Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) = C. The poster says C ≈ 0.5; the official configs
  (CIFAR-10 L = 232, CelebA 500, church 788, bedroom 1086, FFHQ 2311) all come out of
  C = 0.567 with L = ⌊1 + ln(σ₁/σ_L)/ln γ⌋, which reproduces every one of them.
- Technique 4 / Proposition 3: for Gaussian data and T Langevin steps per level,
  s_T²/σ_i² = (1 − ε/σ_L²)^{2T}(γ² − 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)) + 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²),
  with NCSNv2's update x + ε_i·s + √(2ε_i)·z, ε_i = ε σ_i²/σ_L² (its ε is the official
  step_lr). Our `annealed_langevin` uses NCSN Alg. 1 (α/2·s + √α·z), so its step_size is 2ε.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from ncsn_core.registry import AutoValue

OFFICIAL_C = 0.567


# ----------------------------------------------------------------------------- Technique 1
def max_pairwise_distance(
    x: torch.Tensor, chunk: int = 1024, subsample: int | None = None, generator: torch.Generator | None = None
) -> float:
    """Exact max ‖xᵢ − xⱼ‖ over all pairs, in chunk×chunk blocks (never an N×N matrix)."""
    x = x.reshape(x.shape[0], -1).double()
    if subsample is not None and subsample < x.shape[0]:
        x = x[torch.randperm(x.shape[0], generator=generator)[:subsample]]
    best = 0.0
    n = x.shape[0]
    for i in range(0, n, chunk):
        a = x[i : i + chunk]
        for j in range(i, n, chunk):
            d = torch.cdist(a, x[j : j + chunk])
            best = max(best, float(d.max()))
    return best


def _cache_file(cache_dir: Any = None) -> Path:
    root = Path(cache_dir or os.environ.get("REPRO_CACHE") or Path.home() / ".cache" / "repro")
    return root / "technique1.json"


def cached_max_pairwise_distance(x: torch.Tensor, identity: str, cache_dir: Any = None) -> tuple[float, bool]:
    """Technique 1, cached on disk by dataset identity; returns (distance, was_cached)."""
    f = _cache_file(cache_dir)
    try:
        cache = json.loads(f.read_text())
    except (OSError, ValueError):
        cache = {}
    if identity in cache:
        return float(cache[identity]), True
    d = max_pairwise_distance(x)
    cache[identity] = d
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(f)
    except OSError:
        pass
    return d, False


# ----------------------------------------------------------------------------- Technique 2
def overlap(gamma: float, D: int) -> float:
    """Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ)."""
    from scipy.special import ndtr

    a = math.sqrt(2 * D) * (gamma - 1)
    return float(ndtr(a + 3 * gamma) - ndtr(a - 3 * gamma))


def solve_gamma(D: int, C: float = 0.5) -> float:
    """The ratio γ > 1 with overlap(γ, D) = C (the left side decreases in γ)."""
    from scipy.optimize import brentq

    if not 0 < C < overlap(1.0 + 1e-12, D):
        raise ValueError(
            f"C = {C} is not reachable for D = {D}: it must lie in (0, {overlap(1.0 + 1e-12, D):.4f})"
        )
    hi = 2.0
    while overlap(hi, D) > C:
        hi *= 2
        if hi > 1e6:
            raise ValueError(
                f"no γ solves the Φ equation for D = {D} and C = {C}: the overlap never falls that low"
            )
    return float(brentq(lambda g: overlap(g, D) - C, 1.0 + 1e-12, hi, xtol=1e-14))


def num_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """L = ⌊1 + ln(σ₁/σ_L)/ln γ⌋ (the convention that gives every official L)."""
    return int(math.floor(1 + math.log(sigma_max / sigma_min) / math.log(gamma) + 1e-9))


# ----------------------------------------------------------------------------- Proposition 3, Technique 4
def prop3_ratio(eps: float, gamma: float, sigma_min: float, T: int) -> float:
    """s_T²/σ_i² of Proposition 3 (ε in NCSNv2's convention, = the official step_lr)."""
    s2 = sigma_min**2
    a = 1 - eps / s2
    b = 2 * eps / (s2 - s2 * a**2)
    return a ** (2 * T) * (gamma**2 - b) + b


def choose_step_size(gamma: float, sigma_min: float, T: int) -> tuple[float, float]:
    """Technique 4: the ε (NCSNv2 convention) making s_T²/σ_i² closest to 1, and that ratio."""
    from scipy.optimize import minimize_scalar

    hi = math.log(sigma_min**2 * (1 - 1e-9))  # ε < σ_L² keeps the chain contracting
    res = minimize_scalar(
        lambda le: (prop3_ratio(math.exp(le), gamma, sigma_min, T) - 1) ** 2,
        bounds=(math.log(sigma_min**2) - 40, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    eps = math.exp(res.x)
    return eps, prop3_ratio(eps, gamma, sigma_min, T)


def simulate_langevin_gaussian(
    eps: float,
    gamma: float,
    sigma_i: float,
    sigma_min: float,
    T: int,
    n: int = 200_000,
    D: int = 1,
    seed: int = 0,
) -> float:
    """Monte Carlo of Proposition 3's setting: start from N(0, (γσ_i)²), run T steps of
    x + ε_i·s + √(2ε_i)·z on q = N(0, σ_i²), ε_i = ε σ_i²/σ_L²; returns Var(x)/σ_i²."""
    g = torch.Generator().manual_seed(seed)
    x = gamma * sigma_i * torch.randn(n, D, generator=g, dtype=torch.float64)
    step = eps * sigma_i**2 / sigma_min**2
    for _ in range(T):
        x = (
            x
            + step * (-x / sigma_i**2)
            + math.sqrt(2 * step) * torch.randn(n, D, generator=g, dtype=torch.float64)
        )
    return float(x.var() / sigma_i**2)


# ----------------------------------------------------------------------------- `auto` resolvers
def auto_sigma_max(ctx: Any) -> AutoValue:
    t0 = time.perf_counter()
    data = ctx.data()
    x = data.as_float("train")
    sub = int(ctx.params.get("subsample", 0) or 0)
    if sub and sub < x.shape[0]:
        # A lower bound of the true maximum on a fixed random subset (seed 0).
        x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:sub]]
    d, cached = cached_max_pairwise_distance(x, f"{data.identity}|sub{sub}", ctx.cache_dir)
    how = ("cached" if cached else "exact, chunked") + (f", random subset of {x.shape[0]}" if sub else "")
    return AutoValue(
        round(d, 6),
        f"Technique 1: max pairwise distance over {x.shape[0]} training points ({how})",
        time.perf_counter() - t0,
    )


def auto_levels(ctx: Any) -> AutoValue:
    t0 = time.perf_counter()
    data = ctx.data()
    D = math.prod(data.shape)
    C = float(ctx.params.get("overlap", 0.5))
    g = solve_gamma(D, C)
    L = num_levels(float(ctx.params["sigma_max"]), float(ctx.params["sigma_min"]), g)
    return AutoValue(
        L,
        f"Technique 2: γ = {g:.6f} solves Φ(√(2D)(γ−1)+3γ) − Φ(√(2D)(γ−1)−3γ) = C = {C:g} for D = {D}; "
        f"L = ⌊1 + ln(σ₁/σ_L)/ln γ⌋",
        time.perf_counter() - t0,
    )


def auto_step_size(ctx: Any) -> AutoValue:
    t0 = time.perf_counter()
    smax = float(ctx.resolved("noise", "sigma_max"))
    smin = float(ctx.resolved("noise", "sigma_min"))
    L = int(ctx.resolved("noise", "levels"))
    T = int(ctx.params["steps_per_level"])
    if L < 2:
        raise ValueError("Technique 4 needs at least two noise levels")
    gamma = (smax / smin) ** (1 / (L - 1))
    eps_v2, r = choose_step_size(gamma, smin, T)
    return AutoValue(
        float(f"{2 * eps_v2:.4g}"),
        f"Technique 4: s_T²/σ_i² = {r:.4f} (Proposition 3, γ = {gamma:.5f}, T = {T}); "
        f"NCSNv2/official step_lr = {eps_v2:.4g}, so ε = 2·step_lr in Alg. 1's convention",
        time.perf_counter() - t0,
    )
