"""The report reads metrics.json the way ncsn_core/evaluation writes it (issue 24's keys): the
floor as ``<k>_floor_mean`` ± ``_floor_sd`` over ``_floor_n`` draws of real images, a one-seed
FID's interval ``<k>_ci_low``–``_ci_high`` and its bootstrap sd ``<k>_boot_sd``. None of these
auxiliary keys is a metric column; two one-seed runs that both record a bootstrap sd are
compared by the bootstrap z-test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from test_reports import blocks, make_run

from reports import stats
from reports.judge import compare, floor_text
from reports.read import _metric_names, collect, is_auxiliary
from reports.reporter import render

SOURCE = (
    "# Quickstart: NCSN on 8x8 digits\n"
    "experiment quickstart_digits { }\n"
    "experiment quickstart_abl extends quickstart_digits { }\n"
)

# metrics.json of a real evaluation: ncsn_core.evaluation.evaluate of fid_domain, is_domain,
# kid_domain, precision_recall_domain, class_coverage and fid_pixel_pca(components = 16) on 64
# held-out digits against the train split (ncsn_core at 7a009b9, the values to 6 digits; its
# protocol's domain_floor draw 0 for fid_domain was 101.3).
REAL = {
    "class_confidence": 0.976308,
    "class_confidence_floor_mean": 0.976614,
    "class_confidence_floor_n": 20,
    "class_confidence_floor_sd": 0.00830453,
    "class_coverage": 1.0,
    "class_coverage_floor_mean": 0.93,
    "class_coverage_floor_n": 20,
    "class_coverage_floor_sd": 0.0801315,
    "class_tv": 0.104,
    "class_tv_floor_mean": 0.130144,
    "class_tv_floor_n": 20,
    "class_tv_floor_sd": 0.0329498,
    "f_score_domain": 0.849148,
    "f_score_domain_floor_mean": 0.92136,
    "f_score_domain_floor_n": 20,
    "f_score_domain_floor_sd": 0.0293051,
    "fid_domain": 149.315,
    "fid_domain_boot_sd": 57.0409,
    "fid_domain_ci_high": 261.115,
    "fid_domain_ci_low": 37.5147,
    "fid_domain_floor_mean": 155.133,
    "fid_domain_floor_n": 20,
    "fid_domain_floor_sd": 44.3298,
    "fid_pixel_pca": 0.479035,
    "fid_pixel_pca_boot_sd": 0.117776,
    "fid_pixel_pca_ci_high": 0.709876,
    "fid_pixel_pca_ci_low": 0.248195,
    "fid_pixel_pca_floor_mean": 0.394629,
    "fid_pixel_pca_floor_n": 20,
    "fid_pixel_pca_floor_sd": 0.081629,
    "is_domain": 4.67702,
    "is_domain_floor_mean": 4.5081,
    "is_domain_floor_n": 20,
    "is_domain_floor_sd": 0.268358,
    "is_domain_std": 0.957537,
    "kid_domain": 100.184,
    "kid_domain_floor_mean": 72.7873,
    "kid_domain_floor_n": 20,
    "kid_domain_floor_sd": 105.622,
    "kid_domain_std": 158.483,
    "precision_domain": 0.953125,
    "precision_domain_floor_mean": 0.928125,
    "precision_domain_floor_n": 20,
    "precision_domain_floor_sd": 0.0239929,
    "recall_domain": 0.765625,
    "recall_domain_floor_mean": 0.916406,
    "recall_domain_floor_n": 20,
    "recall_domain_floor_sd": 0.0507639,
}
METRICS = sorted(
    "fid_domain is_domain kid_domain precision_domain recall_domain f_score_domain "
    "class_coverage class_tv class_confidence fid_pixel_pca".split()
)


def test_the_fixture_has_the_keys_the_evaluation_writes() -> None:
    """The key names above are the ones ncsn_core.evaluation.floors builds (a renamed key in the
    evaluation fails here, not silently in the report)."""
    floors = pytest.importorskip("ncsn_core.evaluation.floors")
    summary = floors.summarize(
        [{m: 1.0 for m in METRICS} | {"is_domain_std": 1.0, "kid_domain_std": 1.0}] * 2
    )
    boot = {
        f"{m}_{k}"
        for m in ("fid_domain", "fid_pixel_pca")
        for k in floors.bootstrap(lambda i: 0.0, 2, 0.0, 2)
    }
    assert set(REAL) == set(METRICS) | set(summary) | boot | {"is_domain_std", "kid_domain_std"}


def _eval_run(root: Path, exp: str, h: str, shift: float, parent: str | None = None) -> Path:
    """A one-seed run whose metrics.json is :data:`REAL` (FIDs moved by ``shift``), with the
    protocol's old single-draw ``domain_floor`` kept as the evaluation keeps it."""
    d = make_run(
        root, exp, h, {0: REAL["fid_domain"]}, paper="NCSN", spec_blocks=blocks(), source=SOURCE,
        metric="fid_domain", samples=64, parent=parent,
    )  # fmt: skip
    m = d / "seed-0" / "eval-def" / "metrics.json"
    doc = json.loads(m.read_text())
    vals = dict(REAL)
    for k in ("fid_domain", "fid_domain_ci_low", "fid_domain_ci_high"):
        vals[k] += shift
    proto = {**doc["protocol"], "domain_classifier": {"sha256": "c" * 64}}
    proto["domain_floor"] = {
        "what": "64 real test images",
        "fid_domain": 101.289,
        "draws": 20,
        "draw_seeds": [0],
    }
    m.write_text(json.dumps({**vals, "seconds": 3.0, "protocol": proto}))
    return d


def test_auxiliary_keys_are_never_metrics(tmp_path: Path) -> None:
    _eval_run(tmp_path, "quickstart_digits", "q1", 0.0)
    recs = collect(tmp_path)
    assert _metric_names(recs) == METRICS
    assert all(is_auxiliary(k) for k in set(REAL) - set(METRICS))
    assert not any(is_auxiliary(m) for m in METRICS)


def _first_table(md: str) -> str:
    """The report's first table ("What was run"): from its header row to the first blank line."""
    after = md[md.index("What was run") :]
    start = after.index("\n|")
    return after[start + 1 : after.index("\n\n", start)]


def test_first_table_shows_floor_mean_sd_the_ci_and_no_auxiliary_column(tmp_path: Path) -> None:
    _eval_run(tmp_path, "quickstart_digits", "q1", 0.0)
    _eval_run(tmp_path, "quickstart_abl", "a1", 200.0, parent="quickstart_digits")
    table = _first_table(render(collect(tmp_path), "md"))
    lines = table.splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    metric_col = [c[2] for c in cells]
    shown = {m.split(" ")[0] for m in metric_col}
    assert shown == set(METRICS)  # every metric, and no _floor_*, _boot_sd, _ci_*, _std row
    assert not any(
        re.search(r"_(floor_mean|floor_sd|floor_n|boot_sd|ci_low|ci_high|std)\b", x) for x in lines
    )
    run = ""
    for c in cells:  # a run's label is on its first row only
        run = c[0] = c[0] or run
    q = next(c for c in cells if c[0] == "quickstart_digits" and c[2] == "fid_domain ↓")
    # the floor: mean ± sd over the evaluation's 20 draws (not the old single draw 101.3)
    assert q[4] == "155.1 ± 44.3 (20 draws of real images at the run's sample count)"
    # one seed: the interval its evaluation recorded
    assert q[3] == "149.3 (95% CI 37.51–261.1)"
    pca = next(c for c in cells if c[0] == "quickstart_digits" and c[2].startswith("fid_pixel_pca"))
    assert pca[3] == "0.479 (95% CI 0.2482–0.7099)" and pca[4].startswith("0.3946 ± 0.0816 (20 draws")
    # against its parent: Δ 200 with sd √2·57.04 = 80.67: z = 2.479, p = 2 (1 − Φ(2.479)) = 0.013
    a = next(c for c in cells if c[0] == "quickstart_abl" and c[2] == "fid_domain ↓")
    assert (
        "vs parent quickstart_digits: Δ +200, significant at 0.05 (p = 0.013, bootstrap z-test, n = 64 vs 64"
        in a[6]
    )


def test_old_floor_sources_still_read(tmp_path: Path) -> None:
    """A metrics.json without ``<k>_floor_*``: the protocol's domain_floor list, as before."""
    make_run(tmp_path, "old", "o1", {0: 30.0}, metric="fid_domain", matched_floor=[7.0, 7.2, 7.4])
    (r,) = collect(tmp_path)
    assert floor_text(r, "fid_domain") == "7.2 ± 0.2 (3 draws of real images at the run's sample count)"
    assert r.recorded_ci("fid_domain") is None and r.boot_sd("fid_domain") is None


def test_floors_of_seeds_with_different_draws_are_pooled(tmp_path: Path) -> None:
    d = make_run(tmp_path, "two", "t1", {0: 30.0, 1: 31.0}, metric="fid_domain")
    # seed 0: draws {1, 3} (mean 2, sd √2); seed 1: draws {5, 7} (mean 6, sd √2): together
    # {1, 3, 5, 7}: mean 4, sd √(20/3)
    for k, (mean, n) in enumerate(((2.0, 2), (6.0, 2))):
        m = d / f"seed-{k}" / "eval-def" / "metrics.json"
        doc = json.loads(m.read_text())
        doc.update(fid_domain_floor_mean=mean, fid_domain_floor_sd=math.sqrt(2), fid_domain_floor_n=n)
        m.write_text(json.dumps(doc))
    (r,) = collect(tmp_path)
    mean, sd, n = r.recorded_floor("fid_domain")  # type: ignore[misc]
    assert (mean, n) == (4.0, 4) and sd == pytest.approx(math.sqrt(20 / 3))
    # two seeds: no one-seed interval, and the comparison counts seeds, not bootstraps
    assert r.recorded_ci("fid_domain") is None


def test_per_sample_values_take_precedence_over_the_bootstrap_sd(tmp_path: Path) -> None:
    a = _eval_run(tmp_path, "quickstart_digits", "q1", 0.0)
    b = _eval_run(tmp_path, "quickstart_abl", "a1", 0.5, parent="quickstart_digits")
    by = {r.experiment: r for r in collect(tmp_path)}
    assert compare(by["quickstart_digits"], by["quickstart_abl"], "fid_domain").test == stats.BOOT_Z
    for run, mean in ((a, 0.0), (b, 3.0)):
        m = run / "seed-0" / "eval-def" / "metrics.json"
        doc = json.loads(m.read_text())
        doc["per_sample"] = {"fid_domain": [mean + (i % 2) for i in range(40)]}
        m.write_text(json.dumps(doc))
    by = {r.experiment: r for r in collect(tmp_path)}
    c = compare(by["quickstart_digits"], by["quickstart_abl"], "fid_domain")
    assert c.test == stats.BOOTSTRAP and c.verdict == "significant"
