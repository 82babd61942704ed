"""The researcher's loop (issue 16): stages reused across the whole runs folder by their own
hash, the shared user cache, progress lines of every long stage, TensorBoard logging."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.cli import app
from ncsn_core import layout

QUICK = Path(__file__).resolve().parent.parent / "papers" / "quickstart_digits.exp"
TINY = [
    "train.iterations=10",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "sample.samples=16",
    "sample.annealed_langevin.steps_per_level=2",
    "evaluate.samples=16",
    "evaluate.metrics=[fid_domain]",
]


def run(exp: Path, runs: Path, *sets: str, until: str = "evaluate") -> str:
    args = ["run", str(exp), "--runs", str(runs), "--device", "cpu", "--until", until]
    for s in (*TINY, *sets):
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return r.output  # stdout and stderr: the runner's lines, not a terminal


def seeds(runs: Path, experiment: str) -> list[Path]:
    return sorted(runs.glob(f"{experiment}/*/seed-0"))


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def metrics(seed: Path) -> dict:
    (ev,) = layout.stage_dirs(seed, layout.EVAL)
    return json.loads((ev / layout.METRICS).read_text())


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("loop") / "runs"
    return runs, run(QUICK, runs)


def test_progress_lines_of_sampling_and_evaluation(first: tuple[Path, str]) -> None:
    _, out = first
    lines = out.splitlines()
    sampling = [ln for ln in lines if ln.startswith("sampling: batch")]
    assert sampling, out
    assert re.search(r"annealed_langevin level \d+/10 · \d+/16 samples", sampling[0]), sampling
    assert sampling[-1].endswith("level 10/10 · 16/16 samples"), sampling  # the final line, always
    assert any(ln.startswith("sampling: loading ") and "step-00000010.pt (step 10)" in ln for ln in lines), (
        out
    )
    assert any(
        ln.startswith("evaluate: computing fid_domain on 16 samples against digits:") for ln in lines
    ), out
    assert not [ln for ln in lines if "{" in ln or "}" in ln], out  # no dict reprs


def test_evaluation_change_only_evaluates(first: tuple[Path, str]) -> None:
    runs, _ = first
    (seed,) = seeds(runs, "quickstart_digits")
    (sample,) = layout.stage_dirs(seed, layout.SAMPLE)
    before = mtimes(seed)
    # Fewer evaluation samples than the sample stage holds: its first 8, nothing drawn.
    out = run(QUICK, runs, "evaluate.samples=8")
    rel = sample.relative_to(runs).as_posix()
    assert f"sample: reusing {rel} (same sample hash {sample.name.split('-', 1)[1]}, seed 0)" in out
    assert "train: reusing" in out and "sampling: batch" not in out and "sample: loading" not in out
    assert "evaluate: on the first 8 of the 16 samples of the sample stage" in out
    assert mtimes(seed) == before  # nothing of the first run rewritten
    new = [s for s in seeds(runs, "quickstart_digits") if s != seed]
    assert len(new) == 1
    assert not layout.stage_dirs(new[0], layout.SAMPLE) and not (new[0] / layout.TRAIN).exists()
    assert not list(new[0].glob("evalsamples-*"))
    proto = metrics(new[0])["protocol"]
    assert proto["samples_used"] == 8 and proto["samples"] == 8
    assert proto["samples_from"] == f"../../{rel}/{layout.SAMPLES}"
    assert metrics(seed)["protocol"]["samples_used"] == 16
    # A different reference set: only evaluation again.
    out = run(QUICK, runs, "evaluate.reference=test")
    assert "sample: reusing" in out and "sampling: batch" not in out
    assert len(seeds(runs, "quickstart_digits")) == 3 and mtimes(seed) == before
    # The domain classifier is in the user cache ($REPRO_CACHE in tests), not in the runs folder.
    assert not list(runs.rglob("domain-classifier-*"))
    assert list(layout.user_cache_dir().glob("domain-classifier-*.pt"))
    assert metrics(seed)["protocol"]["domain_classifier"]["file"].startswith(
        "<user cache>/domain-classifier-"
    )


def test_same_training_and_sampling_under_another_name_reuses_both(
    first: tuple[Path, str], tmp_path: Path
) -> None:
    runs, _ = first
    (seed,) = [s for s in seeds(runs, "quickstart_digits") if (s / layout.TRAIN).exists()]
    before = mtimes(seed)
    other = tmp_path / "renamed.exp"
    other.write_text(QUICK.read_text().replace("experiment quickstart_digits", "experiment renamed_digits"))
    out = run(other, runs)
    assert "train: reusing quickstart_digits/" in out and "sample: reusing quickstart_digits/" in out
    assert "eval: reusing quickstart_digits/" in out  # the same evaluation too: nothing computed
    assert "sampling: batch" not in out and "evaluate: computing" not in out
    (new,) = seeds(runs, "renamed_digits")
    assert not (new / layout.TRAIN).exists() and not layout.stage_dirs(new, layout.SAMPLE)
    assert mtimes(seed) == before
    # The report shows the renamed run complete, with the reused stages' metrics and grid.
    from reports.reporter import collect

    (rec,) = [r for r in collect(runs) if r.experiment == "renamed_digits"]
    (own,) = [r for r in collect(runs) if r.experiment == "quickstart_digits" and r.hash == rec.hash]
    assert rec.seeds[0].status == "complete" and rec.seeds[0].grid is not None
    assert rec.seeds[0].metrics["fid_domain"] == own.seeds[0].metrics["fid_domain"]


def test_user_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "r"))
    assert layout.user_cache_dir() == tmp_path / "r"
    monkeypatch.delenv("REPRO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert layout.user_cache_dir() == tmp_path / "x" / "repro"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert layout.user_cache_dir() == tmp_path / "home" / ".cache" / "repro"


def test_tensorboard_events_at_the_logged_steps(first: tuple[Path, str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs, _ = first
    (train,) = runs.glob(f"quickstart_digits/*/seed-0/{layout.TRAIN}")
    acc = EventAccumulator(str(layout.tensorboard_dir(train)))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "grad_norm", "lr", *(f"loss/level_{i}" for i in range(1, 11))} <= tags
    log = [json.loads(line) for line in (train / layout.LOG).read_text().splitlines()]
    assert [e.step for e in acc.Scalars("loss")] == [r["step"] for r in log] == [5, 10]
    for e, r in zip(acc.Scalars("loss"), log, strict=True):
        assert e.value == pytest.approx(r["loss"], rel=1e-6)
    assert [e.value for e in acc.Scalars("loss/level_10")] == pytest.approx(
        [r["per_level"][9] for r in log], rel=1e-6
    )
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([1e-3, 1e-3])
    assert all(e.value > 0 for e in acc.Scalars("grad_norm"))
    # `repro tb` prints the command that opens them.
    r = CliRunner().invoke(app, ["tb", "--print", str(runs)])
    assert r.exit_code == 0 and f"tensorboard --logdir {runs}" in r.output


def test_tensorboard_preview_grids_from_the_ema_weights(first: tuple[Path, str], tmp_path: Path) -> None:
    """At each checkpoint (preview_every = 0) a grid of preview_samples images drawn from the
    weights; the training's random streams are untouched: weights bit-identical without it."""
    pytest.importorskip("tensorboard")
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs, _ = first
    (train,) = runs.glob(f"quickstart_digits/*/seed-0/{layout.TRAIN}")
    acc = EventAccumulator(str(layout.tensorboard_dir(train)), size_guidance={"images": 0})
    acc.Reload()
    (tag,) = acc.Tags()["images"]
    assert tag.startswith("samples/")
    events = acc.Images(tag)
    assert [e.step for e in events] == [10]  # checkpoint_every = 10 of 10 iterations
    assert (events[0].width, events[0].height) != (0, 0)
    # Off: no images, and the checkpoint is the same (the preview draws from its own generator).
    other = tmp_path / "runs"
    run(QUICK, other, "train.preview_samples=0", until="train")
    (train2,) = other.glob(f"quickstart_digits/*/seed-0/{layout.TRAIN}")
    assert train2.relative_to(other) == train.relative_to(runs)  # preview settings are in no hash
    acc2 = EventAccumulator(str(layout.tensorboard_dir(train2)))
    acc2.Reload()
    assert acc2.Tags()["images"] == []
    a = torch.load(layout.checkpoint_file(layout.checkpoints_dir(train), 10), weights_only=True)
    b = torch.load(layout.checkpoint_file(layout.checkpoints_dir(train2), 10), weights_only=True)
    for key in ("model", "ema"):
        if a.get(key) is not None:
            assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_tensorboard_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")  # if wandb is installed: nothing leaves the machine
    runs = tmp_path / "runs"
    out = run(QUICK, runs, "train.tensorboard=false", "train.wandb=true", until="train")
    wandb = importlib.util.find_spec("wandb") is not None
    assert (
        wandb or "train: train.wandb = true, but wandb is not installed (pip install wandb); skipped" in out
    )
    (train,) = runs.glob(f"quickstart_digits/*/seed-0/{layout.TRAIN}")
    assert not layout.tensorboard_dir(train).exists()
    r = CliRunner().invoke(app, ["tb", "--print", str(runs)])
    assert r.exit_code == 1 and "no TensorBoard logs" in r.output
