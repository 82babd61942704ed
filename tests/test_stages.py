"""The stages (ncsn_core/stages/) and their conductor (ncsn_core/runner.py), issue 21.1: one module
per stage kind of the schema on one protocol; the conductor finds a stage by its hash, computes
it once, records it atomically on rank 0, marks it done, and reuses it anywhere in runs/."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from dsl.compiler import compile_file
from ncsn_core import layout, runner, schema
from ncsn_core.runner import Run
from ncsn_core.stages import BY_NAME
from ncsn_core.stages.base import Context, Done, Outputs, Stage

ROOT = Path(__file__).resolve().parent.parent


def test_one_stage_module_per_schema_stage_in_the_schemas_order() -> None:
    assert [s.name for s in runner.STAGES] == list(schema.STAGES)
    assert {s.kind for s in runner.STAGES} == {
        layout.TRAIN,
        layout.SELECT,
        layout.SAMPLE,
        layout.EVAL,
        "interpolate",
    }


@pytest.mark.parametrize(
    "path", [ROOT / "ncsn_core" / "runner.py", *sorted((ROOT / "ncsn_core" / "stages").glob("*.py"))]
)
def test_modules_are_small_and_say_what_they_are(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    limit = 250 if path.name == "runner.py" else 600
    assert len(text.splitlines()) <= limit
    assert ast.get_docstring(ast.parse(text)), f"{path} has no module docstring"
    assert text.startswith('"""')


class Figure(Stage):
    """A stage kind declared in a test: what a new kind needs (the NCSNv2 interpolation figure)."""

    name = "figure"
    kind = "figure"

    def __init__(self, fail: bool = False, everywhere: bool = True) -> None:
        self.calls = 0
        self.fail = fail
        self.everywhere = everywhere  # type: ignore[misc]

    def applies(self, ctx: Context, done: Done) -> bool:
        return done.get("sample") is not None

    def hash(self, ctx: Context) -> str:
        return "f" + ctx.spec.sample_hash()[:6]

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        sample = done["sample"]
        assert sample is not None
        return {"samples_from": ctx.record(sample)}

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("figure failed")
        return Outputs(
            {"figure.json": {"calls": self.calls}, "figure.txt": lambda p: p.write_text("x")},
            note=f"figure: done ({self.calls})",
        )


@pytest.fixture
def spec(write) -> Any:  # type: ignore[no-untyped-def]
    from tests.conftest import BASE

    (s,) = compile_file(write("e.exp", BASE))
    return s


def test_the_conductor_computes_records_and_reuses_a_new_stage_kind(spec, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    runs = tmp_path / "runs"
    sample = tmp_path / "elsewhere"  # the input: any folder
    sample.mkdir()
    run = Run(spec, runs, "cpu")
    fig = Figure()
    done: Done = {"sample": sample}
    with run.locked(fig, done):
        folder = run.conduct(fig, done)
    assert folder == layout.stage_dir(run.seed_dir, "figure", fig.hash(run)) and fig.calls == 1
    assert json.loads((folder / layout.STAGE).read_text()) == {
        "stage": "figure",
        "hash": fig.hash(run),
        "samples_from": layout.record(sample, run.dir),
    }
    assert json.loads((folder / "figure.json").read_text()) == {"calls": 1}
    assert (folder / "figure.txt").read_text() == "x"
    assert json.loads((folder / layout.ENV).read_text())["device"] == "cpu"
    assert layout.is_complete_stage(folder, fig.hash(run))
    assert "figure: done (1)" in capsys.readouterr().err
    # Found by its hash: not computed again, here or in another experiment's run folder.
    assert run.conduct(fig, done) == folder and fig.calls == 1
    assert Run(spec, runs, "cpu").conduct(fig, done) == folder and fig.calls == 1
    # Not applicable (no input): nothing computed, nothing written.
    assert run.conduct(fig, {"sample": None}) is None and fig.calls == 1


def test_a_stage_found_in_another_run_folder_is_reused_and_said(spec, write, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import BASE

    runs = tmp_path / "runs"
    (renamed,) = compile_file(write("f.exp", BASE.replace("experiment e {", "experiment f {")))
    assert renamed.sample_hash() == spec.sample_hash() and renamed.experiment != spec.experiment
    fig = Figure()
    done: Done = {"sample": tmp_path}
    first = Run(spec, runs, "cpu").conduct(fig, done)
    second_run = Run(renamed, runs, "cpu")
    capsys.readouterr()
    assert second_run.conduct(fig, done) == first and fig.calls == 1
    err = capsys.readouterr().err
    assert f"figure: reusing e/{spec.hash()}/seed-0/figure-{fig.hash(second_run)}" in err
    assert not layout.stage_dir(second_run.seed_dir, "figure", fig.hash(second_run)).exists()
    # A kind found in its own run folder only (as the select stage) is computed again there.
    own = Figure(everywhere=False)
    assert Run(renamed, runs, "cpu").conduct(own, done) != first and own.calls == 1


def test_a_failing_stage_is_not_marked_done_and_is_computed_again(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = Run(spec, tmp_path / "runs", "cpu", quiet=True)
    done: Done = {"sample": tmp_path}
    bad = Figure(fail=True)
    with pytest.raises(RuntimeError, match="figure failed"):
        run.conduct(bad, done)
    folder = layout.stage_dir(run.seed_dir, "figure", bad.hash(run))
    assert (folder / layout.STAGE).exists() and not layout.is_complete(folder)
    assert not (folder / "figure.json").exists()
    good = Figure()
    assert run.conduct(good, done) == folder and good.calls == 1 and layout.is_complete(folder)


def test_the_train_stage_is_the_registered_one_and_untrained_runs_skip_it(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = Run(spec, tmp_path / "runs", "cpu", quiet=True)
    train = BY_NAME["train"]
    assert train.applies(run, {}) is spec.trains
    assert train.folder(run) == layout.stage_dir(run.seed_dir, layout.TRAIN)
    assert BY_NAME["select"].applies(run, {"train": tmp_path}) is False  # no select block
    assert BY_NAME["evaluate"].applies(run, {"sample": None}) is False


def test_train_records_the_initial_weights_hash_that_pairs_seeds(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """train/results.json's init_hash: equal for two arms whose seed builds the same initial
    network (they differ only in the sampler), different for another seed or network; the report
    pairs seeds by it (issue 24)."""
    from conftest import BASE

    from ncsn_core.runner import run_spec

    src = (
        BASE
        + "\nexperiment f extends e { sample { stage annealed_langevin { steps_per_level = 3, step_size = 2e-5 } } }"
        + "\nexperiment g extends e { seed = 1 }"
        + "\nexperiment h extends e { network.ngf = 16 }\n"
    )
    runs = tmp_path / "runs"
    hashes = {}
    for spec in compile_file(write("p.exp", src)):
        run_spec(spec, runs_dir=runs / spec.experiment, device="cpu", until="train", quiet=True)
        (res,) = (runs / spec.experiment).rglob("train/" + layout.RESULTS)
        hashes[spec.experiment] = json.loads(res.read_text())["init_hash"]
    assert hashes["e"] == hashes["f"]
    assert len({hashes["e"], hashes["g"], hashes["h"]}) == 3
