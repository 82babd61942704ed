"""What a metric's number means at a small sample count: its **floor** as a distribution (the
same metric for ``FLOOR_DRAWS`` independent draws of as many real images as there are samples,
mean ± sd), and a **bootstrap** spread of a Fréchet distance over the samples themselves
(resampled with replacement against a fixed reference; interval = value ± 1.96 sd).

At 128 Fashion-MNIST images one draw of the floor of FID (domain) was 7.24 while 30 draws gave
7.9 ± 2.5 (5.0-14.7): one draw is not the floor. Both numbers are cheap here: the features are
a small classifier's (or a few pixel principal components), so a draw costs one extraction of
n images and one d×d matrix square root.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import numpy as np
import torch

FLOOR_SEED = 0  # draw 0: the single floor the protocol always recorded (old readers use it)
FLOOR_DRAWS = 20  # draws of real images behind <metric>_floor_mean / _floor_sd
BOOTSTRAP = 200  # resamples behind <metric>_boot_sd, _ci_low, _ci_high (± 1.96 sd)
BOOTSTRAP_SEED = 0


def draw_seed(d: int) -> int:
    """The random seed of floor draw ``d`` (draw 0 keeps the historical seed)."""
    return FLOOR_SEED if d == 0 else 1000 + d


def subset(size: int, n: int, seed: int) -> torch.Tensor:
    """A fixed random choice of min(n, size) indices out of range(size)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: min(n, size)]


def summarize(draws: list[dict[str, float]]) -> dict[str, float]:
    """``{k_floor_mean, k_floor_sd, k_floor_n}`` for every key measured in each draw (``*_std``
    keys, a metric's own spread, are left out). sd is the sample standard deviation (n − 1)."""
    out: dict[str, float] = {}
    if not draws:
        return out
    for k in draws[0]:
        if k.endswith("_std"):
            continue
        vals = [float(d[k]) for d in draws if k in d and math.isfinite(float(d[k]))]
        if not vals:
            continue
        out[f"{k}_floor_mean"] = statistics.fmean(vals)
        out[f"{k}_floor_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[f"{k}_floor_n"] = len(vals)
    return out


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (n − 1) of N×d features, in float64."""
    f = features.double().numpy()
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The Fréchet distance between two Gaussians, computed as torch-fidelity computes FID
    (the trace of the matrix square root from the eigenvalues of s1·s2)."""
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_features(features: torch.Tensor, ref: tuple[np.ndarray, np.ndarray]) -> float:
    mu, s = gaussian_stats(features)
    return frechet(mu, s, *ref)


def bootstrap(
    statistic: Callable[[torch.Tensor], float],
    n: int,
    estimate: float,
    resamples: int = BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """A bootstrap over the n samples: ``statistic(indices)`` for ``resamples`` draws of n
    indices with replacement. Returns ``boot_sd`` (their standard deviation: how much the
    number moves with the samples alone) and a normal interval ``estimate ± 1.96 boot_sd``
    (``ci_low``, ``ci_high``). Not the percentile interval: a resample repeats about a third
    of the points, which biases a Fréchet distance upwards (on 100 digits the resamples' FIDs
    all lay above the estimate). The spread is conservative: about twice the sd of independent
    real draws on Fashion-MNIST (docs/evaluation.md; tests/test_eval_floors.py bounds it by 3×)."""
    g = torch.Generator().manual_seed(seed)
    vals = np.array([statistic(torch.randint(0, n, (n,), generator=g)) for _ in range(resamples)])
    sd = float(vals.std(ddof=1))
    return {"ci_low": estimate - 1.96 * sd, "ci_high": estimate + 1.96 * sd, "boot_sd": sd}
