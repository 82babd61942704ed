"""`repro run` end to end on tiny settings: files on disk, stage caching, kill-and-resume,
non-finite losses, diverging samplers, and NCSN Fig. 3 from its .exp file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core.errors import TrainingError
from ncsn_core.runner import run_spec
from ncsn_core.samplers import SamplerDiverged

ROOT = Path(__file__).resolve().parent.parent

TOY = """\
experiment toy {
    data mixture2d { n_train = 2000 }
    noise geometric { sigma_max = 5.0, sigma_min = 0.1, levels = 5 }
    network mlp { hidden = 32, layers = 3, conditional = true, scale_by_sigma = true }
    loss dsm { }
    train { optimizer = adam(lr = 1e-3), batch_size = 64, iterations = 60, checkpoint_every = 20, log_every = 10, ema = 0.9 }
    sample { samples = 200, init = uniform(low = -8, high = 8), stage annealed_langevin { steps_per_level = 10, step_size = 0.05 } }
    evaluate { metrics = [mode_weights, mmd, sliced_wasserstein], samples = 200 }
}
"""


def one(path: Path, **kw) -> object:  # type: ignore[no-untyped-def]
    specs = compile_file(path, **kw)
    assert len(specs) == 1
    return specs[0]


def test_run_writes_everything_and_caches_stages(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    runs = tmp_path / "runs"
    spec = one(f)
    run_spec(spec, runs_dir=runs, device="cpu", source_text=TOY, quiet=True)
    d = runs / "toy" / spec.hash()
    seed = d / "seed-0"
    assert json.loads((d / "spec.json").read_text())["train_hash"] == spec.train_hash()
    assert (d / "source.exp").read_text() == TOY
    env = json.loads((seed / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    log = [json.loads(line) for line in (seed / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]
    assert len(log[0]["per_level"]) == 5
    assert [s for s, _ in ckpt.list_checkpoints(seed / "train" / "checkpoints")] == [20, 40, 60]
    sample_dir = seed / f"sample-{spec.sample_hash()}"
    assert torch.load(sample_dir / "samples.pt").shape == (200, 2)
    assert (sample_dir / "grid.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((seed / f"eval-{spec.eval_hash()}" / "metrics.json").read_text())
    assert {"mode_weight_1", "mmd", "sliced_wasserstein", "protocol"} <= set(m)
    assert m["protocol"]["iterations_trained"] == 60
    # A second run is a no-op; a sampler change reuses training; an evaluation change reuses samples.
    mtime = (seed / "train" / "DONE").stat().st_mtime_ns
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    assert (seed / "train" / "DONE").stat().st_mtime_ns == mtime
    s2 = one(f, sets=["sample.annealed_langevin.steps_per_level=5"])
    assert s2.train_hash() == spec.train_hash()
    run_spec(s2, runs_dir=runs, device="cpu", quiet=True)
    assert not (runs / "toy" / s2.hash() / "seed-0" / "train").exists()  # trained model reused
    assert (runs / "toy" / s2.hash() / "seed-0" / f"sample-{s2.sample_hash()}" / "DONE").exists()
    s3 = one(f, sets=["evaluate.metrics=[mmd]"])
    assert s3.sample_hash() == spec.sample_hash()
    before = (sample_dir / "samples.pt").stat().st_mtime_ns
    run_spec(s3, runs_dir=runs, device="cpu", quiet=True)
    assert (sample_dir / "samples.pt").stat().st_mtime_ns == before


LONG = TOY.replace(
    "iterations = 60, checkpoint_every = 20, log_every = 10",
    "iterations = 1500, checkpoint_every = 50, log_every = 50",
)


def _final_weights(runs: Path, spec) -> dict:  # type: ignore[no-untyped-def]
    folder = runs / "toy" / spec.hash() / "seed-0" / "train" / "checkpoints"
    step, path = ckpt.list_checkpoints(folder)[-1]
    assert step == 1500
    return torch.load(path, weights_only=False)


def test_kill_and_resume_is_bit_identical(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", LONG)
    spec = one(f)
    # Uninterrupted reference run (in-process).
    ref_runs = tmp_path / "ref"
    run_spec(spec, runs_dir=ref_runs, device="cpu", until="train", quiet=True)
    # Killed run: a real process, SIGKILLed once a few checkpoints exist.
    runs = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "dsl.cli",
        "run",
        str(f),
        "--runs",
        str(runs),
        "--device",
        "cpu",
        "--until",
        "train",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckdir = runs / "toy" / spec.hash() / "seed-0" / "train" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.list_checkpoints(ckdir)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.list_checkpoints(ckdir)
    assert done and done[-1][0] < 1500, "the process should have been killed mid-training"
    assert not (ckdir.parent / "DONE").exists()
    # Resume and compare.
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    a, b = _final_weights(ref_runs, spec), _final_weights(runs, spec)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = TOY.replace("optimizer = adam(lr = 1e-3)", "optimizer = sgd(lr = 1e12, momentum = 0.9)")
    src = src.replace(
        "iterations = 60, checkpoint_every = 20, log_every = 10",
        "iterations = 200, checkpoint_every = 1, log_every = 1",
    )
    spec = one(write("nan.exp", src))
    runs = tmp_path / "runs"
    with pytest.raises(TrainingError, match="last good checkpoint"):
        run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    cks = ckpt.list_checkpoints(runs / "toy" / spec.hash() / "seed-0" / "train" / "checkpoints")
    assert cks
    st = torch.load(cks[-1][1], weights_only=False)
    assert all(torch.isfinite(v).all() for v in st["model"].values())


def test_diverging_sampler_is_a_clear_error(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = (ROOT / "papers" / "ncsn_toy_fig3.exp").read_text()
    f = write("fig3.exp", src)
    spec = one(f, experiments=["ncsn_toy_fig3_annealed"], sets=["sample.annealed_langevin.step_size=1e3"])
    with pytest.raises(SamplerDiverged, match=r"annealed_langevin diverged at noise level \d+"):
        run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)


def test_corrupt_checkpoint_is_a_clear_error(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ncsn_core.errors import CheckpointError

    spec = one(write("toy.exp", TOY))
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    train = runs / "toy" / spec.hash() / "seed-0" / "train"
    (train / "DONE").unlink()
    # A damaged newest checkpoint is skipped (tests/test_reliability.py); when none is left
    # to fall back to, the newest one is named.
    for _, p in ckpt.list_checkpoints(train / "checkpoints"):
        p.write_bytes(b"not a checkpoint")
    last = ckpt.list_checkpoints(train / "checkpoints")[-1][1]
    with pytest.raises(CheckpointError, match=str(last)):
        run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    assert last.exists()  # nothing written is removed


def test_ncsn_fig3_mode_weights(tmp_path: Path) -> None:
    """The paper's claim, run from its .exp: annealed Langevin recovers the 0.2 weight of the
    (-5,-5) mode, plain Langevin does not; exact samples are the reference."""
    specs = compile_file(ROOT / "papers" / "ncsn_toy_fig3.exp")
    w = {}
    for s in specs:
        out = run_spec(s, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
        assert "mode_weight_1" in out
        m = json.loads(
            next((tmp_path / "runs" / s.experiment).glob("*/seed-0/eval-*/metrics.json")).read_text()
        )
        w[s.experiment] = m["mode_weight_1"]
    assert abs(w["ncsn_toy_fig3_exact"] - 0.2) < 0.03
    assert abs(w["ncsn_toy_fig3_annealed"] - 0.2) < 0.03
    assert abs(w["ncsn_toy_fig3_langevin"] - 0.2) > 0.15
