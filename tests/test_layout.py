"""ncsn_core.layout: recorded paths are relative, so a runs folder moved whole still reports
and resumes without recomputing anything."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_runs import TOY
from typer.testing import CliRunner

from dsl.cli import app
from ncsn_core import layout

# The toy run of test_runs, two sweep points sharing one train stage, evaluating more samples
# than the sample stage keeps (the cached evaluation samples).
SWEPT = TOY.replace("samples = 200 }", "samples = 300 }").replace(
    "\n}\n", "\n    sweep sample.annealed_langevin.step_size = [0.05, 0.02]\n}\n"
)


def test_record_and_resolve(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = layout.run_dir(runs, "a", "h1")
    other = layout.stage_dir(layout.seed_dir(layout.run_dir(runs, "b", "h2"), 0), layout.TRAIN)
    own = layout.stage_dir(layout.seed_dir(run, 0), layout.SAMPLE, "s1")
    for d in (other, own):
        d.mkdir(parents=True)
    assert layout.record(own, run) == "seed-0/sample-s1"
    assert layout.record(other, run) == "../../b/h2/seed-0/train"
    assert layout.resolve("seed-0/sample-s1", run) == own
    assert layout.resolve("../../b/h2/seed-0/train", run) == other
    # Older records: absolute, or relative to where the run was started: their tail under runs/.
    assert layout.resolve(str(other), run) == other
    assert layout.resolve("elsewhere/runs/b/h2/seed-0/train", run, runs) == other
    assert layout.resolve("seed-0/nothing", run, runs) is None and layout.resolve("", run) is None


def test_listings_and_predicates(tmp_path: Path) -> None:
    run = tmp_path / "e" / "h"
    for k in (10, 2):
        (layout.seed_dir(run, k)).mkdir(parents=True)
    seed = layout.seed_dir(run, 2)
    done, partial = (layout.stage_dir(seed, layout.EVAL, h) for h in ("b", "a"))
    for d in (done, partial):
        d.mkdir()
    (done / layout.DONE).write_text("")
    (done / layout.STAGE).write_text(json.dumps({"hash": "b"}))
    (done / layout.METRICS).write_text(json.dumps({"fid": 1.0}))
    assert [layout.seed_number(s) for s in layout.seed_dirs(run)] == [2, 10]
    assert layout.stage_dirs(seed, layout.EVAL) == [partial, done]
    assert layout.stage_dirs(seed, layout.TRAIN) == []
    assert layout.is_complete(done) and not layout.is_complete(partial)
    assert layout.is_complete_stage(done, "b") and not layout.is_complete_stage(done, "a")
    assert layout.find_run_dirs(tmp_path) == [run] and layout.find_run_dirs(run) == [run]
    ck = layout.checkpoint_file(tmp_path, 20)
    assert ck.name == "step-00000020.pt" and layout.checkpoint_step(ck) == 20
    assert layout.checkpoint_step(ck.with_name(f".{ck.name}.1-ab.tmp")) is None


def _stage_files(runs: Path) -> dict[str, int]:
    """mtime of every file of the runs folder but spec.json and env.json, which each
    `repro run` rewrites (the stages, the cached evaluation samples must not be)."""
    out = {}
    for p in runs.rglob("*"):
        rel = p.relative_to(runs)
        if p.is_file() and p.name not in (layout.SPEC, layout.ENV) and not rel.parts[0].startswith("."):
            out[rel.as_posix()] = p.stat().st_mtime_ns
    return out


@pytest.mark.slow
def test_moved_runs_folder_reports_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = tmp_path / "toy.exp"
    exp.write_text(SWEPT)
    runs = tmp_path / "a" / "runs"
    cli = CliRunner()
    r = cli.invoke(app, ["run", str(exp), "--runs", str(runs), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.output.count("sample:") == 2 and "train: reusing" in r.output
    papers = tmp_path / "papers"  # no published numbers: only what is on disk
    papers.mkdir()
    before = cli.invoke(app, ["report", str(runs), "--papers", str(papers)]).output

    # Two runs, one train folder (the second run reuses the first's); everything recorded is
    # relative: no path of the machine appears in any file of the runs folder.
    trains = list(runs.glob("toy/*/seed-0/train"))
    assert len(trains) == 1
    recorded = []
    for f in runs.rglob("*.json"):
        if ".invocations" in f.parts:  # the command as typed (history, not a run folder's record)
            continue
        assert str(tmp_path) not in f.read_text(), f
        st = json.loads(f.read_text())
        recorded += [st[k] for k in ("train", "samples_from") if f.name == layout.STAGE and k in st]
    assert sorted(recorded)[0].startswith("../../toy/") and len(recorded) == 4
    assert "2 complete seed(s), 0 incomplete" in before
    assert before.count("seed 0: complete | 60") == 2  # iterations: also through the reused train

    moved = tmp_path / "b" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(str(runs), str(moved))
    monkeypatch.chdir(moved.parent)  # nothing may depend on the old folder or the directory
    after = cli.invoke(app, ["report", str(moved), "--papers", str(papers)]).output
    assert after == before.replace(str(runs), str(moved))

    stages = _stage_files(moved)
    assert len(list(moved.glob("toy/*/seed-0/evalsamples-*.pt"))) == 2
    r = cli.invoke(app, ["run", str(exp), "--runs", str(moved), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "resuming" not in r.output and "sample:" not in r.output  # nothing trained or sampled
    assert _stage_files(moved) == stages  # no stage file rewritten, none added
    assert not (tmp_path / "a" / "runs").exists()


def test_read_json_is_bounded(tmp_path: Path) -> None:
    """The runs-folder reader: size and depth limits, regular files only, named errors."""
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"a": [1, {"b": 2}]}))
    assert layout.read_json(p) == {"a": [1, {"b": 2}]}
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(layout.DamagedFile, match="nested deeper than 64"):
        layout.read_json(p)
    p.write_text("[" * 10 + "]" * 10)
    assert layout.read_json(p, max_depth=10) is not None
    with pytest.raises(layout.DamagedFile, match="nested deeper than 9"):
        layout.read_json(p, max_depth=9)
    p.write_text(json.dumps(list(range(1000))))
    with pytest.raises(layout.DamagedFile, match="limit"):
        layout.read_json(p, max_bytes=100)
    p.write_bytes(b"\xff{")
    with pytest.raises(ValueError, match="not valid JSON"):  # a ValueError: old readers catch it
        layout.read_json(p)
    with pytest.raises(FileNotFoundError):
        layout.read_json(tmp_path / "missing.json")
    with pytest.raises(layout.DamagedFile, match="directory"):
        layout.read_json(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.json")
        with pytest.raises(layout.DamagedFile, match="FIFO"):
            layout.read_json(tmp_path / "fifo.json")
