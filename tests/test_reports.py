"""`repro report` on complete, partial and missing runs, in all three formats."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.cli import app
from reports.reporter import add_expected, collect, render, verdict

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def blocks(
    noise: str = "geometric", network: str = "mlp", levels: int = 10, iterations: int = 5, stage: str = "annealed_langevin"
) -> dict:  # fmt: skip
    """The blocks of a spec.json as RunSpec.canonical() writes them."""
    return {
        "data": {"name": "digits", "params": {"dequantize": "uniform", "flip": False}},
        "noise": {"name": noise, "params": {"levels": levels, "sigma_max": 1.0, "sigma_min": 0.01}},
        "network": {"name": network, "params": {"hidden": 512, "layers": 4}},
        "loss": {"name": "dsm", "params": {"weight": {"expr": "sigma ** 2"}}},
        "train": {
            "name": "train",
            "params": {"iterations": iterations, "batch_size": 128, "precision": "auto"},
        },
        "sample": {"name": "sample", "params": {"samples": 64, "checkpoint": "last", "compile": "off"}},
        "stages": [{"name": stage, "params": {"steps_per_level": 100, "step_size": 2e-5}}],
        "evaluate": {
            "name": "evaluate",
            "params": {"metrics": ["fid"], "samples": 100, "reference": "train"},
        },
    }


def make_run(
    root: Path,
    exp: str,
    h: str,
    seeds: dict[int, float | None],
    published=None,
    sweep=None,
    paper="P",
    *,
    spec_blocks=None,
    parent=None,
    source="",
    metric="fid",
    samples=100,
    extra_metrics=None,
    floor=None,
    matched_floor=None,
    seconds=(10.0, 2.0, 1.0),
    nfe=1000,
    released=False,
):  # type: ignore[no-untyped-def]
    """A run folder shaped like ncsn_core.runner's (docs/architecture.md, "Runs on disk")."""
    d = root / exp / h
    d.mkdir(parents=True)
    spec = {
        "experiment": exp,
        "paper": paper,
        "hash": h,
        "train_hash": "t" + h,
        "sample_hash": "s" + h,
        "eval_hash": "e" + h,
        **(spec_blocks or {}),
        "sweep": sweep or {},
        "published": published or [],
        **({"parent": parent} if parent else {}),
        **({"released": {"path": "x.pth", "format": "ncsn"}} if released else {}),
    }
    (d / "spec.json").write_text(json.dumps(spec))
    if source:
        (d / "source.exp").write_text(source)
    for k, fid in seeds.items():
        s = d / f"seed-{k}"
        (s / "train").mkdir(parents=True)
        (s / "train" / "log.jsonl").write_text(
            "\n".join(
                json.dumps({"step": i, "loss": 2.0 / i, "per_level": [3.0 / i, 1.0 / i]}) for i in range(1, 6)
            )
            + "\n{cut by a kill"
        )
        if fid is None:
            continue  # still training
        (s / "train" / "results.json").write_text(json.dumps({"iterations": 5, "seconds": seconds[0]}))
        (s / "train" / "DONE").write_text("x")
        (s / "sample-abc").mkdir()
        (s / "sample-abc" / "grid.png").write_bytes(PNG)
        (s / "sample-abc" / "results.json").write_text(
            json.dumps({"samples": 64, "seconds": seconds[1], "nfe_per_sample": nfe})
        )
        (s / "sample-abc" / "DONE").write_text("x")
        e = s / "eval-def"
        e.mkdir()
        proto = {"samples": samples, "reference": "cifar10:train", "reference_split": "train",
                 "implementation": "torch-fidelity 0.4.0", "inception_weights": "pt_inception-2015-12-05.pth",
                 "inception_weights_sha256": "f" * 64, "iterations_trained": 5}  # fmt: skip
        if released:
            proto["weights"] = "released checkpoint x.pth (sha256 abc, format ncsn)"
        if floor is not None:
            proto["domain_classifier"] = {"sha256": "c" * 64, "floor_fid_domain_test_vs_train": floor}
        if matched_floor is not None:  # the same metric for as many real images as samples
            proto["domain_floor"] = {"what": f"{samples} real train images", metric: matched_floor}
        vals = {metric: fid, **{m: v + k for m, v in (extra_metrics or {}).items()}}
        (e / "metrics.json").write_text(json.dumps({**vals, "seconds": seconds[2], "protocol": proto}))
        (e / "DONE").write_text("x")
    return d


PUB = [
    {
        "label": "Table 1",
        "values": {"fid": {"value": 25.0, "error": 1.0}, "inception_score": {"value": 8.87, "error": 0.12}},
    }
]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "complete", "aaa", {0: 25.5, 1: 26.5}, PUB)
    make_run(root, "partial", "bbb", {0: None}, PUB)
    make_run(root, "sw", "c1", {0: 30.0}, sweep={"noise.levels": "5"})
    make_run(root, "sw", "c2", {0: 20.0}, sweep={"noise.levels": "10"})
    return root


def test_collect_and_statistics(runs: Path) -> None:
    recs = {r.experiment + r.hash: r for r in collect(runs)}
    c = recs["completeaaa"]
    assert c.stat("fid") == pytest.approx((26.0, 0.7071, 2), rel=1e-3)
    assert recs["partialbbb"].seeds[0].status == "training"
    assert len(recs["partialbbb"].seeds[0].log) == 5  # the line cut by a kill is skipped


def test_floor_prefers_the_sample_count_matched_one(tmp_path: Path) -> None:
    """A method table's floor: the metric for as many real images as the run has samples when
    the evaluation recorded it (FID at 128 samples is far above the whole-split 0.08), else the
    domain classifier's whole-split value."""
    from reports.reporter import floor_of

    make_run(tmp_path, "a", "h1", {0: 30.0}, metric="fid_domain", floor=0.08, matched_floor=7.2, samples=128)
    make_run(tmp_path, "b", "h2", {0: 30.0}, metric="fid_domain", floor=0.08)
    by = {r.experiment: r for r in collect(tmp_path)}
    assert floor_of(by["a"], "fid_domain") == 7.2 and floor_of(by["b"], "fid_domain") == 0.08


def test_verdicts() -> None:
    assert verdict(25.5, 25.0, 1.0, 0.1) == "within published uncertainty"
    assert verdict(27.0, 25.0, 1.0, 0.1) == "within 10%"
    assert verdict(40.0, 25.0, None, 0.1) == "off"


def test_markdown(runs: Path) -> None:
    text = render(collect(runs), "md")
    assert "| complete" in text and "26 ± 0.707" in text and "+1" in text and "+4.0%" in text
    assert "within published uncertainty" in text
    assert "incomplete (1 training)" in text  # the partial run keeps its published rows, with its state
    assert "inception_score" in text and "not run" not in text.split("## Sweeps")[0].split("complete")[1][:10]
    sw = text.split("### sw")[1]
    # one seed each, no per-sample values: the lower FID is not a distinguishable best
    assert (
        "| 20 " in sw
        and " **(best)**" not in sw.split("one row per")[1]
        and "fid: no distinguishable best" in sw
    )


def test_not_run_rows_never_disappear(runs: Path) -> None:
    # By default one line with a count; with --all the rows in full.
    expected = [{"experiment": "never", "paper": "P", "hash": "zzz", "published": PUB, "sweep": {}}]
    text = render(add_expected(collect(runs), expected), "md")
    assert "Not run: 1 experiment(s) with 1 published result(s) to reproduce" in text
    assert "### never" not in text and "never:" not in text
    full = render(add_expected(collect(runs), expected), "md", show_all=True)
    section = full.split("### never")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("| Table 1")]
    assert len(rows) == 2 and all("not run" in r for r in rows)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[override]
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained(runs: Path) -> None:
    text = render(collect(runs), "html")
    p = _Tags()
    p.feed(text)
    tags = [t for t, _ in p.tags]
    assert tags[0] == "html" and "table" in tags and "thead" in tags
    imgs = [a for t, a in p.tags if t == "img"]
    assert imgs and all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    assert any(a["alt"] == "loss per noise level" for a in imgs)
    assert not any(a.get("src", "").startswith("http") for _, a in p.tags)


def test_latex_booktabs(runs: Path) -> None:
    text = render(collect(runs), "tex")
    assert text.count("\\toprule") == text.count("\\bottomrule") >= 2
    assert "$\\pm$" in text and "inception\\_score" in text


@pytest.mark.parametrize("fmt", ["md", "html", "tex"])
def test_empty_and_missing_runs_dir(tmp_path: Path, fmt: str) -> None:
    for d in (tmp_path / "empty", tmp_path / "missing"):
        if d.name == "empty":
            d.mkdir()
        text = render(collect(d), fmt)
        assert isinstance(text, str)
    assert "No runs found" in render(collect(tmp_path / "missing"), "md")


def test_cli_report_writes_file(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = CliRunner().invoke(
        app, ["report", str(runs), "--format", "html", "--out", str(out), "--papers", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    r = CliRunner().invoke(app, ["report", str(runs), "--format", "pdf"])
    assert r.exit_code == 2
