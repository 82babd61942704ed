"""Issue 25: the report leads with what was run. Each test names the friction it guards:
the runs first (the not-run catalogue one counted line), a scale for every metric (floor over
draws of real images, the paper's number), uncertainty on every ablation and sweep point, a
"best" only when distinguishable, the ablation's parent with the file's own values (not a
--set sweep point), the file's own point in a --set sweep, "not comparable: <reason>" between
runs whose protocol differs, every Markdown table in TeX, one training curve per training and
plot titles that wrap. The first screen is checked in headless Chromium (skipped when absent)."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reports import blocks, make_run

from reports import figures as figs
from reports.reporter import add_expected, collect, render
from reports.runs import diff_doc

ARTEFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artefacts"
SOURCE = (
    "# Quickstart: NCSN on 8x8 digits\n"
    "experiment quickstart_digits { }\n"
    "experiment quickstart_abl extends quickstart_digits { }\n"
)
PUB = [{"label": "Table 1", "values": {"fid": {"value": 25.32, "error": None}}}]


def _patch_eval(run: Path, **metrics_extra) -> None:  # type: ignore[no-untyped-def]
    """Add fields to every seed's metrics.json (per_sample, protocol entries)."""
    for m in run.glob("seed-*/eval-*/metrics.json"):
        doc = json.loads(m.read_text())
        proto = {**doc.get("protocol", {}), **metrics_extra.pop("protocol", {})}
        doc.update(metrics_extra, protocol=proto)
        m.write_text(json.dumps(doc))


def _per_sample(mean: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [mean + rng.gauss(0.0, 1.0) for _ in range(n)]


def _quickstart_and_ablation(root: Path, abl_samples: int = 64) -> None:
    """The quickstart (fid_domain on 64 samples, per-sample values, a floor over 5 draws of real
    images) and one ablation of it, from one file."""
    q = make_run(
        root, "quickstart_digits", "q1", {0: 40.0}, paper="NCSN", spec_blocks=blocks(), source=SOURCE,
        metric="fid_domain", samples=64,
    )  # fmt: skip
    a = make_run(
        root, "quickstart_abl", "a1", {0: 46.0}, paper="NCSN", spec_blocks=blocks(levels=5), source=SOURCE,
        metric="fid_domain", samples=abl_samples, parent="quickstart_digits",
    )  # fmt: skip
    floor = {"what": "64 real test images", "fid_domain": [7.1, 7.4, 6.9, 7.3, 7.2]}
    _patch_eval(q, per_sample={"fid_domain": _per_sample(40.0, 64, 1)}, protocol={"domain_floor": floor})
    _patch_eval(a, per_sample={"fid_domain": _per_sample(46.0, 64, 2)}, protocol={"domain_floor": floor})


def _never_run() -> list[dict]:
    return [
        {"experiment": f"paper_exp_{i}", "paper": "NCSN", "hash": f"h{i}", "published": PUB, "sweep": {}}
        for i in range(30)
    ]


# ----------------------------------------------------------------------------- item 1
def test_runs_lead_and_catalogue_is_one_counted_line(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _quickstart_and_ablation(root)
    for fmt in ("md", "html"):
        text = render(add_expected(collect(root), _never_run()), fmt)
        assert text.index("What was run") < text.index("quickstart_digits") < text.index("Verdicts")
        assert "paper_exp_" not in text  # the catalogue is not listed ...
        assert "Not run: 30 experiment(s) with 30 published result(s) to reproduce" in text  # ... but counted
        full = render(add_expected(collect(root), _never_run()), fmt, show_all=True)
        assert "paper_exp_29" in full


def test_every_metric_has_a_scale_and_an_interval(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _quickstart_and_ablation(root)
    make_run(root, "with_paper", "p1", {0: 30.0, 1: 32.0}, PUB, paper="NCSN", spec_blocks=blocks())
    doc = json.loads(render(collect(root), "json"))
    rows = {r["run"]: r for f in doc["ran"] for r in f["rows"] if r["run"]}
    q = rows["quickstart_digits"]
    # the floor: mean ± sd over its draws of real images at the run's sample count
    assert q["floor"] == "7.18 ± 0.192 (5 draws of real images at the run's sample count)"
    # one seed with per-sample values: its bootstrap interval
    assert re.search(r"95% CI [\d.]+–[\d.]+ over 64 samples", q["value"])
    # against its parent: the bootstrap over both runs' samples (Δ ≈ +6 on unit noise: significant)
    a = rows["quickstart_abl"]
    assert a["versus"].startswith("vs parent quickstart_digits: Δ +6, significant at 0.05 (95% CI of Δ [")
    # the paper's number where it has one, with its verdict
    assert rows["with_paper"]["published"].startswith("25.32 (Table 1): ")
    assert rows["with_paper"]["value"] == "31 ± 1.41"


def test_sweep_best_only_when_distinguishable(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    # 5.449 vs 5.448 over two seeds each with spread: no distinguishable best
    make_run(root, "sw", "s1", {0: 5.3, 1: 5.598}, sweep={"noise.levels": "5"}, spec_blocks=blocks(levels=5))
    make_run(root, "sw", "s2", {0: 5.3, 1: 5.596}, sweep={"noise.levels": "10"}, spec_blocks=blocks())
    md = render(collect(root), "md")
    table = md.split("one row per noise.levels")[1]
    assert "**(best)**" not in table and "fid: no distinguishable best" in table
    assert "not significant at 0.05 (p = 0.997, Welch's t, n = 2 vs 2)" in table
    # far apart: the best is marked
    make_run(root, "sw", "s3", {0: 1.0, 1: 1.1}, sweep={"noise.levels": "20"}, spec_blocks=blocks(levels=20))
    md = render(collect(root), "md")
    table = md.split("one row per noise.levels")[1]
    assert "1.05 ± 0.0707 **(best)**" in table and "best: sw [noise.levels = 20]" in table


# ----------------------------------------------------------------------------- item 2 (report side)
def _with_overrides(run: Path, sets: list[str]) -> None:
    (run / "overrides.json").write_text(json.dumps(sets))


def test_ablation_parent_has_the_files_values_and_sweep_has_the_files_point(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    key = "sample.annealed_langevin.steps_per_level"

    def spec(t: int) -> dict:
        b = blocks()
        b["stages"] = [{"name": "annealed_langevin", "params": {"steps_per_level": t, "step_size": 2e-5}}]
        return b

    # digits_base swept by --set T=10,40 (overrides.json), and the file's own run (T = 20)
    for t, h in ((10, "b10"), (40, "b40")):
        d = make_run(root, "digits_base", h, {0: 50.0 - t / 10}, spec_blocks=spec(t), sweep={key: str(t)})
        _with_overrides(d, [f"{key}=10,40"])
    make_run(root, "digits_base", "b20", {0: 48.0}, spec_blocks=spec(20))
    # the file's ablation: T = 40, parent digits_base (T = 20 in the file)
    make_run(root, "digits_sampler", "s40", {0: 45.0}, spec_blocks=spec(40), parent="digits_base")
    doc = json.loads(render(collect(root), "json"))
    exps = {e["name"]: e for p in doc["papers"] for e in p["experiments"]}
    abl = exps["digits_sampler"]["ablation"]
    assert abl["changed"] == [{"key": key, "parent": "20", "value": "40"}]  # not the T = 10 point
    rows = [[c["text"] for c in r] for t in exps["digits_base"]["sweep"]["tables"] for r in t["rows"]]
    assert [r[0] for r in rows] == ["10", "20 (the file's value)", "40"]


def test_plot_titles_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []

    def keep(fig):  # type: ignore[no-untyped-def]
        fig.tight_layout()
        fig.canvas.draw()
        shown.append((fig.axes[0].title.get_window_extent(), fig.bbox))
        return ""

    monkeypatch.setattr(figs, "_fig_b64", keep)
    log = [{"step": i, "loss": 1.0 / i, "per_level": [1.0 / i, 0.5 / i]} for i in range(1, 5)]
    label = (
        "digits_sampler [sample.annealed_langevin.steps_per_level = 40, train.iterations = 2000] (a1b2c3d4)"
    )
    figs.loss_curve_b64(log, f"{label}: training loss per noise level")
    figs.selection_plot_b64(
        {
            "metric": "fid",
            "candidates": [{"step": 1, "value": 3.0}, {"step": 2, "value": 2.0}],
            "best": {"step": 2},
        },
        f"{label}: checkpoint selection by fid",
    )
    assert len(shown) == 2
    for title, page in shown:
        assert title.x0 >= page.x0 - 1 and title.x1 <= page.x1 + 1, (title, page)  # not clipped


# ----------------------------------------------------------------------------- item 3
def test_runs_with_different_protocols_are_not_comparable(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _quickstart_and_ablation(root, abl_samples=256)
    doc = json.loads(render(collect(root), "json"))
    exps = {e["name"]: e for p in doc["papers"] for e in p["experiments"]}
    (m,) = exps["quickstart_abl"]["ablation"]["metrics"]
    assert m["significance"].startswith("not comparable: 256 samples vs 64")
    rows = {r["run"]: r for f in doc["ran"] for r in f["rows"] if r["run"]}
    assert "not comparable: 256 samples vs 64" in rows["quickstart_abl"]["versus"]
    recs = {r.experiment: r for r in collect(root)}
    d = diff_doc("a", recs["quickstart_digits"].spec, "b", recs["quickstart_abl"].spec,
                 a_run=recs["quickstart_digits"], b_run=recs["quickstart_abl"])  # fmt: skip
    assert d["metrics"][0]["significance"].startswith("not comparable: 256 samples vs 64")


# ----------------------------------------------------------------------------- item 4
def _md_tables(md: str) -> int:
    return len(re.findall(r"^\|[-| ]+\|$", md, flags=re.M))


def test_tex_has_every_markdown_table(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _quickstart_and_ablation(root)
    make_run(root, "sw", "s1", {0: 5.0}, sweep={"noise.levels": "5"}, spec_blocks=blocks(levels=5))
    make_run(root, "sw", "s2", {0: 6.0}, sweep={"noise.levels": "10"}, spec_blocks=blocks())
    make_run(root, "with_paper", "p1", {0: 30.0}, PUB, paper="NCSN", spec_blocks=blocks())
    recs = collect(root)
    md, tex = render(recs, "md"), render(recs, "tex")
    n = _md_tables(md)
    assert n >= 6  # runs, comparison, ablation, sweep, all runs ...
    assert tex.count("\\begin{tabular}") == tex.count("\\bottomrule") == n
    for word in ("What was run", "ablation of quickstart\\_digits", "All runs", "noise.levels"):
        assert word in tex
    engine = next((shutil.which(e) for e in ("pdflatex",) if shutil.which(e)), None)
    if engine is None:
        pytest.skip("no pdflatex on PATH: the TeX was checked for its tables, not compiled")
    doc = tmp_path / "r.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
                   "\\begin{document}\n" + tex + "\n\\end{document}\n")  # fmt: skip
    r = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:]


def test_shared_training_curve_drawn_once(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    first = make_run(root, "base", "t0", {0: 30.0}, spec_blocks=blocks())
    for h in ("t1", "t2"):  # two sample settings of the same training: no train folder of their own
        d = make_run(root, "samp", h, {0: 31.0}, spec_blocks=blocks(), sweep={"sample.samples": h})
        shutil.rmtree(d / "seed-0" / "train")
        stage = d / "seed-0" / "sample-abc" / "stage.json"
        stage.write_text(json.dumps({"train": str(first / "seed-0" / "train")}))
    recs = collect(root)
    assert len({s.train for r in recs for s in r.seeds}) == 1
    html = render(recs, "html")
    assert html.count('alt="loss per noise level"') == 1
    assert html.count("its loss curve is drawn there") == 2


# ----------------------------------------------------------------------------- the first screen
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_first_screen_in_chromium(tmp_path: Path) -> None:
    """A runs folder holding only the quickstart and one ablation: both on the first screen,
    with their floors and intervals. The screenshot is kept in build/test-artefacts/."""
    root = tmp_path / "runs"
    _quickstart_and_ablation(root)
    html = render(add_expected(collect(root), _never_run()), "html")
    first = html[: html.index("Verdicts")]
    for want in ("quickstart_digits", "quickstart_abl", "7.18 ± 0.192", "95% CI", "vs parent"):
        assert want in first
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    page = tmp_path / "report.html"
    page.write_text(html)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "report_first_screen.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1366,768", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000
    probe = (
        "<script>window.addEventListener('load', () => { document.body.setAttribute('data-ran-bottom', "
        "Math.round(document.querySelector('table.ran').getBoundingClientRect().bottom)); });</script>"
    )
    page.write_text(html.replace("</body>", probe + "</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1366,768", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    bottom = re.search(r'data-ran-bottom="(\d+)"', dom)
    assert bottom is not None, dom[-2000:]
    assert int(bottom.group(1)) <= 768  # the runs' table ends within the first screen
