"""Issue 12, the run side: no code runs from a checkpoint, no stage is computed twice by two
processes, a damaged checkpoint falls back to the previous one, a full disk or a read-only
runs folder is a clear error, non-finite values stop every stage, and SIGKILL at any point
resumes to bit-identical results."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_runs import TOY
from typer.testing import CliRunner

import ncsn_core.io as atomic
from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import layout
from ncsn_core.errors import CheckpointError, EvaluationError, RunError, SamplerDiverged, TrainingError
from ncsn_core.lock import stage_lock
from ncsn_core.runner import run_spec

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def one(path: Path, **kw):  # type: ignore[no-untyped-def]
    (spec,) = compile_file(path, **kw)
    return spec


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "dsl.cli", "run", *map(str, args), "--device", "cpu"]


def train_dir(runs: Path, spec) -> Path:  # type: ignore[no-untyped-def]
    return runs / spec.experiment / spec.hash() / "seed-0" / "train"


def final_state(runs: Path, spec) -> dict:  # type: ignore[no-untyped-def]
    step, path = ckpt.list_checkpoints(train_dir(runs, spec) / "checkpoints")[-1]
    return torch.load(path, weights_only=True)


def assert_same_training(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name, v in sa[k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[k][name])), (k, name)


# ---------------------------------------------------------------- 1. weights-only loading
class _Payload:
    """Unpickled by the full unpickler, this creates a file (no shell involved)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("where", ["replaces the newest", "is a newer step"])
def test_checkpoint_that_would_run_code_is_refused(write, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    train = train_dir(runs, spec)
    (train / "DONE").unlink()
    cks = ckpt.list_checkpoints(train / "checkpoints")
    evil = cks[-1][1] if where == "replaces the newest" else ckpt.checkpoint_path(train / "checkpoints", 80)
    marker = tmp_path / "pwned"
    torch.save({"step": 60, "model": {"w": _Payload(marker)}}, evil)

    p = subprocess.run(
        cli(f, "--runs", runs, "--until", "train"), cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert p.returncode == 1, p.stderr
    assert str(evil) in p.stderr and "refused" in p.stderr
    assert "Traceback" not in p.stderr
    assert not marker.exists()  # nothing in the file ran
    assert not (train / "DONE").exists()
    # The payload is live: the full unpickler would have created the marker.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_domain_classifier_loads_weights_only() -> None:
    src = (ROOT / "ncsn_core" / "evaluation" / "domain.py").read_text()
    assert "weights_only=False" not in src
    for f in (ROOT / "ncsn_core").rglob("*.py"):
        assert "weights_only=False" not in f.read_text(), f


# ---------------------------------------------------------------- 2. per-stage locks
LOCKED = TOY.replace(
    "iterations = 60, checkpoint_every = 20, log_every = 10",
    "iterations = 400, checkpoint_every = 100, log_every = 50",
)


def test_two_concurrent_runs_compute_each_stage_once(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", LOCKED)
    spec = one(f)
    runs = tmp_path / "runs"
    procs = [
        subprocess.Popen(
            cli(f, "--runs", runs),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    err = "".join(e for _, e in outs)
    assert err.count("train toy step 50/400") == 1  # trained once
    assert err.count("step 400/400") == 1
    assert err.count("sample: 200 samples") == 1  # sampled once
    seed = runs / "toy" / spec.hash() / "seed-0"
    log = [json.loads(line) for line in (seed / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(50, 401, 50))
    # No torn file: everything reads back, and each stage is complete once.
    assert torch.load(seed / f"sample-{spec.sample_hash()}" / "samples.pt", weights_only=True).shape == (
        200,
        2,
    )
    m = json.loads((seed / f"eval-{spec.eval_hash()}" / "metrics.json").read_text())
    assert "mmd" in m
    for folder in (seed / "train", seed / f"sample-{spec.sample_hash()}", seed / f"eval-{spec.eval_hash()}"):
        assert layout.is_complete(folder)
    assert not list(seed.rglob("*.tmp"))
    # Both printed the same numbers.
    assert outs[0][0].splitlines()[0] == outs[1][0].splitlines()[0]


def test_waiting_for_a_held_stage_and_no_wait(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    runs = tmp_path / "runs"
    stage = train_dir(runs, spec)
    with stage_lock(stage):
        p = subprocess.run(
            cli(f, "--runs", runs, "--no-wait"),
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1
        assert f"{stage} is being computed by pid {os.getpid()} on host" in p.stderr
        assert "Traceback" not in p.stderr and not stage.exists()
        proc = subprocess.Popen(cli(f, "--runs", runs), cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "waiting for" not in line:
            line = proc.stderr.readline()
        assert f"waiting for {stage} (held by pid {os.getpid()} on host" in line
        assert proc.poll() is None and not stage.exists()  # it waits and does nothing
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, rest
    assert "not complete: continuing it" in rest
    assert layout.is_complete(stage)


def test_lock_of_a_killed_process_is_taken_over(write, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    runs = tmp_path / "runs"
    stage = train_dir(runs, spec)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from ncsn_core.lock import stage_lock\n"
         "with stage_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)",
         str(stage)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t0 = time.perf_counter()
    run_spec(spec, runs_dir=runs, device="cpu", until="train")
    assert time.perf_counter() - t0 < 60
    err = capsys.readouterr().err
    assert f"taking over from pid {holder.pid} on host" in err
    assert "waiting" not in err
    assert layout.is_complete(stage)


# ---------------------------------------------------------------- 3. checkpoint fallback
def test_damaged_newest_checkpoint_falls_back_and_ends_identical(write, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    run_spec(spec, runs_dir=tmp_path / "ref", device="cpu", until="train", quiet=True)
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    train = train_dir(runs, spec)
    (train / "DONE").unlink()
    newest = ckpt.list_checkpoints(train / "checkpoints")[-1][1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # truncated
    capsys.readouterr()
    run_spec(spec, runs_dir=runs, device="cpu", until="train")
    err = capsys.readouterr().err
    assert "checkpoint step-00000060 is damaged (" in err
    assert "; resuming from step-00000040" in err
    assert_same_training(final_state(tmp_path / "ref", spec), final_state(runs, spec))
    log = [json.loads(line)["step"] for line in (train / "log.jsonl").read_text().splitlines()]
    assert log == [10, 20, 30, 40, 50, 60]  # the steps trained again are logged once
    assert ckpt.verify(newest) is None


def test_bit_flip_is_caught_by_the_manifest(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = one(write("toy.exp", TOY))
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    path = ckpt.list_checkpoints(train_dir(runs, spec) / "checkpoints")[-1][1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "SHA-256" in (ckpt.verify(path) or "")
    with pytest.raises(CheckpointError, match="damaged"):
        ckpt.load(path)
    # The sample stage never samples from a damaged checkpoint.
    with pytest.raises(CheckpointError, match=str(path)):
        run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)


def test_prune_never_deletes_the_only_verified_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for step in (10, 20):
        ckpt.save(ckpt.checkpoint_path(folder, step), {"step": step, "model": {"w": torch.ones(3) * step}})
    ckpt.prune(folder, 1)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [20]
    assert set(ckpt.read_manifest(folder)) == {"step-00000020.pt"}
    # A newer file that is not verified (no manifest entry) does not push out the verified one.
    ckpt.checkpoint_path(folder, 30).write_bytes(b"half a checkpoint")
    ckpt.prune(folder, 1)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [20, 30]
    step, _, state = ckpt.newest_loadable(folder, warn=lambda m: None)  # type: ignore[misc]
    assert step == 20 and torch.equal(state["model"]["w"], torch.ones(3) * 20)


# ---------------------------------------------------------------- 4. full disk, read-only runs
def test_disk_full_during_a_checkpoint_write(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    run_spec(spec, runs_dir=tmp_path / "ref", device="cpu", until="train", quiet=True)
    runs = tmp_path / "runs"
    real = atomic.write_with
    calls = []

    def full_disk(path, fn):  # type: ignore[no-untyped-def]
        if Path(path).name == "step-00000040.pt":
            calls.append(path)

            def partial(fobj):  # type: ignore[no-untyped-def]
                fobj.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")

            return real(path, partial)
        return real(path, fn)

    monkeypatch.setattr(atomic, "write_with", full_disk)
    res = CliRunner().invoke(app, ["run", str(f), "--runs", str(runs), "--device", "cpu", "--until", "train"])
    assert res.exit_code == 1, res.output
    ckdir = train_dir(runs, spec) / "checkpoints"
    assert (
        f"cannot write {ckdir / 'step-00000040.pt'}: no space left on {ckdir} (No space left on device)"
        in (" ".join(res.output.split()))
    )
    assert "needed ≈" in res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert calls
    assert [s for s, _ in ckpt.list_checkpoints(ckdir)] == [20]  # the previous one, intact
    assert ckpt.verify(ckdir / "step-00000020.pt") is None
    assert not [p for p in ckdir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(atomic, "write_with", real)
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    assert_same_training(final_state(tmp_path / "ref", spec), final_state(runs, spec))


def _chmod_is_effective(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("")
    except OSError:
        return True
    probe.unlink()
    return False  # root (or a capability) writes anyway


def test_read_only_runs_folder(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    try:
        if not _chmod_is_effective(runs):
            pytest.skip("chmod does not stop this user from writing (root)")
        res = CliRunner().invoke(app, ["run", str(f), "--runs", str(runs), "--device", "cpu"])
        assert res.exit_code == 2, res.output
        assert f"the runs folder {runs} cannot be written" in res.output and "Traceback" not in res.output
    finally:
        runs.chmod(0o755)


def test_read_only_filesystem_is_a_clear_error(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same through an injected EROFS, which also holds for root."""
    f = write("toy.exp", TOY)
    runs = tmp_path / "runs"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):  # type: ignore[no-untyped-def]
        if self.is_relative_to(runs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    res = CliRunner().invoke(app, ["run", str(f), "--runs", str(runs), "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert f"the runs folder {runs} cannot be written" in res.output
    assert "Read-only file system" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------- 5. non-finite values, per stage
def test_ansn_covariance_is_not_poisoned_by_a_nan_batch() -> None:
    from ncsn_core.ansn import AdaptiveConfig, AdaptiveNoise

    for on in ("data", "perturbed"):
        noise = AdaptiveNoise(torch.tensor([1.0, 0.1]), 2, AdaptiveConfig(form="full", estimate_on=on))
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            noise.update(torch.randn(16, 2, generator=gen))
        before = noise.state_dict()
        bad = torch.randn(16, 2, generator=gen)
        bad[3, 1] = float("nan")
        with pytest.raises(TrainingError, match=r"step 4 holds 1 non-finite value\(s\) \(e.g. nan\)"):
            noise.update(bad)
        after = noise.state_dict()
        assert after["stats"]["n"] == before["stats"]["n"] == 48
        assert torch.equal(after["stats"]["m2"], before["stats"]["m2"])
        assert torch.isfinite(noise.estimate().dense()).all()


class _NaNAtBatch:
    """A data source whose ``k``-th training batch holds one NaN."""

    def __init__(self, data, k: int) -> None:  # type: ignore[no-untyped-def]
        self._d, self.k, self.calls = data, k, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._d, name)

    def __len__(self) -> int:
        return len(self._d)

    def batch(self, idx, gen):  # type: ignore[no-untyped-def]
        self.calls += 1
        x = self._d.batch(idx, gen)
        if self.calls == self.k:
            x[0, 0] = float("nan")
        return x


def test_ansn_training_on_a_nan_batch_stops_naming_the_step(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ncsn_core.runner import Run, build

    src = """experiment a {
        data mixture2d { n_train = 1000 }
        noise adaptive { sigma_max = 5.0, sigma_min = 0.1, levels = 4, form = full, estimate_on = data }
        network mlp { hidden = 16, conditional = true, scale_by_sigma = true }
        loss ansn_dsm { }
        train { iterations = 20, batch_size = 32, checkpoint_every = 2, log_every = 2 }
    }"""
    spec = one(write("a.exp", src))

    def data(self):  # type: ignore[no-untyped-def]
        if self._data is None:
            self._data = _NaNAtBatch(build("data", self.spec.data), 5)
        return self._data

    monkeypatch.setattr(Run, "data", property(data))
    runs = tmp_path / "runs"
    with pytest.raises(
        TrainingError, match=r"the training batch of step 5 holds 1 non-finite value\(s\)"
    ) as e:
        run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
    assert "last good checkpoint is kept" in str(e.value)
    cks = ckpt.list_checkpoints(train_dir(runs, spec) / "checkpoints")
    assert [s for s, _ in cks] == [2, 4] and not layout.is_complete(train_dir(runs, spec))
    st = torch.load(cks[-1][1], weights_only=True)
    assert st["noise"]["stats"]["n"] == 4 * 32
    assert all(torch.isfinite(v).all() for v in st["noise"]["stats"].values() if torch.is_tensor(v))


def test_diverging_sampler_names_stage_and_level_and_marks_nothing_done(tmp_path: Path) -> None:
    specs = compile_file(
        ROOT / "papers" / "ncsn_toy_fig3.exp",
        experiments=["ncsn_toy_fig3_annealed"],
        sets=["sample.annealed_langevin.step_size=1e3"],
    )
    runs = tmp_path / "runs"
    with pytest.raises(SamplerDiverged, match=r"annealed_langevin diverged at noise level \d+") as e:
        run_spec(specs[0], runs_dir=runs, device="cpu", quiet=True)
    assert isinstance(e.value, RunError) and "not marked done" in str(e.value)
    res = CliRunner().invoke(
        app,
        ["run", str(ROOT / "papers" / "ncsn_toy_fig3.exp"), "-e", "ncsn_toy_fig3_annealed", "--runs", str(runs),
         "--device", "cpu", "--set", "sample.annealed_langevin.step_size=1e3"],
    )  # fmt: skip
    assert res.exit_code == 1 and "error: sampling ncsn_toy_fig3_annealed" in res.output
    assert "diverged at noise level" in res.output and "Traceback" not in res.output
    folders = list(runs.glob("*/*/seed-0/sample-*"))
    assert folders and not any(layout.is_complete(d) for d in folders)
    assert not (folders[0] / "samples.pt").exists()


def test_evaluation_of_non_finite_samples_is_refused(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = one(write("toy.exp", TOY))
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    seed = runs / "toy" / spec.hash() / "seed-0"
    samples = seed / f"sample-{spec.sample_hash()}" / "samples.pt"
    x = torch.load(samples, weights_only=True)
    x[7, 0] = float("inf")
    torch.save(x, samples)
    with pytest.raises(EvaluationError, match="1 of 200 samples contain NaN or infinite"):
        run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    assert not layout.is_complete(seed / f"eval-{spec.eval_hash()}")


# ---------------------------------------------------------------- 6. SIGKILL at random points
KILL = TOY.replace(
    "iterations = 60, checkpoint_every = 20, log_every = 10",
    "iterations = 1500, checkpoint_every = 100, log_every = 100",
).replace("samples = 200, init", "samples = 2000, init")


def _phase(seed: Path, spec) -> str:  # type: ignore[no-untyped-def]
    if layout.is_complete(seed / f"eval-{spec.eval_hash()}"):
        return "done"
    if layout.is_complete(seed / f"sample-{spec.sample_hash()}"):
        return "evaluating"
    if layout.is_complete(seed / "train"):
        return "sampling"
    cks = ckpt.list_checkpoints(seed / "train" / "checkpoints")
    return f"training (step {cks[-1][0] if cks else 0})"


def test_sigkill_at_random_points_resumes_bit_identical(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", KILL)
    spec = one(f)
    ref = tmp_path / "ref"
    run_spec(spec, runs_dir=ref, device="cpu", quiet=True)
    runs = tmp_path / "runs"
    seed = runs / "toy" / spec.hash() / "seed-0"
    rng = random.Random(12)
    hit = []
    # One process per kill point: once it shows life (its first stderr line), wait until the
    # phase aimed at has begun, then a seeded random delay, then SIGKILL.
    seed_dir = seed
    aims = [
        ("training", lambda: True, 0.6),
        ("sampling", lambda: layout.is_complete(seed_dir / "train"), 0.3),
        ("evaluating", lambda: layout.is_complete(seed_dir / f"sample-{spec.sample_hash()}"), 0.1),
    ]
    for _, ready, spread in aims:
        proc = subprocess.Popen(
            cli(f, "--runs", runs), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        proc.stderr.readline()
        deadline = time.time() + 60
        while not ready() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, spread))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hit.append(_phase(seed, spec))
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)  # the last resume, in this process
    assert any(h.startswith("training") for h in hit), hit
    assert_same_training(final_state(ref, spec), final_state(runs, spec))
    sample = f"sample-{spec.sample_hash()}/samples.pt"
    a = torch.load(ref / "toy" / spec.hash() / "seed-0" / sample, weights_only=True)
    b = torch.load(seed / sample, weights_only=True)
    assert torch.equal(a, b)
    metrics = f"eval-{spec.eval_hash()}/metrics.json"
    ma = json.loads((ref / "toy" / spec.hash() / "seed-0" / metrics).read_text())
    mb = json.loads((seed / metrics).read_text())
    assert {k: v for k, v in ma.items() if k != "protocol"} == {
        k: v for k, v in mb.items() if k != "protocol"
    }
    log = [json.loads(line)["step"] for line in (seed / "train" / "log.jsonl").read_text().splitlines()]
    assert log == list(range(100, 1501, 100))
    print("kill points hit:", hit)


# ---------------------------------------------------------------- 7. SIGKILL at the end of training
_KILL_AT = """\
import os, signal, sys
from pathlib import Path
import ncsn_core.checkpoint as ckpt
import ncsn_core.io as atomic
from dsl.compiler import compile_file
from ncsn_core.runner import run_spec

where, exp, runs = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
(spec,) = compile_file(exp)
last = spec.train.kwargs()["iterations"]
prune, write_text, write_json = ckpt.prune, atomic.write_text, atomic.write_json

def die(hit):
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)

def pruning(folder, *a, **k):  # half-way through pruning after the last checkpoint
    steps = [s for s, _ in ckpt.list_checkpoints(folder)]
    if steps and steps[-1] == last and where == "prune":
        victims = [p for s, p in ckpt.list_checkpoints(folder)][:1]
        for p in victims:
            p.unlink()
        die(True)
    return prune(folder, *a, **k)

def done(path, *a, **k):  # train/results.json written, DONE not yet
    die(where == "done" and Path(path).name == "DONE" and Path(path).parent.name == "train")
    return write_text(path, *a, **k)

def results(path, *a, **k):  # the last checkpoint and pruning done, results.json not yet written
    die(where == "results" and Path(path).name == "results.json" and Path(path).parent.name == "train")
    return write_json(path, *a, **k)

ckpt.prune, atomic.write_text, atomic.write_json = pruning, done, results
run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)
"""


@pytest.mark.parametrize("where", ["prune", "results", "done"])
def test_kill_at_the_end_of_training_loses_no_field_of_results_json(
    write, tmp_path: Path, where: str
) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    spec = one(f)
    ref, runs = tmp_path / "ref", tmp_path / "runs"
    run_spec(spec, runs_dir=ref, device="cpu", until="train", quiet=True)
    p = subprocess.run(
        [sys.executable, "-c", _KILL_AT, where, str(f), str(runs)], cwd=ROOT, env=ENV, capture_output=True
    )
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    assert not layout.is_complete(train_dir(runs, spec))
    run_spec(spec, runs_dir=runs, device="cpu", until="train", quiet=True)  # resume
    a = json.loads((train_dir(ref, spec) / layout.RESULTS).read_text())
    b = json.loads((train_dir(runs, spec) / layout.RESULTS).read_text())
    assert set(a) <= set(b), set(a) - set(b)
    varying = {"seconds", "resumed_from"}
    assert {k: v for k, v in a.items() if k not in varying} == {
        k: v for k, v in b.items() if k not in varying
    }
    assert isinstance(b["final_loss"], float)
