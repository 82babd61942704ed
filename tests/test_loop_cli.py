"""Issue 25 (items 2, 5, 9): `--set` runs labelled as sweep points everywhere, every missing
prerequisite before any work, multirun only with --multirun, invocation records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.cli import app
from dsl.errors import DiagnosticError
from repro import api

QUICK = Path(__file__).resolve().parent.parent / "papers" / "quickstart_digits.exp"
TINY = [
    "train.iterations=4",
    "train.log_every=2",
    "train.checkpoint_every=4",
    "train.batch_size=16",
]
LONG = "evaluate.metrics=[fid_domain(), is_domain(splits = 5)]"


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def sets(*values: str) -> list[str]:
    return [a for v in values for a in ("--set", v)]


# ----------------------------------------------------------------------------- item 9: --multirun
def test_a_comma_in_set_without_multirun_is_an_error_naming_it(tmp_path: Path) -> None:
    for cmd in ("compile", "run"):
        code, out = cli(
            cmd,
            QUICK,
            "--runs" if cmd == "run" else "--no-auto",
            *([str(tmp_path / "runs")] if cmd == "run" else []),
            *sets("train.iterations=10,20"),
        )
        assert code == 2, out
        assert "several values (2) make a sweep, which needs --multirun" in out
        assert "<--set #1>:1:20" in out  # at the comma
        assert "Traceback" not in out
    assert not (tmp_path / "runs").exists()
    with pytest.raises(DiagnosticError, match="--multirun"):
        api.compile(QUICK, sets=["seed=0,1"], compute_auto=False)
    assert len(api.compile(QUICK, sets=["seed=0,1"], compute_auto=False, multirun=True)) == 2
    # a list, a call or a string with commas is one value: no multirun needed
    (s,) = api.compile(QUICK, sets=["evaluate.metrics=[fid_domain, is_domain]"], compute_auto=False)
    assert len(s.evaluate.get("metrics")) == 2


def test_multirun_compile_headers_name_each_sweep_point() -> None:
    code, out = cli("compile", QUICK, "--no-auto", "-m", *sets("train.iterations=10,20", LONG))
    assert code == 0, out
    heads = [ln.split("  #")[0] for ln in out.splitlines() if ln.startswith("experiment ")]
    assert heads == [
        "experiment quickstart_digits[train.iterations=10,evaluate.metrics=[fid_domain(),is_domain…]",
        "experiment quickstart_digits[train.iterations=20,evaluate.metrics=[fid_domain(),is_domain…]",
    ]
    code, out = cli("compile", QUICK, "--no-auto")
    assert [ln.split("  #")[0] for ln in out.splitlines() if ln.startswith("experiment ")] == [
        "experiment quickstart_digits"
    ]


def test_point_label_is_short() -> None:
    assert api.point_label("e") == "e"
    assert api.point_label("e", {"seed": "1"}, ["seed=0,1", "train.iterations = 5"]) == (
        "e[seed=1,train.iterations=5]"
    )
    assert api.short_value("x" * 30) == "x" * 23 + "…"


# ----------------------------------------------------------------------------- item 2: labels, file
def test_set_runs_are_listed_as_sweep_points_with_their_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "mine.exp"  # not under ./papers: only the invocation record knows it
    shutil.copy(QUICK, exp)
    runs = tmp_path / "runs"
    for extra in ((), (LONG,)):
        code, out = cli(
            "run", exp, "--runs", runs, "--device", "cpu", "--until", "train", *sets(*TINY, *extra)
        )
        assert code == 0, out
    code, out = cli("ls", runs)
    assert code == 0, out
    text = " ".join(out.split())  # unwrapped
    assert "file: ?" not in text
    assert text.count(f"file: {exp} --set train.iterations=4") == 2
    code, out = cli("ls", runs, "--json")
    rows = json.loads(out)
    assert {r["file"] for r in rows} == {str(exp)}
    labels = [r["label"] for r in rows]
    base = (
        "quickstart_digits[train.iterations=4,train.log_every=2,train.checkpoint_every=4,train.batch_size=16"
    )
    assert sorted(labels) == sorted([base + "]", base + ",evaluate.metrics=[fid_domain(),is_domain…]"])
    # invocation records: by date, with the command, the --set values and links to the runs
    recs = sorted((runs / ".invocations").glob("*/invocation.json"))
    assert len(recs) == 2
    doc = json.loads(recs[0].read_text())
    assert doc["command"][:2] == ["repro", "run"] and doc["set"] == TINY and doc["file"] == str(exp)
    (link,) = (recs[0].parent / "runs").iterdir()
    assert (link / "spec.json").is_file() and link.resolve() == (runs / doc["runs"][0]["path"]).resolve()
    # diff names both sides by their labels
    a, b = sorted(p.parent for p in runs.glob("quickstart_digits/*/spec.json"))
    code, out = cli("diff", a, b, "--runs", runs)
    assert code == 0, out
    assert "evaluate.metrics=[fid_domain(),is_domain…]" in out and "(quickstart_digits," not in out


# ----------------------------------------------------------------------------- item 5: prerequisites
def test_run_lists_every_missing_prerequisite_before_any_work(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("REPRO_INCEPTION_WEIGHTS", raising=False)
    both = sets('data=cifar10(root="nodata", download=false)', "evaluate.metrics=[fid]", *TINY)
    code, out = cli("run", QUICK, "--runs", "runs", "--device", "cpu", *both)
    assert code == 2, out  # a missing dataset: the input names something that is not there
    assert "2 prerequisite(s) missing; nothing was run" in out
    assert "cifar10: no files under nodata (download = false)" in out
    assert "Inception-v3 weights are needed for fid" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "nodata").exists()
    # only the weights: a run-time problem, exit 1; --until train does not need them
    code, out = cli("run", QUICK, "--runs", "runs", "--device", "cpu", *sets("evaluate.metrics=[fid]", *TINY))
    assert code == 1 and "1 prerequisite(s) missing" in out, out
    assert [
        m["kind"] for m in api.prerequisites(api.compile(QUICK, sets=["evaluate.metrics=[fid]"]), "train")
    ] == []


KEEP_GOING = """\
experiment bad {
    data mixture2d { }
    noise none { }
    network mlp { hidden = 16, layers = 2, act = softplus }
    loss ssm_vr { }
    train { optimizer = sgd(lr = 1e30), batch_size = 32, iterations = 30, checkpoint_every = 10 }
    sample { samples = 64, init = uniform(low = -8, high = 8), stage langevin { steps = 5, step_size = 0.1 } }
    evaluate { metrics = [mode_weights], samples = 64 }
}
experiment good extends bad {
    train.optimizer = adam(lr = 1e-3)
}
"""


def test_keep_going_runs_the_rest_of_a_file_after_a_failing_run(tmp_path: Path) -> None:
    """Without --keep-going the file stops at the diverging run; with it the next run completes,
    the failure is named, and the exit code is 1."""
    f = tmp_path / "kg.exp"
    f.write_text(KEEP_GOING)
    runs = tmp_path / "runs"
    code, out = cli("run", str(f), "--device", "cpu", "--runs", str(runs))
    assert code == 1 and "loss became nan" in out and not list(runs.glob("good/*/seed-0/eval-*/DONE"))
    code, out = cli("run", str(f), "--device", "cpu", "--runs", str(runs), "--keep-going")
    assert code == 1 and "bad: failed: the training loss became nan" in out
    assert "1 of 2 runs failed" in out and "Traceback" not in out
    assert len(list(runs.glob("good/*/seed-0/eval-*/DONE"))) == 1
