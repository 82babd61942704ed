"""Tests that count seeds: whether two runs' numbers differ, at a stated level, with n shown.

Seeds of two runs are independent unless both record the same initial weights per seed (an
``init_hash``: then the paired t-test over the pairs); independent seeds get Welch's t-test
(unequal variances). Two runs of one seed each get a bootstrap confidence interval of the
difference over samples when both record per-sample values; else, when both record the
evaluation's bootstrap sd of the metric over their samples (``<metric>_boot_sd``), a two-sided
z-test of the difference with sd = √(sd_a² + sd_b²); otherwise their difference is not judged. "Significant" means p < ``alpha`` (default 0.05), nothing looser. scipy is imported on
first use (it takes seconds to import; a report without comparisons never pays it). Torch-free.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

ALPHA = 0.05  # the level "significant" is stated at
RESAMPLES = 2000  # bootstrap resamples
BOOTSTRAP_SEED = 0  # the bootstrap draws the same resamples every time: the report is reproducible

WELCH = "Welch's t"
PAIRED = "paired t"
BOOTSTRAP = "bootstrap over samples"
BOOT_Z = "bootstrap z-test"


def rule(alpha: float = ALPHA) -> str:
    """How the report tests a difference, in one sentence."""
    return (
        "Each difference is tested counting seeds: Welch's t-test, the seeds taken as independent "
        "(the paired t-test where both runs record the same initial weights per seed: init_hash); "
        "one seed each: a bootstrap interval of the difference over samples where both runs record "
        "per-sample values, else a z-test with the evaluation's bootstrap sd of each value "
        f'(bootstrap z-test) where both record one, else not judged. "Significant" only at p < {alpha:g} (an interval '
        "leaving out 0), n shown."
    )


@attrs.frozen
class Comparison:
    """The test of run b against run a on one metric: ``verdict`` is "significant", "not
    significant" or why it is unknown; ``p`` and ``ci`` (of b − a) where a test ran."""

    verdict: str
    test: str = ""  # WELCH, PAIRED, BOOTSTRAP, BOOT_Z, or "" when none ran
    p: float | None = None
    n: tuple[int, int] = (0, 0)  # seeds (t-tests) or samples (bootstraps; 0: not recorded) of a and b
    ci: tuple[float, float] | None = None
    alpha: float = ALPHA
    pairing: str = ""  # how the seeds were matched, in words

    @property
    def significant(self) -> bool | None:
        return None if not self.test else self.verdict == "significant"

    @property
    def text(self) -> str:
        """One cell: the verdict at its level, then the p-value (or interval), the test and n."""
        if not self.test:
            return self.verdict
        if self.test == BOOTSTRAP:
            assert self.ci is not None
            what = (
                f"{1 - self.alpha:.0%} CI of Δ [{self.ci[0]:.4g}, {self.ci[1]:.4g}], {self.test}, "
                f"n = {self.n[0]:,} vs {self.n[1]:,} samples"
            )
        elif self.test == BOOT_Z:
            n = f", n = {self.n[0]:,} vs {self.n[1]:,} samples" if min(self.n) > 0 else ""
            what = f"p {fmt_p(self.p)}, {self.test}{n}"
        else:
            what = f"p {fmt_p(self.p)}, {self.test}, n = {self.n[0]} vs {self.n[1]}"
        return f"{self.verdict} at {self.alpha:g} ({what})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "test": self.test or None,
            "p": self.p,
            "n": list(self.n),
            "ci": list(self.ci) if self.ci else None,
            "alpha": self.alpha,
            "pairing": self.pairing or None,
            "text": self.text,
        }


def fmt_p(p: float | None) -> str:
    """``= 0.125`` or ``< 0.001`` (to follow "p ")."""
    if p is None or not math.isfinite(p):
        return "= –"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``ps`` (family-wise error at the stated level over all of
    them): the k-th smallest p times (m − k + 1), made monotone, capped at 1; same order as given."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [1.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


def _finite(xs: Sequence[float]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(x)]


def pairs(
    a_init: Sequence[str | None] | None, b_init: Sequence[str | None] | None
) -> tuple[list[tuple[int, int]], str]:
    """Indices (i in a, j in b) of seeds that start from the same initial weights, and the
    pairing in words; no pairs where either run records no ``init_hash`` for every seed."""
    if not a_init or not b_init or any(h is None for h in (*a_init, *b_init)):
        return [], "independent seeds (no initial-weight hash recorded)"
    where = {h: j for j, h in enumerate(b_init)}
    found = [(i, where[h]) for i, h in enumerate(a_init) if h in where]
    if len(found) != len(a_init) or len(found) != len(b_init) or len(set(a_init)) != len(a_init):
        return [], "independent seeds (their initial weights differ)"
    return found, "paired by initial-weight hash"


def seed_test(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = ALPHA,
    a_init: Sequence[str | None] | None = None,
    b_init: Sequence[str | None] | None = None,
) -> Comparison:
    """b's seeds against a's: the paired t-test when every seed of both starts from the same
    initial weights as one of the other's (``*_init``: per-seed hashes, in the order of the
    values), else Welch's t-test. Needs two seeds of each."""
    a_seeds = _with_init(a, a_init)
    b_seeds = _with_init(b, b_init)
    n = (len(a_seeds), len(b_seeds))
    if min(n) == 0:
        return Comparison("–", n=n, alpha=alpha)
    if min(n) < 2:
        why = "one seed each" if n == (1, 1) else f"{n[0]} vs {n[1]} seeds"
        return Comparison(f"{why}: significance unknown (a t-test needs two seeds of each)", n=n, alpha=alpha)
    a, b = [v for v, _ in a_seeds], [v for v, _ in b_seeds]
    matched, pairing = pairs([h for _, h in a_seeds], [h for _, h in b_seeds])
    if matched:
        d = [b[j] - a[i] for i, j in matched]
        test, p = PAIRED, _p_paired(d)
    else:
        test, p = WELCH, _p_welch(a, b)
    verdict = "significant" if p < alpha else "not significant"
    return Comparison(verdict, test, p, n, alpha=alpha, pairing=pairing)


def _with_init(values: Sequence[float], init: Sequence[str | None] | None) -> list[tuple[float, str | None]]:
    """The finite values, each with its seed's initial-weight hash (None: not recorded)."""
    hashes = list(init) if init is not None and len(init) == len(values) else [None] * len(values)
    return [(float(v), h) for v, h in zip(values, hashes) if v is not None and math.isfinite(v)]


def _p_welch(a: list[float], b: list[float]) -> float:
    sa, sb = statistics.variance(a), statistics.variance(b)
    if sa == 0 and sb == 0:  # no spread on either side: any difference is certain
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    from scipy import stats

    return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


def _p_paired(d: list[float]) -> float:
    if statistics.variance(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_1samp(d, 0.0).pvalue)


def sample_ci(x: Sequence[float], alpha: float = ALPHA) -> tuple[float, float] | None:
    """A (1 − alpha) bootstrap confidence interval of the mean of one run's per-sample values."""
    x = _finite(x)
    if len(x) < 2:
        return None
    import numpy as np
    from scipy import stats

    res = stats.bootstrap(
        (np.asarray(x),),
        np.mean,
        confidence_level=1 - alpha,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_test(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """Two runs of one seed each, by their per-sample values: the (1 − alpha) bootstrap interval
    of mean(b) − mean(a); significant when it leaves out 0."""
    a, b = _finite(a), _finite(b)
    n = (len(a), len(b))
    if min(n) < 2:
        return Comparison("one seed each: significance unknown (no per-sample values)", n=n, alpha=alpha)
    import numpy as np
    from scipy import stats

    def diff(x: Any, y: Any, axis: int = -1) -> Any:
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    res = stats.bootstrap(
        (np.asarray(a), np.asarray(b)),
        diff,
        confidence_level=1 - alpha,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    verdict = "not significant" if lo <= 0.0 <= hi else "significant"
    return Comparison(verdict, BOOTSTRAP, None, n, (lo, hi), alpha, "one seed each")


def z_test(
    a: float, sd_a: float, b: float, sd_b: float, alpha: float = ALPHA, n: tuple[int, int] = (0, 0)
) -> Comparison:
    """Two one-seed values, each with the bootstrap sd of the metric over its own samples (the
    evaluation's ``<metric>_boot_sd``): a two-sided z-test of b − a with sd = √(sd_a² + sd_b²),
    p = 2 (1 − Φ(|b − a| / sd)); ``ci`` is b − a ± z_{1−alpha/2} sd. ``n``: the sample counts."""
    vals = (a, sd_a, b, sd_b)
    if any(v is None or not math.isfinite(v) for v in vals) or sd_a < 0 or sd_b < 0:
        return Comparison("one seed each: significance unknown (no bootstrap sd)", n=n, alpha=alpha)
    d, sd = b - a, math.hypot(sd_a, sd_b)
    if sd == 0:
        p = 1.0 if d == 0 else 0.0
        ci = (d, d)
    else:
        p = math.erfc(abs(d) / sd / math.sqrt(2.0))  # = 2 (1 − Φ(|z|))
        half = statistics.NormalDist().inv_cdf(1 - alpha / 2) * sd
        ci = (d - half, d + half)
    verdict = "significant" if p < alpha else "not significant"
    return Comparison(verdict, BOOT_Z, p, n, ci, alpha, "one seed each")


def mean_sd(values: Sequence[float]) -> tuple[float, float | None, int] | None:
    """Mean, sample standard deviation (None for one value) and count of the finite values."""
    x = _finite(values)
    if not x:
        return None
    return statistics.fmean(x), (statistics.stdev(x) if len(x) > 1 else None), len(x)
