"""Tests that count seeds (reports/stats.py, reports/judge.py compare): Welch's t on the seeds of
docs/results.md, the paired t-test by initial-weight hash, a bootstrap over samples for one seed
each, floors over several draws of real images, and results_table.py's lines."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
from pathlib import Path

import pytest
from test_reports import make_run

from reports import stats
from reports.judge import compare, floor_stat, significance
from reports.reporter import collect, method_groups
from reports.tables import method_table

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("results_table", ROOT / "docs" / "tools" / "results_table.py")
assert _spec is not None and _spec.loader is not None
results_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_table)


def seed_table() -> dict[str, dict[str, tuple[float, float]]]:
    """docs/results.md's three-seed table: method → column title → (mean, sd over 3 seeds)."""
    doc = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    block = doc.split("<!-- results-table:seeds:begin -->")[1].split("<!-- results-table:seeds:end -->")[0]
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in block.splitlines() if line.startswith("|")
    ]
    head = rows[0]
    out = {}
    for r in rows[2:]:
        if r[0].startswith("`"):
            assert r[1] == "3"
            cells = {}
            for title, cell in zip(head, r):
                m = re.fullmatch(r"([\d.]+) ± ([\d.]+)", cell)
                if m:
                    cells[title] = (float(m[1]), float(m[2]))
            out[r[0].strip("`")] = cells
    return out


def three_seeds(mean: float, sd: float) -> list[float]:
    """Three values with exactly this mean and sample standard deviation (Welch's t depends on
    the seeds only through their mean, sd and number)."""
    return [mean - sd, mean, mean + sd]


PUBLISHED_SEEDS = [  # (method, base, column, p-value the issue computed with these seeds)
    ("compare_fashion_ncsnv2_seeds", "compare_fashion_ncsn_seeds", "FID (domain) ↓", 0.95),
    ("compare_fashion_ansn_seeds", "compare_fashion_ncsn_seeds", "FID (domain) ↓", 0.20),
    ("compare_fashion_ansn_seeds", "compare_fashion_ncsn_seeds", "KID (domain) ↓", 0.125),
]


@pytest.mark.parametrize("method,base,column,p", PUBLISHED_SEEDS)
def test_welch_on_the_seeds_of_results_md(method: str, base: str, column: str, p: float) -> None:
    t = seed_table()
    a, b = three_seeds(*t[base][column]), three_seeds(*t[method][column])
    assert statistics.stdev(b) == pytest.approx(t[method][column][1])
    c = stats.seed_test(a, b)
    assert c.test == stats.WELCH and c.n == (3, 3)
    assert c.p == pytest.approx(p, abs=0.006)
    assert c.verdict == "not significant" and c.significant is False
    assert c.text.startswith(f"not significant at 0.05 (p = {c.p:.3f}, Welch's t, n = 3 vs 3)")


def test_the_old_spread_rule_called_ansn_kid_significant_and_welch_does_not() -> None:
    t = seed_table()
    (ma, sa), (mb, sb) = (
        t[e]["KID (domain) ↓"] for e in ("compare_fashion_ncsn_seeds", "compare_fashion_ansn_seeds")
    )
    assert abs(mb - ma) > (sa**2 + sb**2) ** 0.5  # "significant" by √(sd₁² + sd₂²)
    assert stats.seed_test(three_seeds(ma, sa), three_seeds(mb, sb)).p > 0.05


def test_a_clear_difference_is_significant_and_the_level_is_the_stated_one() -> None:
    c = stats.seed_test([10.0, 12.0, 14.0], [40.0, 41.0, 42.0])
    assert c.verdict == "significant" and c.p is not None and c.p < 0.001
    assert c.text == "significant at 0.05 (p < 0.001, Welch's t, n = 3 vs 3)"
    # p ≈ 0.024: significant at 0.05, not at 0.01
    a, b = [25.2, 25.8], [30.0, 31.0]
    assert stats.seed_test(a, b).verdict == "significant"
    assert stats.seed_test(a, b, alpha=0.01).verdict == "not significant"
    assert stats.seed_test(a, b, alpha=0.01).text.startswith("not significant at 0.01 (p = 0.024")


def test_too_few_seeds_are_not_judged() -> None:
    assert "significance unknown" in stats.seed_test([1.0], [2.0]).verdict
    assert (
        stats.seed_test([1.0], [2.0, 3.0]).text
        == "1 vs 2 seeds: significance unknown (a t-test needs two seeds of each)"
    )
    assert stats.seed_test([], [1.0]).text == "–"


def test_paired_only_when_every_seed_shares_its_initial_weights() -> None:
    a, b = [10.0, 20.0, 30.0], [10.5, 20.6, 30.4]  # the seeds move both arms alike
    welch = stats.seed_test(a, b)
    assert welch.test == stats.WELCH and welch.verdict == "not significant"
    assert welch.pairing == "independent seeds (no initial-weight hash recorded)"
    paired = stats.seed_test(a, b, a_init=["x", "y", "z"], b_init=["x", "y", "z"])
    assert paired.test == stats.PAIRED and paired.verdict == "significant"
    # the pairs follow the hashes, not the order of the values
    shuffled = stats.seed_test(a, [20.6, 30.4, 10.5], a_init=["x", "y", "z"], b_init=["y", "z", "x"])
    assert shuffled.p == pytest.approx(paired.p)
    differ = stats.seed_test(a, b, a_init=["x", "y", "z"], b_init=["x", "y", "w"])
    assert differ.test == stats.WELCH and "differ" in differ.pairing


def test_bootstrap_over_samples_for_one_seed_each() -> None:
    far = stats.bootstrap_test([0.0, 1.0] * 50, [1.0, 2.0] * 50)
    assert far.verdict == "significant" and far.ci is not None and 0.8 < far.ci[0] < far.ci[1] < 1.2
    near = stats.bootstrap_test([0.0, 1.0] * 50, [1.0, 0.0] * 50)
    assert near.verdict == "not significant" and near.ci[0] < 0 < near.ci[1]  # type: ignore[index]
    assert far.text.startswith("significant at 0.05 (95% CI of Δ [") and "n = 100 vs 100 samples" in far.text
    lo, hi = stats.sample_ci([0.0, 1.0] * 50)  # type: ignore[misc]
    assert lo < 0.5 < hi and hi - lo < 0.3


def _edit(path: Path, **extra: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))


def test_report_compares_runs_by_their_seeds(tmp_path: Path) -> None:
    t = seed_table()["compare_fashion_ncsn_seeds"]["FID (domain) ↓"]
    u = seed_table()["compare_fashion_ansn_seeds"]["FID (domain) ↓"]
    make_run(tmp_path, "ncsn", "h1", dict(enumerate(three_seeds(*t))), metric="fid_domain")
    make_run(tmp_path, "ansn", "h2", dict(enumerate(three_seeds(*u))), metric="fid_domain")
    make_run(tmp_path, "far", "h3", {0: 2000.0, 1: 2001.0, 2: 2002.0}, metric="fid_domain")
    by = {r.experiment: r for r in collect(tmp_path)}
    c = compare(by["ncsn"], by["ansn"], "fid_domain")
    assert c.p == pytest.approx(0.20, abs=0.006) and c.verdict == "not significant" and c.n == (3, 3)
    assert significance(by["ncsn"], by["far"], "fid_domain").startswith("significant at 0.05 (p = ")
    # initial-weight hashes recorded by both runs' training: the paired test
    for exp in ("ncsn", "ansn"):
        for k in range(3):
            _edit(
                tmp_path / exp / f"h{1 if exp == 'ncsn' else 2}" / f"seed-{k}" / "train" / "results.json",
                init_hash=f"w{k}",
            )
    by = {r.experiment: r for r in collect(tmp_path)}
    assert compare(by["ncsn"], by["ansn"], "fid_domain").test == stats.PAIRED


def test_one_seed_each_bootstraps_per_sample_values(tmp_path: Path) -> None:
    for exp, h, xs in (("a", "h1", [0.0, 1.0] * 40), ("b", "h2", [1.0, 2.0] * 40), ("c", "h3", None)):
        make_run(tmp_path, exp, h, {0: 0.5}, metric="precision")
        if xs is not None:
            _edit(tmp_path / exp / h / "seed-0" / "eval-def" / "metrics.json", per_sample={"precision": xs})
    by = {r.experiment: r for r in collect(tmp_path)}
    c = compare(by["a"], by["b"], "precision")
    assert c.test == stats.BOOTSTRAP and c.verdict == "significant" and c.n == (80, 80)
    assert (
        compare(by["a"], by["c"], "precision").verdict
        == "one seed each: significance unknown (no per-sample values or bootstrap sd)"
    )


def test_floor_over_draws_of_real_images(tmp_path: Path) -> None:
    draws = [7.0 + 0.1 * i for i in range(20)]
    src = "experiment a { }\nexperiment b extends a { }\n"
    make_run(
        tmp_path,
        "a",
        "h1",
        {0: 30.0, 1: 31.0},
        metric="fid_domain",
        matched_floor=draws,
        source=src,
        paper="X",
    )
    make_run(tmp_path, "b", "h2", {0: 40.0, 1: 41.0}, metric="fid_domain", matched_floor=7.2, source=src, paper="X",
             spec_blocks={"noise": {"name": "adaptive", "params": {}}})  # fmt: skip
    by = {r.experiment: r for r in collect(tmp_path)}
    mean, sd, n = floor_stat(by["a"], "fid_domain")  # type: ignore[misc]
    assert (
        n == 20
        and mean == pytest.approx(statistics.fmean(draws))
        and sd == pytest.approx(statistics.stdev(draws))
    )
    assert floor_stat(by["b"], "fid_domain") == (7.2, None, 1)  # one draw: a single value, read as before
    (g,) = method_groups(list(by.values()))
    headers, _ = method_table(g)
    (h,) = [h for h in headers if h.startswith("fid_domain")]
    assert h == "fid_domain ↓ (floor 7.2 / 7.95 ± 0.592, 20 draws)", h


def test_results_table_prints_p_values_and_n() -> None:
    t = seed_table()

    def entry(name: str, seeds: list[dict]) -> dict:
        return {"experiment": name, "seeds": seeds}

    cols = {key: title for key, title, _ in results_table.METRICS}
    entries = []
    for name in ("compare_fashion_ncsn_seeds", "compare_fashion_ncsnv2_seeds", "compare_fashion_ansn_seeds"):
        per_metric = {k: three_seeds(*t[name][title]) for k, title in cols.items() if title in t[name]}
        entries.append(entry(name, [{"metrics": {k: v[i] for k, v in per_metric.items()}} for i in range(3)]))
    text = results_table.significance(entries)
    assert "each tested at the 0.05 level; independent seeds (no initial-weight hash recorded)" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert lines[0].startswith(
        "- `compare_fashion_ncsnv2_seeds` vs `compare_fashion_ncsn_seeds`: FID (domain) "
    )
    assert all(ln.endswith(" (Welch's t, n = 3 vs 3)") for ln in lines)
    assert "FID (domain) +8.04 (not significant), p = 0.95" in lines[0]
    assert "FID (domain) +363.91 (not significant), p = 0.20" in lines[1]  # of the rounded means
    assert "KID (domain) +3538.2249 (not significant), p = 0.12" in lines[1]  # 0.125 (see above)
    assert " (significant)" not in text
    assert results_table._floor([7.0, 7.2, 7.4], "{:.2f}") == "7.20 ± 0.20 (3 draws)"
    assert results_table._floor(7.24, "{:.2f}") == "7.24"


def test_bootstrap_z_test_p_value_by_hand() -> None:
    """Δ = 3 with sd √(1.2² + 1.6²) = 2: z = 1.5, p = 2 (1 − Φ(1.5)) = 2 (1 − 0.9331928) = 0.1336144;
    Δ = 6, same sd: z = 3, p = 2 (1 − 0.9986501) = 0.0026998."""
    c = stats.z_test(10.0, 1.2, 13.0, 1.6, n=(64, 64))
    assert c.test == stats.BOOT_Z == "bootstrap z-test" and c.verdict == "not significant"
    assert c.p == pytest.approx(0.1336144, abs=1e-6)
    assert c.ci == pytest.approx((3.0 - 1.959964 * 2.0, 3.0 + 1.959964 * 2.0), abs=1e-5)
    s = stats.z_test(10.0, 1.2, 16.0, 1.6, n=(64, 64))
    assert s.verdict == "significant" and s.p == pytest.approx(0.0026998, abs=1e-6)
    assert s.text == "significant at 0.05 (p = 0.003, bootstrap z-test, n = 64 vs 64 samples)"
    assert stats.z_test(1.0, 0.0, 1.0, 0.0).p == 1.0  # no spread, no difference
    assert stats.z_test(1.0, float("nan"), 2.0, 1.0).test == ""  # no sd: not judged


def test_holm_adjustment_matches_the_step_down_by_hand() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0] and stats.holm([]) == []


def test_results_table_calls_significant_only_after_holm() -> None:
    """Seven metrics, each p = 0.0426 (Welch, 5 vs 5): every test alone is below 0.05, the
    family of seven is not (Holm p = 7 × 0.0426 = 0.298)."""
    a, b = [10, 11, 12, 13, 14], [12.5, 13.2, 14.9, 15.1, 16.8]
    keys = [k for k, _, _ in results_table.METRICS]
    entries = [
        {"experiment": name, "seeds": [{"metrics": dict.fromkeys(keys, v)} for v in vals]}
        for name, vals in (("base", a), ("other", b))
    ]
    text = results_table.significance(entries)
    assert f"over all {len(keys)} tests" in text and " (significant)" not in text
    assert text.count("p = 0.043, Holm p = 0.298") == len(keys)
    one = [
        {**e, "seeds": [{"metrics": {"fid_domain": s["metrics"]["fid_domain"]}} for s in e["seeds"]]}
        for e in entries
    ]
    assert "FID (domain) +2.50 (significant), p = 0.043, Holm p = 0.043" in results_table.significance(one)
