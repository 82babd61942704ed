"""`repro verify` (issue 26.4): a stage recomputed from its recorded inputs in a scratch folder,
compared with what is on disk; the run itself is never written."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from dsl.commands import verify as command
from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import layout
from ncsn_core.runner import run_spec
from ncsn_core.verify import TOLERANCE, Diff, judge

# Like conftest's BASE, on 2-d points so that every stage takes a second: a checkpoint and a
# logged loss every 2 steps, three sampling batches, one cheap metric.
TINY = """\
experiment tiny {
    data mixture2d { n_train = 500 }
    noise geometric { sigma_max = 5.0, sigma_min = 0.1, levels = 4 }
    network mlp { hidden = 16, layers = 2, conditional = true }
    loss dsm { }
    train { batch_size = 32, iterations = 6, checkpoint_every = 2, log_every = 2 }
    sample {
        samples = 20, batch_size = 8, init = uniform(low = -8, high = 8)
        stage annealed_langevin { steps_per_level = 2, step_size = 0.05 }
    }
    evaluate { metrics = [mmd], samples = 20 }
}
"""


def _app() -> typer.Typer:
    app = typer.Typer()
    command.register(app)

    @app.command("noop")  # a second command, so that typer keeps `verify` as a subcommand
    def _noop() -> None: ...

    return app


def cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(_app(), ["verify", *args, "--quiet"])


def _make(runs: Path, tmp: Path, threads: int | None = None) -> Path:
    f = tmp / "tiny.exp"
    f.write_text(TINY, encoding="utf-8")
    (spec,) = compile_file(f)
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True, threads=threads)
    return layout.run_dir(runs, "tiny", spec.hash())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run, made once; each test verifies a copy (a copied runs folder)."""
    tmp = tmp_path_factory.mktemp("made")
    return _make(tmp / "runs", tmp)


@pytest.fixture
def run(made: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "copied-runs"
    shutil.copytree(made.parent.parent, runs)
    return runs / made.parent.name / made.name


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    } | {
        p.relative_to(folder).as_posix() + "/": (p.stat().st_mtime_ns, "")
        for p in folder.rglob("*")
        if p.is_dir()
    }


def test_a_fresh_run_verifies_bit_identical_and_is_never_written(run: Path) -> None:
    before = _snapshot(run.parent.parent)
    r = cli(str(run))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split(" [")[0] for ln in lines] == [
        "seed-0 train: bit-identical",
        "seed-0 sample: bit-identical",
        "seed-0 evaluate: bit-identical",
    ]
    assert "6 of 6 steps: loss at 3 logged steps, 3 checkpoints" in lines[0]
    assert "3 of 3 batches, 20 samples" in lines[1]
    assert _snapshot(run.parent.parent) == before  # not a file, a folder or an mtime changed


def test_altered_metrics_json_differs_where_it_was_changed(run: Path) -> None:
    (ev,) = run.glob("seed-0/eval-*")
    m = json.loads((ev / layout.METRICS).read_text())
    m["mmd"] += 0.25
    (ev / layout.METRICS).write_text(json.dumps(m))
    r = cli(str(run), "--stage", "evaluate")
    assert r.exit_code == 1, r.output
    assert "seed-0 evaluate: differs at metric mmd by 0.25" in r.output
    assert "same environment" in r.output


def test_altered_checkpoint_differs_at_its_step(run: Path) -> None:
    folder = layout.checkpoints_dir(run / "seed-0" / "train")
    path = ckpt.checkpoint_path(folder, 4)
    state = ckpt.load(path)
    key = next(iter(state["model"]))
    state["model"][key] = state["model"][key] + 1e-3
    ckpt.save(path, state)  # a consistent manifest too: only the numbers tell
    r = cli(str(run / "seed-0" / "train"))  # a stage folder names its stage
    assert r.exit_code == 1, r.output
    assert f"seed-0 train: differs at step 4 (checkpoint model.{key}) by 0.001" in r.output
    assert "sample" not in r.output


def test_a_damaged_checkpoint_is_a_difference_too(run: Path) -> None:
    path = ckpt.checkpoint_path(layout.checkpoints_dir(run / "seed-0" / "train"), 6)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    r = cli(str(run), "--stage", "train")
    assert r.exit_code == 1, r.output
    assert "seed-0 train: differs at step 6: checkpoint" in r.output and "damaged" in r.output


def test_altered_samples_differ_at_their_batch(run: Path) -> None:
    (sample,) = run.glob("seed-0/sample-*")
    x = torch.load(sample / layout.SAMPLES)
    x[9, 0] += 0.5  # batch 1 (batch_size 8)
    torch.save(x, sample / layout.SAMPLES)
    r = cli(str(run / "seed-0"), "--stage", "sample")
    assert r.exit_code == 1, r.output
    assert "seed-0 sample: differs at batch 1 (samples 8–15) by 0.5" in r.output
    r = cli(str(run), "--stage", "sample", "--batches", "1")  # the first batch alone is intact
    assert r.exit_code == 0, r.output
    assert "bit-identical" in r.output and "1 of 3 batches, 8 samples" in r.output


def test_the_first_steps_alone(run: Path) -> None:
    r = cli(str(run), "--stage", "train", "--steps", "2")
    assert r.exit_code == 0, r.output
    assert (
        "seed-0 train: bit-identical" in r.output
        and "2 of 6 steps: loss at 1 logged steps, 1 checkpoints" in r.output
    )
    r = cli(str(run), "--stage", "train", "--steps", "1")  # nothing on disk covers step 1
    assert r.exit_code == 2
    assert "choose --steps at one of them" in r.output


def test_a_run_made_with_another_thread_count_names_it(tmp_path: Path) -> None:
    run = _make(tmp_path / "runs", tmp_path, threads=2)
    env = json.loads((run / "seed-0" / "train" / layout.ENV).read_text())
    assert env["threads"] == 2
    r = cli(str(run), "--threads", "1")
    assert r.exit_code == 0, r.output
    for stage in ("train", "sample", "evaluate"):
        line = next(ln for ln in r.output.splitlines() if ln.startswith(f"seed-0 {stage}:"))
        assert "(environment differs: threads 2 → 1)" in line
    assert torch.get_num_threads() == 1  # the process's count is restored


def test_the_verdicts_of_the_contract() -> None:
    small = [Diff(3, "step 3 (loss)", 1e-6, 1e-6)]
    big = [Diff(2, "step 2 (loss)", 0.5, 0.1)]
    env = {"threads": 1, "torch": "2.5"}
    other = {"threads": 2, "torch": "2.5"}
    assert judge("train", Path("t"), [], env, env).result == "bit-identical"
    v = judge("train", Path("t"), small, env, other)
    assert v.result == "within" and not v.failed
    assert v.text.startswith(f"equal within {TOLERANCE['train']:g}") and "threads 1 → 2" in v.text
    v = judge("train", Path("t"), small, env, env)  # same environment: bit-identity was promised
    assert v.failed and v.text.startswith("differs at step 3 (loss) by 1e-06")
    v = judge("train", Path("t"), small + big, env, other)
    assert v.failed and v.text.startswith("differs at step 2 (loss) by 0.5") and "threads 1 → 2" in v.text
    v = judge("sample", Path("s"), [Diff(0, "batch 0", math.inf, math.inf)], env, env)
    assert v.failed and "not comparable" in v.text


def test_not_a_run_folder(tmp_path: Path) -> None:
    r = cli(str(tmp_path))
    assert r.exit_code == 2
    assert f"{tmp_path}: not a run folder" in r.output
    r = cli(str(tmp_path), "--stage", "select")
    assert r.exit_code == 2 and "--stage must be train, sample or evaluate" in r.output


@pytest.mark.parametrize(
    "file", ["papers/quickstart_digits.exp", "papers/compare_fashion_ci.exp", "papers/ncsn_cifar.exp"]
)
def test_a_spec_json_rebuilds_the_same_spec(file: str, tmp_path: Path) -> None:
    for spec in compile_file(file):
        run = tmp_path / spec.experiment / spec.hash()
        run.mkdir(parents=True)
        (run / layout.SPEC).write_text(json.dumps(spec.canonical() | {"seed": None}, default=str))
        again = command.spec_of_run(run, 3)
        assert again.seed == 3
        provenance = ("seed", "published", "sweep", "parent", "auto", "references", "launcher")
        a, b = again.canonical(), spec.canonical()
        assert {k: v for k, v in a.items() if k not in provenance} == {
            k: v for k, v in b.items() if k not in provenance
        }
        assert (a["hash"], a["train_hash"], a["sample_hash"], a["eval_hash"]) == (
            b["hash"],
            b["train_hash"],
            b["sample_hash"],
            b["eval_hash"],
        )
