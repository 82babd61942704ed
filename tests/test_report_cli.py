"""`repro report`, `repro ls` and `repro diff` through the CLI on fake run folders shaped like
real ones (tests/test_reports.make_run) and on a tiny real run of papers/quickstart_digits.exp:
the Markdown's content, the JSON documents, the terminal width, the HTML in a real headless
Chromium and the LaTeX through a TeX engine (each skipped, saying why, when not installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reports import blocks, make_run
from typer.testing import CliRunner

from dsl.cli import app
from ncsn_core import layout

PAPER_PROTOCOL = {"samples": 50000, "reference": "train", "checkpoint": "best_fid", "iterations": 200000}
T1 = [
    {"label": "NCSN, Table 1", "values": {"fid": {"value": 25.32, "error": None}}, "protocol": PAPER_PROTOCOL}
]
MATCH = [
    {
        "label": "Table M",
        "values": {"fid": {"value": 25.0, "error": 1.0}},
        "protocol": {"samples": 100, "reference": "train", "checkpoint": "last", "iterations": 5},
    }
]
SOURCE = "# the comparison file\nexperiment cmp_ncsn { }\nexperiment cmp_ansn extends cmp_ncsn { }\n"


def cli(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    # The paper's protocol, a quick run: not comparable, and why.
    make_run(root, "quick_paper", "q1", {0: 39.0}, T1, paper="NCSN", spec_blocks=blocks(), samples=1000)
    # The same protocol: a verdict.
    make_run(root, "matching", "m1", {0: 25.5, 1: 26.5}, MATCH, paper="NCSN", spec_blocks=blocks())
    # A released checkpoint: its protocol column says so; no checkpoint/iteration reasons.
    released = [{**T1[0], "protocol": {**PAPER_PROTOCOL, "samples": 100}}]
    make_run(root, "released", "r1", {0: 26.0}, released, paper="NCSN", spec_blocks=blocks(), released=True)
    # A sweep over two settings; values sort as numbers (5 < 10 < 20).
    for lv in (5, 10, 20):
        for it in (100, 1000):
            make_run(
                root, "grid", f"g{lv}-{it}", {0: 100.0 / lv + it / 1000}, paper="NCSN",
                spec_blocks=blocks(levels=lv, iterations=it), sweep={"noise.levels": str(lv), "train.iterations": str(it)},
            )  # fmt: skip
    # An ablation: extends `base` and changes the number of levels, inheriting its published numbers.
    make_run(root, "base", "b1", {0: 25.2, 1: 25.8}, MATCH, paper="NCSN", spec_blocks=blocks())
    make_run(
        root, "abl", "a1", {0: 30.0, 1: 31.0}, MATCH, paper="NCSN", spec_blocks=blocks(levels=5), parent="base"
    )  # fmt: skip
    # Two experiments of one file that differ only in method.
    make_run(
        root, "cmp_ncsn", "c1", {0: 60.0, 1: 62.0}, paper="ANSN", spec_blocks=blocks(), source=SOURCE,
        metric="fid_domain", floor=22.5, seconds=(30.0, 4.0, 1.0), nfe=1000,
    )  # fmt: skip
    make_run(
        root, "cmp_ansn", "c2", {0: 50.0, 1: 51.0}, paper="ANSN", source=SOURCE, parent="cmp_ncsn",
        spec_blocks=blocks(noise="adaptive", stage="preconditioned_langevin"),
        metric="fid_domain", floor=22.5, seconds=(40.0, 5.0, 1.0), nfe=1000,
    )  # fmt: skip
    # Still training: failed at train when no lock is held.
    make_run(root, "broken", "x1", {0: None}, T1, paper="NCSN", spec_blocks=blocks())
    return root


@pytest.fixture
def papers(tmp_path: Path) -> Path:
    d = tmp_path / "papers"
    d.mkdir()
    (d / "more.exp").write_text(
        """experiment never_run {
    paper = "NCSN"
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }
    published "Table 9" { fid = 12.5, protocol { samples = 50k, reference = train } }
}

experiment no_number {
    paper = "NCSN"
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }
}
"""
    )
    return d


def _section(text: str, name: str) -> str:
    return text.split(f"### {name}\n")[1].split("\n### ")[0].split("\n## ")[0]


def test_markdown_answers_questions(lab: Path, papers: Path) -> None:
    md = cli("report", str(lab), "-f", "md", "--papers", str(papers))
    # grouped by paper, then experiment
    assert md.index("## ANSN") < md.index("### cmp_ansn") < md.index("## NCSN") < md.index("### matching")
    # not comparable, and why
    q = _section(md, "quick_paper")
    assert "not comparable [1]" in q
    assert (
        "1,000 samples vs the paper's 50,000: FID from 1,000 samples reads ≈39" in q
        and "ermongroup/ncsnv2#8" in q
    )
    assert "checkpoint: last vs best by FID: moves FID by ~0.4 (yang-song/score_sde_pytorch#18)" in q
    assert "5 training iterations vs the paper's 200,000" in q
    # a verdict where the protocol matches
    m = _section(md, "matching")
    assert "within published uncertainty" in m and "not comparable" not in m
    assert "100 samples · ref cifar10:train · last · 5 it" in m
    # released: the protocol says so, and no checkpoint or iteration reason
    r = _section(md, "released")
    assert "released checkpoint" in r and "within 10%" in r and "not comparable" not in r
    # the experiments not run: one line with their count, not the catalogue
    assert (
        "Not run: 1 experiment(s) with 1 published result(s) to reproduce, and 1 without a published number"
        in md
    )
    assert "never_run" not in md and "no_number" not in md and "| Table 9" not in md
    full = cli("report", str(lab), "-f", "md", "--papers", str(papers), "--all")
    assert "| Table 9" in _section(full, "never_run") and "not run" in _section(full, "never_run")


def test_sweep_pivot_and_numeric_order(lab: Path) -> None:
    md = cli("report", str(lab), "-f", "md", "--papers", str(lab / "none"))
    g = _section(md, "grid")
    header = next(line for line in g.splitlines() if "noise.levels \\ train.iterations" in line)
    assert re.search(r"\|\s*100\s*\|\s*1000\s*\|", header)
    rows = [line.split("|")[1].strip() for line in g.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    assert rows == ["5", "10", "20"]  # as numbers, not "10" < "20" < "5"
    # 100/20 + 0.1 is the lowest FID, but one seed each cannot tell it from the others
    assert "| 5.1 " in g and " **(best)**" not in g.split("(rows:")[1] and "no distinguishable best" in g


def test_ablation_against_parent(lab: Path) -> None:
    md = cli("report", str(lab), "-f", "md", "--papers", str(lab / "none"))
    a = _section(md, "abl")
    assert "(extends base)" in a
    assert "**Ablation of base**: changed noise.levels 10 → 5." in a
    assert "an ablation of base (noise.levels 10 → 5): compared with its parent's run instead" in a
    assert "within" not in a.split("**Ablation")[0]  # no verdict against the paper for a changed setting
    row = next(line for line in a.splitlines() if line.startswith("| fid"))
    assert "25.5 ± 0.424" in row and "30.5 ± 0.707" in row and "+5" in row and "| significant" in row


def test_method_comparison(lab: Path) -> None:
    md = cli("report", str(lab), "-f", "md", "--papers", str(lab / "none"))
    m = md.split("## Methods compared")[1].split("\n## ")[0]
    assert "### NCSN vs ANSN (ANSN)" in m
    assert "fid_domain ↓ (floor 22.5)" in m
    ncsn = next(line for line in m.splitlines() if line.startswith("| NCSN"))
    ansn = next(line for line in m.splitlines() if line.startswith("| ANSN"))
    assert "61 ± 1.41" in ncsn and "| 35 " in ncsn and "| 1000 " in ncsn
    assert "50.5 ± 0.707" in ansn and "| 46 " in ansn
    assert "ANSN vs NCSN: fid_domain Δ -10.5: significant at 0.05 (p = 0.027, Welch's t, n = 2 vs 2)" in m
    assert "grid.png" in m  # one grid per method


def test_report_json(lab: Path, papers: Path) -> None:
    doc = json.loads(cli("report", str(lab), "--json", "--papers", str(papers)))
    exps = {e["name"]: e for p in doc["papers"] for e in p["experiments"]}
    q = exps["quick_paper"]["rows"][0]
    assert q["verdict"] == "not comparable" and any("1,000 samples" in x for x in q["reasons"])
    assert exps["matching"]["rows"][0]["verdict"] == "within published uncertainty"
    assert exps["abl"]["ablation"]["changed"] == [{"key": "noise.levels", "parent": "10", "value": "5"}]
    assert exps["grid"]["sweep"]["keys"] == ["noise.levels", "train.iterations"]
    (g,) = doc["methods"]
    assert [r["method"] for r in g["rows"]] == ["NCSN", "ANSN"] and g["rows"][0]["floors"] == {
        "fid_domain": 22.5
    }
    ncsn = next(p for p in doc["papers"] if p["name"] == "NCSN")
    assert ncsn["to_reproduce"][0]["experiment"] == "never_run" and ncsn["unpublished"] == ["no_number"]


def test_terminal_fits_100_columns(lab: Path) -> None:
    text = cli("report", str(lab), "-f", "text", "--papers", str(lab / "none"))
    assert "quick_paper" in text and "not comparable [1]" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    # the text report leads with what was run, as the markdown and HTML reports do
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "What was run" in line)
    papers = next(i for i, line in enumerate(lines) if "published in" in line)
    ran = "\n".join(lines[first:papers])
    assert first > 0 and "grid" in ran and "[noise.levels =" in ran and "2 complete" in ran
    assert "Not run:" not in text or text.index("Not run:") < text.index("published in")


def _hold_lock(stage: Path):  # type: ignore[no-untyped-def]
    from filelock import FileLock

    lock = FileLock(str(layout.lock_file(stage)))
    lock.acquire(timeout=0)
    layout.owner_file(stage).write_text(json.dumps({"pid": os.getpid(), "host": "here"}))
    return lock


def test_ls_statuses(lab: Path, tmp_path: Path) -> None:
    rows = {
        r["experiment"]: r for r in json.loads(cli("ls", str(lab), "--json", "--papers", str(lab / "none")))
    }
    assert rows["matching"]["status"] == "done" and rows["matching"]["hash"] == "m1"
    assert rows["matching"]["settings"]["noise.levels"] == "10"
    assert rows["matching"]["metrics"]["fid"]["text"] == "26 ± 0.707"
    assert rows["broken"]["status"] == "failed" and "failed at train" in rows["broken"]["detail"]
    lock = _hold_lock(lab / "broken" / "x1" / "seed-0" / "train")
    try:
        rows = {r["experiment"]: r for r in json.loads(cli("ls", str(lab), "--json", "--status", "running"))}
        assert list(rows) == ["broken"]
    finally:
        lock.release()
    # stale: the source file now compiles to another hash
    f = tmp_path / "m.exp"
    f.write_text(
        "experiment matching {\n    data digits { }\n"
        "    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }\n}\n"
    )
    rows = json.loads(cli("ls", str(lab), "--json", "--file", str(f)))
    assert [(r["experiment"], r["status"]) for r in rows] == [("matching", "stale")]
    assert json.loads(cli("ls", str(lab), "--json", "--status", "stale", "--file", str(f)))[0]["file"] == str(
        f
    )
    text = cli("ls", str(lab))
    assert "grid[noise.levels=5,train.iterations=100]" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_diff_run_folders_and_files(lab: Path, write) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("diff", str(lab / "base" / "b1"), str(lab / "abl" / "a1"), "--json"))
    assert doc["settings"] == [
        {"key": "noise.levels", "a": "10", "b": "5", "a_from": "spec.json", "b_from": "spec.json"}
    ]
    (m,) = doc["metrics"]
    assert m["metric"] == "fid" and m["delta"] == pytest.approx(5.0)
    assert m["significance"] == "significant at 0.05 (p = 0.024, Welch's t, n = 2 vs 2)"
    assert m["test"]["p"] == pytest.approx(0.0236, abs=1e-4) and m["test"]["n"] == [2, 2]
    f = write(
        "f.exp",
        """experiment a {
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }
}
experiment b extends a {
    noise.levels = 5
}
""",
    )
    doc = json.loads(
        cli("diff", f"{f}:a", f"{f}:b", "--json", "--set", "noise.sigma_max=2", "--runs", str(lab))
    )
    by = {c["key"]: c for c in doc["settings"]}
    assert list(by) == ["noise.levels"]
    assert by["noise.levels"]["a_from"].startswith("written at") and by["noise.levels"]["b_from"].startswith(
        "written at"
    )
    doc = json.loads(cli("diff", f"{f}:a", str(lab / "base" / "b1"), "--json"))
    assert doc["settings"]
    text = cli("diff", f"{f}:b", f"{f}:a")
    assert "noise.levels: 5 → 10" in text


def test_diff_provenance_notes(write) -> None:  # type: ignore[no-untyped-def]
    f = write(
        "g.exp",
        """experiment a {
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }
}
experiment b extends a {
    data digits { flip = true }
}
""",
    )
    doc = json.loads(cli("diff", f"{f}:a", f"{f}:b", "--json"))
    (c,) = doc["settings"]
    assert c["key"] == "data.flip" and c["a_from"] == "default" and c["b_from"].startswith("written at")
    r = CliRunner().invoke(app, ["diff", str(f), f"{f}:a"])
    assert r.exit_code == 2 and "name one" in r.output


# ----------------------------------------------------------------------------- real run, browser, TeX
@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real run of papers/quickstart_digits.exp (trained, sampled; no evaluation)."""
    runs = tmp_path_factory.mktemp("real") / "runs"
    sets = ["train.iterations=20", "train.log_every=5", "train.checkpoint_every=10", "sample.samples=16",
            "sample.annealed_langevin.steps_per_level=2", "sample.annealed_langevin.record_every=1"]  # fmt: skip
    args = ["run", "papers/quickstart_digits.exp", "--runs", str(runs), "--until", "sample"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return runs


def test_real_run_report_ls_diff(real_runs: Path, tmp_path: Path) -> None:
    md = cli("report", str(real_runs), "-f", "md", "--papers", "papers")
    q = _section(md, "quickstart_digits")
    assert "NCSN method on 8x8 digits" in q
    assert "grid.png" in md and "ncsn_cifar10" not in md and "ncsnv2_bedroom" not in md
    assert re.search(r"Not run: \d+ experiment\(s\) with \d+ published result\(s\)", md)
    (row,) = json.loads(cli("ls", str(real_runs), "--json", "--papers", "papers"))
    # Made with --set: compared with the file compiled under the same values (overrides.json).
    assert row["status"] == "done" and row["set"][0] == "train.iterations=20"
    assert row["file"] == "papers/quickstart_digits.exp" and row["settings"]["train.iterations"] == "20"
    assert "--set train.iterations=20" in cli("ls", str(real_runs), "--papers", "papers")
    # The file edited afterwards: the same --set values now compile to another hash.
    edited = tmp_path / "quickstart_digits.exp"
    edited.write_text(
        Path("papers/quickstart_digits.exp").read_text().replace("batch_size = ", "batch_size = 1 + ")
    )
    (row,) = json.loads(cli("ls", str(real_runs), "--json", "--file", str(edited)))
    assert row["status"] == "stale" and "now compiles to" in row["detail"]
    run = next(layout.find_run_dirs(real_runs).__iter__())
    doc = json.loads(cli("diff", str(run), "papers/quickstart_digits.exp", "--json"))
    by = {c["key"]: c for c in doc["settings"]}
    assert by["train.iterations"]["a"] == "20" and by["train.iterations"]["b"] == "5000"
    assert by["train.iterations"]["b_from"].startswith("written at papers/quickstart_digits.exp:")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_html_in_a_real_browser(real_runs: Path, lab: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    for runs in (real_runs, lab):
        out = tmp_path / f"{runs.name}.html"
        cli("report", str(runs), "-f", "html", "--out", str(out), "--papers", str(tmp_path / "none"))
        html = out.read_text()
        assert "http://" not in html and "https://" not in html  # self-contained
        probe = (
            "<script>window.addEventListener('load', () => { for (const i of document.images) "
            "i.setAttribute('data-natural-width', i.naturalWidth); "
            "document.body.setAttribute('data-probed', document.images.length); });</script>"
        )
        page = tmp_path / f"{runs.name}-probe.html"
        page.write_text(html.replace("</body>", probe + "</body>"))
        profile = tmp_path / f"profile-{runs.name}"
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        assert "data-probed" in dom, dom[-2000:]
        widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
        assert widths and all(w > 0 for w in widths), widths  # every image decoded
        names = ["quickstart_digits"] if runs is real_runs else ["quick_paper", "cmp_ansn", "grid"]
        assert all(f">{n}<" in dom for n in names)
        if runs is real_runs:
            assert 'alt="loss per noise level"' in dom and 'alt="intermediate samples"' in dom


def _tex() -> str | None:
    for name in ("pdflatex", "lualatex", "xelatex"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_latex_compiles(lab: Path, tmp_path: Path) -> None:
    engine = _tex()
    if engine is None:
        pytest.skip("no TeX engine on PATH (pdflatex, lualatex or xelatex)")
    tex = cli("report", str(lab), "-f", "tex", "--papers", str(tmp_path / "none"))
    doc = tmp_path / "r.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
                   "\\begin{document}\n" + tex + "\n\\end{document}\n")  # fmt: skip
    r = subprocess.run(
        [engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "r.pdf").stat().st_size > 1000
