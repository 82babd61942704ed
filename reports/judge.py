"""Judge: the statistics of a run's numbers, whether its protocol matches the paper's, the
verdict against a published number, the significance of a difference, and the metric's floor.
Torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncsn_core.registry import lower_is_better
from reports import stats
from reports.read import RunRecord, _num
from reports.tables import fmt_num

DEFAULT_TOLERANCE = 0.10  # relative; the verdict's band when the paper gives no uncertainty


# ----------------------------------------------------------------------------- numbers
def fmt_stat(st: tuple[float, float, int] | None, spread: float | None = None) -> str:
    if st is None:
        return "–"
    sd = st[1] if st[2] > 1 else spread
    return fmt_num(st[0]) + (f" ± {fmt_num(sd, 3)}" if sd is not None else "")


def verdict(value: float, pub: float, err: float | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Within the published uncertainty (|Δ| ≤ its ±), within ``tolerance`` (relative), or off."""
    delta = value - pub
    if err is not None and err > 0 and abs(delta) <= err:
        return "within published uncertainty"
    if abs(delta) <= tolerance * abs(pub):
        return f"within {tolerance:.0%}"
    return "off"


def _published_value(pv: Any) -> tuple[float | None, float | None]:
    if isinstance(pv, dict):
        v, e = _num(pv.get("value")), _num(pv.get("error"))
    else:
        v, e = _num(pv), None
    return v, e


def _arrow(metric: str) -> str:
    return "↓" if lower_is_better(metric) else "↑"


def _spread(r: RunRecord, metric: str) -> float | None:
    st = r.stat(metric)
    if st is None:
        return None
    return st[1] if st[2] > 1 else r.within_run_std(metric)


def compare(a: RunRecord, b: RunRecord, metric: str, alpha: float = stats.ALPHA) -> stats.Comparison:
    """b against a on one metric, by a test that counts seeds (:mod:`reports.stats`): paired t
    when every seed of both records the same initial weights as one of the other's, else
    Welch's t; one seed each: a bootstrap over samples when both record per-sample values, else
    the bootstrap z-test when both record the evaluation's bootstrap sd (``<metric>_boot_sd``)."""
    va, vb = a.seed_values(metric), b.seed_values(metric)
    if len(va) == 1 and len(vb) == 1:
        xa, xb = a.sample_values(metric), b.sample_values(metric)
        if len(xa) > 1 and len(xb) > 1:
            return stats.bootstrap_test(xa, xb, alpha)
        sa, sb = a.boot_sd(metric), b.boot_sd(metric)
        if sa is not None and sb is not None:
            return stats.z_test(va[0][0], sa, vb[0][0], sb, alpha, (_samples(a), _samples(b)))
        return stats.Comparison(
            "one seed each: significance unknown (no per-sample values or bootstrap sd)",
            n=(1, 1),
            alpha=alpha,
        )
    return stats.seed_test(
        [v for v, _ in va], [v for v, _ in vb], alpha, [h for _, h in va], [h for _, h in vb]
    )


def _samples(r: RunRecord) -> int:
    """The run's one recorded sample count (the protocol's ``samples``), else 0."""
    n = {_int(v) for v in _values(r, "samples")}
    return (next(iter(n)) or 0) if len(n) == 1 else 0


def significance(a: RunRecord, b: RunRecord, metric: str, alpha: float = stats.ALPHA) -> str:
    """Whether b's mean differs from a's at level ``alpha``, with the p-value (or interval), the
    test and n: "significant at 0.05 (p = 0.024, Welch's t, n = 2 vs 2)"."""
    return compare(a, b, metric, alpha).text


# ----------------------------------------------------------------------------- protocols
FID_LIKE = ("fid", "fid_domain", "kid")
INCEPTION_METRICS = ("fid", "inception_score", "kid", "precision", "recall", "f_score")
SAMPLES_NOTE = "FID from 1,000 samples reads ≈39 for a model whose 50k FID is 10.87 (ermongroup/ncsnv2#8)"
CHECKPOINT_NOTE = "moves FID by ~0.4 (yang-song/score_sde_pytorch#18)"


def _values(r: RunRecord, *keys: str) -> list[Any]:
    out: list[Any] = []
    for s in r.complete_seeds:
        v: Any = s.protocol
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None and v not in out:
            out.append(v)
    return out


def _int(v: Any) -> int | None:
    x = _num(v)
    return int(x) if x is not None else None


def _checkpoint_text(c: Any) -> str:
    return {"best_fid": "best by FID", "last": "last"}.get(str(c), f"step {c}")


def protocol_reasons(pub: dict[str, Any], r: RunRecord, metric: str) -> list[str]:
    """Why ``r``'s numbers are not comparable with the published ones (empty: comparable)."""
    want = pub.get("protocol") if isinstance(pub.get("protocol"), dict) else {}
    reasons: list[str] = []
    if not want or not r.complete_seeds:
        return reasons
    n_pub = _int(want.get("samples"))
    if n_pub is not None:
        for n in (_int(v) for v in _values(r, "samples")):
            if n is not None and n != n_pub:
                text = f"{n:,} samples vs the paper's {n_pub:,}"
                if metric in FID_LIKE and n < n_pub:
                    text += f": {SAMPLES_NOTE}"
                reasons.append(text)
    ref = want.get("reference")
    if ref:
        got = [str(v) for v in _values(r, "reference_split")] or [
            str(v).rsplit(":", 1)[-1] for v in _values(r, "reference")
        ]
        for g in got:
            if g != str(ref):
                reasons.append(f"reference: the {g} split vs the paper's {ref} split")
    ck = want.get("checkpoint")
    if ck is not None and not r.released:
        mine = r.checkpoint
        theirs = _checkpoint_text(ck)
        # the papers' best_fid is a select block by FID with sample.checkpoint = best
        if ck == "best_fid" and r.selected_by == "fid":
            mine = theirs
        if mine != theirs:
            text = f"checkpoint: {mine} vs {theirs}"
            if metric in FID_LIKE and "best by FID" in (mine, theirs):
                text += f": {CHECKPOINT_NOTE}"
            reasons.append(text)
    it = _int(want.get("iterations"))
    if it is not None and not r.released:
        for i in sorted({s.iterations for s in r.complete_seeds if s.iterations is not None}):
            if i != it:
                reasons.append(f"{i:,} training iterations vs the paper's {it:,}")
    w = want.get("inception_weights")
    if w and metric in INCEPTION_METRICS:
        for path, sha in zip(
            _values(r, "inception_weights") or [""], _values(r, "inception_weights_sha256") or [""]
        ):
            if str(w) not in str(path) and not str(sha).startswith(str(w)):
                reasons.append(f"Inception weights: {Path(str(path)).name or sha[:12]} vs the paper's {w}")
    return reasons


def protocol_text(r: RunRecord, metric: str) -> str:
    """The run's evaluation protocol in one cell: samples · reference · checkpoint · iterations."""
    if not r.complete_seeds:
        return "–"
    parts = []
    n = [str(v) for v in _values(r, "samples")]
    if n:
        parts.append(" / ".join(n) + " samples")
    ref = [str(v) for v in _values(r, "reference")]
    if ref:
        parts.append("ref " + " / ".join(ref))
    parts.append(r.checkpoint)
    iters = sorted({s.iterations for s in r.complete_seeds if s.iterations is not None})
    if iters and not r.released:
        parts.append(" / ".join(f"{i:,}" for i in iters) + " it")
    key = (
        ("domain_classifier", "sha256")
        if metric in ("fid_domain", "is_domain")
        else ("inception_weights_sha256",)
    )
    w = [str(v)[:12] for v in _values(r, *key)]
    if w:
        parts.append(("classifier " if len(key) == 2 else "weights ") + " / ".join(w))
    return " · ".join(parts)


def floor_stat(r: RunRecord, metric: str) -> tuple[float, float | None, int] | None:
    """The metric's floor as mean, standard deviation and number of draws: the same metric for
    as many real images as the run has samples (``domain_floor``: what a perfect model scores at
    this sample count; FID and KID are biased upwards at small counts; a number, one draw, or a
    list, one value per draw of real images), else the domain classifier's whole-split value.
    The evaluation's own summary (``<metric>_floor_mean``, ``_floor_sd``, ``_floor_n`` in
    metrics.json) comes first; the protocol's ``domain_floor`` is the source of older runs."""
    recorded = r.recorded_floor(metric)
    if recorded is not None:
        return recorded
    draws: list[float] = []
    for x in _values(r, "domain_floor", metric):
        draws += [v for v in (_num(y) for y in (x if isinstance(x, list) else [x])) if v is not None]
    if not draws:
        key = {"fid_domain": "floor_fid_domain_test_vs_train", "is_domain": "is_domain_test_split"}.get(
            metric
        )
        if key is not None:
            draws = [v for v in (_num(x) for x in _values(r, "domain_classifier", key)) if v is not None]
    return stats.mean_sd(draws)


def floor_text(r: RunRecord, metric: str) -> str | None:
    """The floor in one cell: "7.2 ± 0.31 (5 draws of real images at the run's sample count)",
    "0.08 (real test vs train split)", or None without one."""
    st = floor_stat(r, metric)
    if st is None:
        return None
    mean, sd, n = st
    matched = r.recorded_floor(metric) is not None or any(
        isinstance(x, dict) and metric in x
        for x in (s.protocol.get("domain_floor") for s in r.complete_seeds)
    )
    text = fmt_num(mean) + (f" ± {fmt_num(sd, 3)}" if sd is not None else "")
    where = "real images at the run's sample count" if matched else "real test vs train split"
    return text + (f" ({n} draws of {where})" if n > 1 else f" ({where})")


def floor_of(r: RunRecord, metric: str) -> float | None:
    """The floor's mean (:func:`floor_stat`), or None without one."""
    st = floor_stat(r, metric)
    return st[0] if st is not None else None


# ----------------------------------------------------------------------------- run vs run
def _metric_backend(r: RunRecord, metric: str) -> list[str]:
    """What computed the metric: the domain classifier's hash for domain metrics, else the
    implementation and the Inception weights' hash."""
    if metric.endswith("_domain"):
        return [str(v)[:12] for v in _values(r, "domain_classifier", "sha256")]
    out = [str(v) for v in _values(r, "implementation")]
    if metric in INCEPTION_METRICS:
        out += [str(v)[:12] for v in _values(r, "inception_weights_sha256")]
    return out


def _reference(r: RunRecord) -> list[str]:
    return [str(v) for v in _values(r, "reference")] or [str(v) for v in _values(r, "reference_split")]


def run_protocol_reasons(a: RunRecord, b: RunRecord, metric: str) -> list[str]:
    """Why two runs' values of ``metric`` are not comparable (empty: comparable): a different
    sample count, reference set, checkpoint choice or metric backend (the classifier or the
    Inception weights and the code that computed it). The same rule as against a paper."""
    if not a.complete_seeds or not b.complete_seeds:
        return []
    reasons: list[str] = []
    na = sorted({n for n in (_int(v) for v in _values(a, "samples")) if n is not None})
    nb = sorted({n for n in (_int(v) for v in _values(b, "samples")) if n is not None})
    if na and nb and na != nb:
        text = f"{' / '.join(f'{n:,}' for n in nb)} samples vs {' / '.join(f'{n:,}' for n in na)}"
        if metric in FID_LIKE or metric.startswith(("fid", "kid")):
            text += " (FID and KID are biased upwards at small sample counts)"
        reasons.append(text)
    ra, rb = _reference(a), _reference(b)
    if ra and rb and sorted(ra) != sorted(rb):
        reasons.append(f"reference {' / '.join(rb)} vs {' / '.join(ra)}")
    if a.checkpoint != b.checkpoint:
        reasons.append(f"checkpoint {b.checkpoint} vs {a.checkpoint}")
    ba, bb = _metric_backend(a, metric), _metric_backend(b, metric)
    if ba and bb and sorted(ba) != sorted(bb):
        reasons.append(f"metric backend {' / '.join(bb)} vs {' / '.join(ba)}")
    return reasons


def compare_runs(a: RunRecord, b: RunRecord, metric: str, alpha: float = stats.ALPHA) -> stats.Comparison:
    """:func:`compare`, unless the two runs' evaluation protocols differ: then the comparison's
    verdict is "not comparable: <reason>" and no test runs."""
    reasons = run_protocol_reasons(a, b, metric)
    if reasons:
        return stats.Comparison("not comparable: " + "; ".join(reasons), alpha=alpha)
    return compare(a, b, metric, alpha)
