"""NCSNv2's techniques as computations (Song & Ermon 2020; the poster's Techniques 1, 2, 4).

- Technique 1: σ₁ = the maximum Euclidean distance between pairs of training points, exact,
  in chunk×chunk float64 blocks (never an N×N matrix), cached on disk by dataset identity.
- Technique 2: a geometric ladder whose ratio γ > 1 solves
  Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) = C. The poster says C ≈ 0.5. The official configs
  (CIFAR-10 L = 232, CelebA 500, church 788, bedroom 1086, FFHQ 2311; σ_L = 0.01) all come out
  of L = ⌊1 + ln(σ₁/σ_L)/ln γ⌋ for any C in [0.566966, 0.567362] (so C = 0.567); rounding
  instead needs C in [0.566637, 0.566913], and ⌈1 + ln(σ₁/σ_L)/ln γ⌉ fits no C.
- Technique 4 / Proposition 3: for Gaussian data and T Langevin steps per level,
  s_T²/σ_i² = (1 − ε/σ_L²)^{2T}(γ² − 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)) + 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²),
  for NCSNv2's update x + ε_i·s + √(2ε_i)·z with ε_i = ε σ_i²/σ_L² (the poster writes σ_N for
  the smallest level there); that ε is the official ``step_lr``. Our ``annealed_langevin``
  follows NCSN's Alg. 1 (x + α/2·s + √α·z), so its ``step_size`` is 2ε.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from ncsn_core import io as atomic
from ncsn_core.data_source import require_spread
from ncsn_core.params import AutoContext, AutoValue

# C of Technique 2 that reproduces every official number of levels (the poster says ≈ 0.5).
OFFICIAL_C = 0.567
POSTER_C = 0.5


# ----------------------------------------------------------------------------- Technique 1
def max_pairwise_distance(
    x: torch.Tensor, chunk: int = 2048, subsample: int | None = None, generator: torch.Generator | None = None
) -> float:
    """Exact max ‖xᵢ − xⱼ‖ over all pairs (Technique 1), in chunk×chunk blocks.

    Rows are flattened and centred (distances don't change; the Gram formula loses less).
    Each block's squared distances ‖a‖² + ‖b‖² − 2a·b come from one float32 matrix product
    (the cost: 60,000 Fashion-MNIST images take ~1 min on 2 CPU cores instead of ~4 in
    float64), and the float32 error is bounded: |error| ≤ tol = 8·γ_{D+4}·R², R the largest
    centred norm, γ_k = k·u/(1 − k·u), u = 2⁻²⁴ (Higham's dot-product bound, doubled). Every
    pair whose float32 value is within tol of the float32 maximum is kept and its distance
    recomputed in float64 from the rows; the true maximiser is always among them, so the
    result is the float64 maximum. Memory is O(chunk² + chunk·D) beyond x and its centred
    float32 copy. ``subsample``: a random subset of that many rows (a lower bound of the full
    maximum).
    """
    x = x.reshape(x.shape[0], -1)
    if subsample is not None and 0 < subsample < x.shape[0]:
        x = x[torch.randperm(x.shape[0], generator=generator)[:subsample].to(x.device)]
    n, dim = x.shape
    if n < 2:
        return 0.0
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    mean = torch.zeros(dim, dtype=torch.float64, device=x.device)
    for i in range(0, n, chunk):
        mean += x[i : i + chunk].double().sum(0)
    mean /= n
    xc = torch.cat([(x[i : i + chunk].double() - mean).float() for i in range(0, n, chunk)])
    sq = xc.double().square().sum(1)  # exact enough: float64 of the float32 rows
    u = 2.0**-24
    k = dim + 4
    tol = 8.0 * (k * u / (1.0 - k * u)) * float(sq.max())
    sq32 = sq.float()
    best = torch.zeros((), dtype=torch.float64, device=x.device)  # from blocks done in float64
    best32 = float("-inf")
    cand_i: list[torch.Tensor] = []
    cand_j: list[torch.Tensor] = []
    for i in range(0, n, chunk):
        a = xc[i : i + chunk]
        for j in range(i, n, chunk):  # upper triangle of blocks: d(a, b) = d(b, a)
            b = xc[j : j + chunk]
            d2 = sq32[i : i + chunk, None] + sq32[None, j : j + chunk] - 2.0 * (a @ b.T)
            block_best = float(d2.max())
            ii, jj = torch.nonzero(d2 >= max(best32, block_best) - tol, as_tuple=True)
            if ii.numel() > 4 * chunk:  # many near-ties (repeated rows): this block in float64
                best = torch.maximum(best, torch.cdist(a.double(), b.double()).max())
                continue
            best32 = max(best32, block_best)
            cand_i.append(ii + i)
            cand_j.append(jj + j)
    if cand_i:
        ci, cj = torch.cat(cand_i), torch.cat(cand_j)
        # earlier blocks kept pairs near a smaller running maximum: filter with the final one
        keep = sq32[ci] + sq32[cj] - 2.0 * (xc[ci] * xc[cj]).sum(1) >= best32 - 2.0 * tol
        ci, cj = ci[keep], cj[keep]
        for s in range(0, ci.numel(), chunk):
            diff = x[ci[s : s + chunk]].double() - x[cj[s : s + chunk]].double()
            best = torch.maximum(best, diff.square().sum(1).max().sqrt())
    return float(best)


def cache_dir_path(cache_dir: Any = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$REPRO_CACHE``, else ``~/.cache/repro``."""
    return Path(cache_dir or os.environ.get("REPRO_CACHE") or Path.home() / ".cache" / "repro").expanduser()


def _cache_file(cache_dir: Any = None) -> Path:
    return cache_dir_path(cache_dir) / "technique1.json"


def cached_max_pairwise_distance(
    x: torch.Tensor, identity: str, cache_dir: Any = None, subsample: int = 0
) -> tuple[float, bool]:
    """Technique 1, cached in ``<cache>/technique1.json`` by dataset identity (and subsample
    size; the subset is fixed by seed 0); returns (distance, was_cached)."""
    key = f"{identity}|sub{subsample}" if subsample else identity
    f = _cache_file(cache_dir)
    try:
        cache = json.loads(f.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    if isinstance(cache.get(key), (int, float)):
        return float(cache[key]), True
    d = max_pairwise_distance(x, subsample=subsample or None, generator=torch.Generator().manual_seed(0))
    try:  # re-read just before writing: another process may have added entries meanwhile
        latest = json.loads(f.read_text())
        cache = latest if isinstance(latest, dict) else cache
    except (OSError, ValueError):
        pass
    cache[key] = d
    try:
        atomic.write_json(f, cache, indent=1, sort_keys=True)
    except OSError:
        pass  # an unwritable cache only costs the recomputation
    return d, False


# ----------------------------------------------------------------------------- Technique 2
def overlap(gamma: float, D: int) -> float:
    """Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ): Technique 2's left-hand side."""
    from scipy.special import ndtr

    a = math.sqrt(2 * D) * (gamma - 1)
    return float(ndtr(a + 3 * gamma) - ndtr(a - 3 * gamma))


def solve_gamma(D: int, C: float = POSTER_C) -> float:
    """The ratio γ > 1 with overlap(γ, D) = C (Technique 2; the left side decreases in γ when
    √(2D) > 3, from ≈ 0.9973 at γ = 1 towards 0)."""
    from scipy.optimize import brentq

    top = overlap(1.0 + 1e-12, D)
    if not 0 < C < top:
        raise ValueError(f"C = {C} is not reachable for D = {D}: it must lie in (0, {top:.4f})")
    hi = 2.0
    while overlap(hi, D) > C:
        hi *= 2
        if hi > 1e6:
            raise ValueError(
                f"no γ solves the Φ equation for D = {D} and C = {C}: the overlap never falls that low "
                "(it does only when √(2D) > 3, i.e. D ≥ 5)"
            )
    return float(brentq(lambda g: overlap(g, D) - C, 1.0 + 1e-12, hi, xtol=1e-14))


def num_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """L = ⌊1 + ln(σ₁/σ_L)/ln γ⌋: the most levels whose ratio (σ₁/σ_L)^{1/(L−1)} is still ≥ γ
    (the convention that gives every official L with C = 0.567)."""
    if not sigma_max > sigma_min > 0:
        raise ValueError(f"need sigma_max > sigma_min > 0, got {sigma_max:g} and {sigma_min:g}")
    if not gamma > 1:
        raise ValueError(f"the ratio γ must be > 1, got {gamma}")
    return int(math.floor(1 + math.log(sigma_max / sigma_min) / math.log(gamma) + 1e-9))


# ----------------------------------------------------------------------------- Proposition 3, Technique 4
def prop3_ratio(eps: float, gamma: float, sigma_N: float, T: int) -> float:
    """s_T²/σ_i² of Proposition 3, exactly as the poster writes it.

    ``sigma_N`` is the level in the step size ε_i = ε σ_i²/σ_N², i.e. the smallest σ (σ_L in
    Alg. 1's numbering); ε is in NCSNv2's convention (update x + ε_i s + √(2ε_i) z), which is
    the official ``step_lr``. Always > 1: the chain ends wider than σ_i.
    """
    s2 = sigma_N**2
    a = 1 - eps / s2
    b = 2 * eps / (s2 - s2 * a**2)
    return a ** (2 * T) * (gamma**2 - b) + b


def choose_step_size(gamma: float, sigma_min: float, T: int) -> tuple[float, float]:
    """Technique 4: the ε (NCSNv2 convention = official step_lr) making s_T²/σ_i² closest to 1,
    and that ratio. Bounded search over log ε in (σ_L²·e⁻⁴⁰, σ_L²): larger ε over-shoots."""
    from scipy.optimize import minimize_scalar

    if T < 1:
        raise ValueError(f"T (steps per level) must be ≥ 1, got {T}")
    hi = math.log(sigma_min**2 * (1 - 1e-9))
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
    """Monte Carlo of Proposition 3's setting: data N(0, 0) perturbed to q_i = N(0, σ_i²I); the
    chain starts from the previous level's q_{i−1} = N(0, (γσ_i)²I) and runs T steps of
    x + ε_i·∇log q_i(x) + √(2ε_i)·z with ε_i = ε σ_i²/σ_L²; returns Var(x_T)/σ_i²."""
    g = torch.Generator().manual_seed(seed)
    x = gamma * sigma_i * torch.randn(n, D, generator=g, dtype=torch.float64)
    step = eps * sigma_i**2 / sigma_min**2
    for _ in range(T):
        z = torch.randn(n, D, generator=g, dtype=torch.float64)
        x = x + step * (-x / sigma_i**2) + math.sqrt(2 * step) * z
    return float(x.pow(2).mean() / sigma_i**2)


# ----------------------------------------------------------------------------- `auto` resolvers
def auto_sigma_max(ctx: AutoContext) -> AutoValue:
    """Technique 1 for ``noise.sigma_max = auto``."""
    t0 = time.perf_counter()
    data = ctx.data()
    x = data.as_float("train")
    n = x.shape[0]
    sub = int(ctx.params.get("subsample", 0) or 0)
    sub = sub if 0 < sub < n else 0
    d, cached = cached_max_pairwise_distance(x, data.identity, ctx.cache_dir, subsample=sub)
    d = require_spread(d, data)  # identical points: a named error, not "must be > 0"
    how = "exact" if not sub else f"on a random subset of {sub} (seed 0): a lower bound"
    return AutoValue(
        round(d, 6),
        f"Technique 1: max pairwise distance over {sub or n} of {n} training points ({how}"
        + (", cached" if cached else "")
        + ")",
        time.perf_counter() - t0,
    )


def auto_levels(ctx: AutoContext) -> AutoValue:
    """Technique 2 for ``noise.levels = auto`` (needs sigma_max, sigma_min resolved; C = overlap)."""
    t0 = time.perf_counter()
    # Only the data's dimension is needed: from its declared shape, never reading the data.
    D = math.prod(ctx.shape if ctx.shape is not None else ctx.data().shape)
    C = float(ctx.params.get("overlap", POSTER_C))
    g = solve_gamma(D, C)
    smax, smin = float(ctx.params["sigma_max"]), float(ctx.params["sigma_min"])
    L = num_levels(smax, smin, g)
    return AutoValue(
        L,
        f"Technique 2: γ = {g:.6f} solves Φ(√(2D)(γ−1)+3γ) − Φ(√(2D)(γ−1)−3γ) = C = {C:g} for D = {D}; "
        f"L = ⌊1 + ln({smax:g}/{smin:g})/ln γ⌋ (C = 0.5: the poster; 0.567: the official configs)",
        time.perf_counter() - t0,
    )


def auto_step_size(ctx: AutoContext) -> AutoValue:
    """Technique 4 for ``annealed_langevin.step_size = auto``: returns Alg. 1's ε = 2·step_lr."""
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
