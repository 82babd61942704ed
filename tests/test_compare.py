"""Issue 15: NCSN vs NCSNv2 vs ANSN on Fashion-MNIST (papers/compare_fashion*.exp), the domain
KID / precision-recall metrics and their matched floor, and the table script of docs/results.md."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core.data import DataSource, digits
from ncsn_core.evaluation import evaluate, floors
from ncsn_core.runner import run_spec
from ncsn_core.values import Call

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("results_table", ROOT / "docs" / "tools" / "results_table.py")
assert _spec is not None and _spec.loader is not None
results_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_table)
FASHION = Path("/usr/share/datasets/fashion-mnist")
HAVE_FASHION = all(
    (FASHION / f"{s}.gz").exists() or (FASHION / s).exists()
    for s in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
)
METHODS = ("ncsn", "ncsnv2", "ansn")
DOMAIN = (
    Call("fid_domain"),
    Call("kid_domain"),
    Call("precision_recall_domain"),
    Call("is_domain", (("splits", 2),)),
)


@pytest.fixture(scope="module")
def data() -> DataSource:
    return digits(flip=False, dequantize="none")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per module: the domain classifier is trained once."""
    return tmp_path_factory.mktemp("compare-cache")


def test_domain_kid_and_precision_recall_separate_real_from_noise(data: DataSource, cache: Path) -> None:
    """kid_domain / precision_recall_domain come from the same torch-fidelity call as
    fid_domain; real held-out images score near the matched floor, uniform noise far from it."""
    settings = {"reference": "train", "samples": 297}
    real_x = data.as_float("test")
    real = evaluate(DOMAIN, real_x, data, settings=settings, run_key="r", cache_dir=cache)
    noise = evaluate(DOMAIN, torch.rand_like(real_x), data, settings=settings, run_key="n", cache_dir=cache)
    for out in (real, noise):
        for k in (
            "fid_domain",
            "kid_domain",
            "kid_domain_std",
            "precision_domain",
            "recall_domain",
            "is_domain",
        ):
            assert math.isfinite(out[k]), k
    assert real["kid_domain"] < noise["kid_domain"] / 10
    assert real["precision_domain"] > 0.8 and noise["precision_domain"] < real["precision_domain"] - 0.2
    assert real["recall_domain"] > 0.5 and noise["recall_domain"] < real["recall_domain"] - 0.3
    p = real["protocol"]
    assert p["kid_domain_subset_size"] == real_x.shape[0]
    # The matched floor: as many real images of the other split (here: test) as samples.
    floor = p["domain_floor"]
    assert floor["what"].startswith(f"{real_x.shape[0]} real test images")
    assert floor["fid_domain"] == pytest.approx(real["fid_domain"], rel=1e-6)  # same images, all of test
    assert p["precision_recall_domain_reference"].startswith(f"{real_x.shape[0]} images of the train split")
    assert floor["kid_domain"] < noise["kid_domain"] and floor["precision_domain"] > 0.8
    assert set(floor) >= {"fid_domain", "kid_domain", "precision_domain", "recall_domain", "is_domain"}


def test_domain_floor_uses_a_fixed_subset_of_the_other_split(data: DataSource, cache: Path) -> None:
    x = data.as_float("test")[:50]
    settings = {"reference": "test", "samples": 50}
    a = evaluate((Call("kid_domain"),), x, data, settings=settings, run_key="a", cache_dir=cache)
    b = evaluate((Call("kid_domain"),), x.flip(-1), data, settings=settings, run_key="b", cache_dir=cache)
    fa, fb = a["protocol"]["domain_floor"], b["protocol"]["domain_floor"]
    assert fa == fb and fa["what"] == "50 real train images (random, seed 0) against the test split"
    assert set(fa) == {"what", "kid_domain", "kid_domain_std", "draws", "draw_seeds", "mean", "sd"}
    # Draw 0 is the single floor earlier versions recorded; the summary covers every draw.
    assert fa["draws"] == floors.FLOOR_DRAWS and fa["draw_seeds"][0] == floors.FLOOR_SEED
    assert a["kid_domain_floor_n"] == floors.FLOOR_DRAWS and a["kid_domain_floor_sd"] > 0
    assert fa["mean"]["kid_domain"] == a["kid_domain_floor_mean"] and "kid_domain_std" not in fa["mean"]
    # The draws are computed once per (classifier, data, split, n, metrics) and read back after.
    (floor_file,) = [
        f
        for f in cache.glob("domain-floor-*.json")
        if set(json.loads(f.read_text())[0]) == {"kid_domain", "kid_domain_std"}
    ]
    floor_file.write_text(json.dumps([{"kid_domain": 1.0, "kid_domain_std": 0.0}] * floors.FLOOR_DRAWS))
    c = evaluate((Call("kid_domain"),), x, data, settings=settings, run_key="c", cache_dir=cache)
    assert c["kid_domain_floor_mean"] == 1.0 and c["kid_domain_floor_sd"] == 0.0


FAIR = {  # file → (methods, NCSN/ANSN L·T, NCSNv2 T, samples, image size)
    "compare_fashion": (("ncsn", "ncsnv2", "ansn_pre"), 50, 1, 1000, 14),
    "compare_fashion_gpu": (("ncsn", "ncsnv2", "ansn_pre"), 210, 2, 2000, 28),
}
ARMS = {
    "": (True, True),
    "_raw": (False, True),
    "_nodenoise": (True, False),
    "_raw_nodenoise": (False, False),
}


def fair_arms(name: str) -> dict[tuple[str, str], list]:
    """(method, arm suffix) → the compiled specs (one per seed) of a like-for-like file."""
    prefix = "compare_fashion_gpu_" if name.endswith("_gpu") else "compare_fashion_"
    out: dict[tuple[str, str], list] = {}
    for s in compile_file(ROOT / "papers" / f"{name}.exp", compute_auto=False):
        rest = s.experiment.removeprefix(prefix)
        suffix = next(a for a in sorted(ARMS, key=len, reverse=True) if rest.endswith(a))
        out.setdefault((rest.removesuffix(suffix) if suffix else rest, suffix), []).append(s)
    return out


@pytest.mark.parametrize("name", sorted(FAIR))
def test_fair_compare_files_have_every_arm_on_equal_terms(name: str) -> None:
    """Issue 24: every method with and without EMA weights and final denoising, on the same data
    (no dequantisation anywhere), network, training (EMA kept in every arm), samples and
    evaluation; five paired seeds; one training per method and seed shared by its four arms."""
    methods, lt, v2_t, n, size = FAIR[name]
    arms = fair_arms(name)
    assert set(arms) == {(m, a) for m in methods for a in ARMS}
    specs = [s for ss in arms.values() for s in ss]
    for (m, a), ss in arms.items():
        assert sorted(s.seed for s in ss) == [0, 1, 2, 3, 4], (m, a)
        use_ema, denoise = ARMS[a]
        for s in ss:
            assert s.sample.kwargs()["use_ema"] is use_ema, (m, a)
            assert (s.stages[-1].name == "denoise") is denoise and len(s.stages) == 1 + denoise, (m, a)
    # the same pixels, network, training and evaluation in every arm
    for block in ("data", "network", "evaluate"):
        assert len({json.dumps(s.canonical()[block], sort_keys=True) for s in specs}) == 1, block
    assert len({json.dumps(s.canonical()["train"], sort_keys=True) for s in specs}) == 1
    d = specs[0].data.kwargs()
    assert d["dequantize"] == "none" and d["image_size"] == size and not d["flip"]
    assert specs[0].train.kwargs()["ema"] > 0
    ev = specs[0].evaluate.kwargs()
    assert ev["samples"] == n >= 1000 and ev["reference"] == "test"
    assert {"fid_domain", "fid_pixel_pca", "class_coverage"} <= {c.name for c in ev["metrics"]}
    assert {s.sample.kwargs()["samples"] for s in specs} == {n}
    # one training per method and seed: the four arms share its hash; methods do not
    for m in methods:
        assert len({s.train_hash() for a in ARMS for s in arms[(m, a)] if s.seed == 0}) == 1, m
    assert len({arms[(m, "")][0].train_hash() for m in methods}) == len(methods)
    # equal sampling budgets: L·T for the fixed ladders, Technique 2's L with NCSNv2's T
    for m in methods:
        spec = arms[(m, "_nodenoise")][0]
        (stage,) = spec.stages
        t = dict(stage.params)["steps_per_level"]
        if m == "ncsnv2":
            assert t == v2_t and str(dict(spec.noise.params)["levels"]) == "auto"
        else:
            assert dict(spec.noise.params)["levels"] * t == lt, m
    # ANSN in the project's preconditioned reading, named as such (the paper's reading diverges
    # on these settings: papers/ansn_fashion_paper.exp, docs/ansn.md)
    pre = arms[("ansn_pre", "")][0]
    assert pre.noise.name == "adaptive" and pre.noise.kwargs()["output"] == "preconditioned"
    assert pre.noise.kwargs()["estimate_on"] == "data" and pre.stages[0].name == "preconditioned_langevin"
    assert "project" in pre.description


def test_the_paper_reading_file_is_the_paper_on_the_compare_settings() -> None:
    """papers/ansn_fashion_paper.exp: the components' defaults (the paper's reading) on the fair
    file's data, network, training and evaluation; its only departure arm says so."""
    fair = {s.seed: s for s in compile_file(ROOT / "papers" / "compare_fashion.exp", compute_auto=False)
            if s.experiment == "compare_fashion_ncsn_nodenoise"}  # fmt: skip
    for s in compile_file(ROOT / "papers" / "ansn_fashion_paper.exp", compute_auto=False):
        ref = fair[s.seed]
        for block in ("data", "network", "train"):
            assert s.canonical()[block] == ref.canonical()[block], (s.experiment, block)
        if s.experiment.endswith("_ncsn"):
            continue
        kw = s.noise.kwargs()
        assert (kw["estimate_on"], kw["output"], kw["normalize"], kw["floor"]) == (
            "score",
            "sigma_score",
            "none",
            0.0,
        )
        assert s.loss.kwargs()["weighting"] == "eq31" and s.stages[0].name == "ansn_langevin"
        assert kw["warmup"] == (50 if s.experiment.endswith("_warmup") else 0)


@pytest.mark.slow
@pytest.mark.skipif(
    not HAVE_FASHION,
    reason=f"Fashion-MNIST is not installed under {FASHION} (apt-get install dataset-fashion-mnist)",
)
def test_compare_fashion_ci_end_to_end(tmp_path: Path) -> None:
    """The CI-sized variant trains, samples and evaluates all three methods: one row per method,
    equal iterations and NFE, finite metrics, the floor and the classifier's accuracy in the table."""
    t0 = time.perf_counter()
    specs = compile_file(ROOT / "papers" / "compare_fashion_ci.exp")
    runs = tmp_path / "runs"
    for s in specs:
        run_spec(s, runs_dir=runs, device="cpu", quiet=True)
    names = [f"compare_fashion_ci_{m}" for m in METHODS]
    entries = results_table.read_runs(runs, names)
    assert [e["experiment"] for e in entries] == names
    assert results_table.all_finite(entries)
    rows = [e["seeds"][0] for e in entries]
    assert len({r["iterations"] for r in rows}) == 1 and len({r["nfe"] for r in rows}) == 1
    for r in rows:
        assert {"fid_domain", "kid_domain", "precision_domain", "recall_domain", "is_domain"} <= set(
            r["metrics"]
        )
        assert r["protocol"]["reference"] == "fashion_mnist:test"
        assert r["protocol"]["domain_classifier"]["test_accuracy"] > 0.5
    text = results_table.table(entries)
    assert sum(line.startswith("| `compare_fashion_ci_") for line in text.splitlines()) == 3
    # The report's method comparison: the file's experiments differ only in method (noise, loss,
    # network, sampler, EMA, dequantisation), one row per method, in the papers' order.
    from reports.reporter import collect, method_groups

    (group,) = method_groups(collect(runs))
    assert [r["method"] for r in group["rows"]] == ["NCSN", "NCSNv2", "ANSN"]
    assert {r["nfe"] for r in group["rows"]} == {15}
    assert all(r["metrics"]["fid_domain"] for r in group["rows"])
    assert "| floor: real images |" in text and "test accuracy" in text
    out = tmp_path / "img"
    assert results_table.main([str(runs), "--experiments", ",".join(names), "--img", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names)
    doc = tmp_path / "results.md"
    doc.write_text(f"# R\n{results_table.BEGIN}\nold\n{results_table.END}\ntail\n", encoding="utf-8")
    assert results_table.main([str(runs), "--experiments", ",".join(names), "--write", str(doc)]) == 0
    new = doc.read_text(encoding="utf-8")
    assert "old" not in new and new.endswith(f"{results_table.END}\ntail\n") and text in new
    metrics = json.loads(next((runs / names[0]).glob("*/seed-0/eval-*/metrics.json")).read_text())
    assert metrics["protocol"]["domain_floor"]["what"].startswith("100 real train images")
    print(f"compare_fashion_ci: {time.perf_counter() - t0:.1f}s")


@pytest.mark.parametrize("name", ["compare_fashion_ci", "compare_cifar"])
def test_report_groups_the_comparison_files_into_one_method_table(name: str, tmp_path: Path) -> None:
    """Run folders shaped like the runner's, with each experiment's compiled spec: the report
    makes one method table (NCSN, NCSNv2, ANSN) of each comparison file. compare_cifar's methods
    keep their papers' recipes, which the table's notes name; its published numbers are the papers'."""
    from test_reports import make_run

    from reports.reporter import collect, method_groups
    from reports.tables import method_notes

    path = ROOT / "papers" / f"{name}.exp"
    source = path.read_text(encoding="utf-8")
    specs = compile_file(path, compute_auto=False)
    for k, s in enumerate(specs):
        canon = {key: v for key, v in s.canonical().items() if key not in ("experiment", "hash", "published")}
        make_run(
            tmp_path,
            s.experiment,
            f"h{k}",
            {0: 10.0 + k},
            metric="fid_domain",
            spec_blocks=canon,
            source=source,
        )
    (group,) = method_groups(collect(tmp_path))
    assert [r["method"] for r in group["rows"]] == ["NCSN", "NCSNv2", "ANSN"]
    notes = method_notes(group)
    if name == "compare_cifar":
        assert "train.iterations 200000 → 300000" in notes[0] and "training recipe" in notes[0]
        trains = {s.experiment: s.train_hash() for s in specs}
        papers = {
            s.experiment: s.train_hash()
            for f in ("ncsn_cifar", "ncsnv2_cifar", "ansn_cifar")
            for s in compile_file(ROOT / "papers" / f"{f}.exp", compute_auto=False)
        }
        # the papers' own trainings: a runs folder holding them computes nothing new
        assert trains["compare_cifar_ncsn"] == papers["ncsn_cifar10"]
        assert trains["compare_cifar_ncsnv2"] == papers["ncsnv2_cifar10"]
        assert trains["compare_cifar_ansn"] == papers["ansn_cifar10"]
        assert {p.label for s in specs for p in s.published} >= {
            "NCSN, Table 1",
            "NCSNv2 poster, w/ denoising",
        }
    else:
        assert "training recipe" not in " ".join(notes)  # equal budgets: only the methods differ


def _fair_group(name: str, tmp_path: Path) -> dict:
    from test_reports import make_run

    from reports.reporter import collect, method_groups

    path = ROOT / "papers" / f"{name}.exp"
    source = path.read_text(encoding="utf-8")
    first = {}
    for s in compile_file(path, compute_auto=False):
        first.setdefault(s.experiment, s)
    for k, s in enumerate(first.values()):
        canon = {key: v for key, v in s.canonical().items() if key not in ("experiment", "hash", "published")}
        make_run(
            tmp_path,
            s.experiment,
            f"h{k}",
            {0: 10.0 + k},
            metric="fid_domain",
            spec_blocks=canon,
            source=source,
        )
    (group,) = method_groups(collect(tmp_path))
    assert len(group["rows"]) == len(first)
    return group


@pytest.mark.parametrize("name", sorted(FAIR))
def test_report_puts_every_fair_arm_in_one_method_table(name: str, tmp_path: Path) -> None:
    """All arms of a like-for-like file are one comparison (same data and evaluation) whose rows
    differ in method settings only: no training recipe differs between them."""
    from reports.tables import method_notes

    group = _fair_group(name, tmp_path)
    assert "training recipe" not in " ".join(method_notes(group))
    assert all(not r["recipe"] for r in group["rows"])
    assert [r["method"] for r in group["rows"]][-4:] == ["ANSN"] * 4


def test_report_labels_the_fair_files_ncsn_arms_ncsn(tmp_path: Path) -> None:
    group = _fair_group("compare_fashion", tmp_path)
    assert [r["method"] for r in group["rows"]][:8] == ["NCSN"] * 4 + ["NCSNv2"] * 4


def test_results_table_reads_stages_reused_from_another_experiment(tmp_path: Path) -> None:
    """An experiment that reuses another's seed (same run hash, "train: reusing ...", as the
    former compare_fashion_seeds.exp did with compare_fashion.exp): its seed folder holds only
    env.json, and the table reads the stages where they are."""
    runs = tmp_path / "runs"
    for name in ("a", "a_seeds"):
        (runs / name / "h1" / "seed-0").mkdir(parents=True)
        (runs / name / "h1" / "spec.json").write_text(json.dumps({"description": name}))
    done = runs / "a" / "h1" / "seed-0"
    (done / "train").mkdir()
    (done / "train" / "results.json").write_text(json.dumps({"seconds": 30.0, "iterations": 10}))
    ev = done / "eval-e1"
    ev.mkdir()
    (ev / "stage.json").write_text("{}")
    (ev / "metrics.json").write_text(json.dumps({"fid_domain": 12.5, "protocol": {}}))
    (ev / "DONE").write_text("x")
    (entry,) = results_table.read_runs(runs, ["a_seeds"])
    (row,) = entry["seeds"]
    assert row["train_s"] == 30.0 and row["metrics"]["fid_domain"] == 12.5


def test_results_table_marks_differences_within_the_seed_spread() -> None:
    def entry(name: str, fids: list[float]) -> dict:
        return {"experiment": name, "seeds": [{"metrics": {"fid_domain": f}} for f in fids]}

    text = results_table.significance(
        [entry("a", [10.0, 12.0, 14.0]), entry("b", [11.0, 13.0, 15.0]), entry("c", [40.0, 41.0, 42.0])]
    )
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert "`b` vs `a`: FID (domain) +1.00 (not significant)" in lines[0]
    assert "`c` vs `a`: FID (domain) +29.00 (significant)" in lines[1]
    assert results_table.significance([entry("a", [1.0]), entry("b", [2.0])]) == ""  # one seed


def test_results_table_header_names_what_bit_identity_needs() -> None:
    """Issue 26: the table's header records threads, CPU, BLAS, determinism …; runs that
    differ in one show every value (a rerun must match them to repeat the digits)."""
    envs = [
        {"threads": 2, "cpu": "Xeon", "blas": "mkl", "deterministic_algorithms": True, "world_size": 1},
        {"threads": 1, "cpu": "Xeon", "blas": "mkl", "deterministic_algorithms": True, "world_size": 1},
    ]
    line = results_table.bit_identity(envs)
    assert "threads 1 | 2" in line and "CPU Xeon" in line and "BLAS mkl" in line
    assert "deterministic algorithms True" in line and "processes 1" in line
    entries = [{"experiment": "e", "seeds": [{"env": {**envs[0], "time": "2026-12-03T10:00:00+00:00"}}]}]
    assert "threads 2" in results_table.header(entries)
