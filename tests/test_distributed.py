"""Paper-scale runs (issue 14, docs/scale.md), exercised with CPU processes and gloo: two
processes train like one with the same global batch, a SIGKILLed two-process run resumes
bit-identical, sampling shards are the one-process samples whatever the count, a killed
sampling job draws only the missing shards, a sweep runs through the local scheduler and
through submitit's debug executor, and every device/launcher mistake is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BASE
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import distributed as dist
from ncsn_core import layout
from ncsn_core.runner import run_spec

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

# conftest's BASE with more steps, checkpoints, EMA, three sampling batches and two seeds.
EXP = (
    BASE.replace(
        "train { iterations = 10, batch_size = 8 }",
        "train { iterations = 20, batch_size = 8, checkpoint_every = 5, log_every = 5, ema = 0.9 }",
    )
    .replace("sample { stage", "sample { samples = 40, batch_size = 16, stage")
    .replace("\n}\n", "\n    sweep seed = [0, 1]\n}\n")
)
# The same run as seed 1 of EXP (the seed is not in the hash), alone.
KILL = EXP.replace("sweep seed = [0, 1]", "seed = 1")


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "dsl.cli", "run", *map(str, args), "--device", "cpu"]


def repro_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`repro run ARGS --device cpu` in a fresh process (one thread, this checkout first)."""
    return subprocess.run(cli(*args), cwd=ROOT, env=ENV, capture_output=True, text=True)


def seed_dir(runs: Path, spec) -> Path:  # type: ignore[no-untyped-def]
    return runs / spec.experiment / spec.hash() / f"seed-{spec.seed}"


def final_state(runs: Path, spec) -> dict:  # type: ignore[no-untyped-def]
    _, path = ckpt.list_checkpoints(seed_dir(runs, spec) / "train" / "checkpoints")[-1]
    return torch.load(path, weights_only=True)


def relative(a: dict, b: dict) -> float:
    """‖θ_a − θ_b‖ / ‖θ_a‖ over every floating-point tensor of the state dicts."""
    num = den = 0.0
    for k, v in a.items():
        if v.is_floating_point():
            num += (v.double() - b[k].double()).pow(2).sum().item()
            den += v.double().pow(2).sum().item()
    return (num / den) ** 0.5


@pytest.fixture(scope="module")
def shared(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One process (in this process) and two processes (gloo), same file and global batch, in
    one two-process launch: seed 0 reuses the one-process training and samples with two
    processes, seed 1 trains with two processes."""
    tmp = tmp_path_factory.mktemp("dist")
    f = tmp / "e.exp"
    f.write_text(EXP, encoding="utf-8")
    s0, s1 = compile_file(f)
    one = tmp / "one"
    run_spec(s0, runs_dir=one, device="cpu", until="sample", quiet=True)
    run_spec(s1, runs_dir=one, device="cpu", until="train", quiet=True)
    two = tmp / "two"
    shutil.copytree(one, two)
    shutil.rmtree(seed_dir(two, s1))
    shutil.rmtree(seed_dir(two, s0) / f"sample-{s0.sample_hash()}")  # sampled again by two processes
    t0 = time.perf_counter()
    p = repro_run(f, "--runs", two, "--nproc", "2", "--until", "sample")
    assert p.returncode == 0, p.stderr
    print(f"two-process launch: {time.perf_counter() - t0:.1f}s")
    return f, (s0, s1), one, two


def test_two_processes_train_as_one_with_the_same_global_batch(shared) -> None:  # type: ignore[no-untyped-def]
    f, (_, spec), one, two = shared
    a, b = final_state(one, spec), final_state(two, spec)
    assert a["step"] == b["step"] == 20
    rel_model, rel_ema = relative(a["model"], b["model"]), relative(a["ema"], b["ema"])
    print(f"1 vs 2 processes after 20 steps: model {rel_model:.2e}, ema {rel_ema:.2e} relative")
    assert rel_model < 1e-6 and rel_ema < 1e-6
    # The random streams are those of the global batch on every rank: equal bit for bit, so a
    # checkpoint resumes on any process count.
    for k in ("gen_data", "gen_noise", "torch_rng"):
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(a["order"]["perm"], b["order"]["perm"]) and a["order"]["pos"] == b["order"]["pos"]
    # The same run folder (the hardware is not hashed), the hardware recorded in env.json.
    env = json.loads((seed_dir(two, spec) / layout.ENV).read_text())
    assert (env["world_size"], env["backend"], env["devices"]) == (2, "gloo", ["cpu", "cpu"])
    env1 = json.loads((seed_dir(one, spec) / layout.ENV).read_text())
    assert (env1["world_size"], env1["backend"]) == (1, None)
    # Rank 0 alone wrote the log: one line per interval, the global batch's loss.
    la = [json.loads(x) for x in (seed_dir(one, spec) / "train" / layout.LOG).read_text().splitlines()]
    lb = [json.loads(x) for x in (seed_dir(two, spec) / "train" / layout.LOG).read_text().splitlines()]
    assert [r["step"] for r in lb] == [5, 10, 15, 20]
    for ra, rb in zip(la, lb, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)


def test_sigkill_under_two_processes_resumes_bit_identical(shared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, (_, spec), one, two = shared
    f = tmp_path / "kill.exp"
    f.write_text(KILL, encoding="utf-8")
    runs = tmp_path / "runs"
    ckdir = seed_dir(runs, spec) / "train" / "checkpoints"
    proc = subprocess.Popen(
        cli(f, "--runs", runs, "--nproc", "2", "--until", "train"),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline and not ckpt.list_checkpoints(ckdir):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, mid-training
    proc.wait()
    killed_at = [s for s, _ in ckpt.list_checkpoints(ckdir)]
    assert killed_at and killed_at[-1] < 20, killed_at
    # The same killed run resumed on another count (one process, here): the checkpoint holds
    # the global batch's streams, so it ends as the one-process run does.
    other = tmp_path / "other"
    shutil.copytree(runs, other)
    (kspec,) = compile_file(f)
    run_spec(kspec, runs_dir=other, device="cpu", until="train", quiet=True)
    c, d = final_state(one, spec), final_state(other, spec)
    assert relative(c["model"], d["model"]) < 1e-6 and relative(c["ema"], d["ema"]) < 1e-6
    assert all(torch.equal(c[k], d[k]) for k in ("gen_data", "gen_noise", "torch_rng"))
    p = repro_run(f, "--runs", runs, "--nproc", "2", "--until", "train")
    assert p.returncode == 0, p.stderr
    assert "resuming from step" in p.stderr
    a, b = final_state(two, spec), final_state(runs, spec)
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for k in ("gen_data", "gen_noise", "torch_rng"):
        assert torch.equal(a[k], b[k])
    log = [
        json.loads(x)["step"] for x in (seed_dir(runs, spec) / "train" / layout.LOG).read_text().splitlines()
    ]
    assert log == [5, 10, 15, 20]
    print("killed after checkpoints", killed_at)


def test_two_process_sampling_equals_one_process(shared) -> None:  # type: ignore[no-untyped-def]
    _, (spec, _), one, two = shared
    sample = seed_dir(two, spec) / f"sample-{spec.sample_hash()}"
    ref = torch.load(seed_dir(one, spec) / f"sample-{spec.sample_hash()}" / layout.SAMPLES, weights_only=True)
    got = torch.load(sample / layout.SAMPLES, weights_only=True)
    assert ref.shape[0] == 40 and torch.equal(ref, got)  # 3 batches, 2 on rank 0 and 1 on rank 1
    assert not layout.shards_dir(sample).exists()  # removed once samples.pt holds them all
    res = json.loads((sample / layout.RESULTS).read_text())
    assert res["world_size"] == 2
    assert torch.equal(  # the training stage was reused, not redone
        final_state(one, spec)["model"][next(iter(final_state(one, spec)["model"]))],
        final_state(two, spec)["model"][next(iter(final_state(two, spec)["model"]))],
    )


def test_a_killed_sampling_job_draws_only_the_missing_shards(shared, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, (spec, _), one, _ = shared
    runs = tmp_path / "runs"
    shutil.copytree(one, runs)
    sample = seed_dir(runs, spec) / f"sample-{spec.sample_hash()}"
    shutil.rmtree(sample)
    drawn: list[int] = []
    real = dist.batch_seed

    class Killed(Exception):
        pass

    def dies_at_batch_2(seed: int, offset: int, k: int) -> int:
        if k == 2:
            raise Killed
        drawn.append(k)
        return real(seed, offset, k)

    monkeypatch.setattr(dist, "batch_seed", dies_at_batch_2)
    with pytest.raises(Killed):
        run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    assert drawn == [0, 1]
    assert sorted(p.name for p in layout.shards_dir(sample).iterdir()) == [
        "batch-000000.pt",
        "batch-000001.pt",
    ]
    assert not layout.is_complete(sample)

    def counting(seed: int, offset: int, k: int) -> int:
        drawn.append(k)
        return real(seed, offset, k)

    drawn.clear()
    monkeypatch.setattr(dist, "batch_seed", counting)
    run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    assert drawn == [2]  # only the missing batch
    ref = torch.load(seed_dir(one, spec) / f"sample-{spec.sample_hash()}" / layout.SAMPLES, weights_only=True)
    assert torch.equal(ref, torch.load(sample / layout.SAMPLES, weights_only=True))


def test_sampling_seeds_depend_on_the_global_batch_index_only() -> None:
    assert dist.batch_seed(3, 0, 0) == 3 * 104729  # one-batch stages: the seed of old
    seeds = {dist.batch_seed(3, 0, k) for k in range(100)} | {dist.batch_seed(3, 1, k) for k in range(1, 100)}
    assert len(seeds) == 199
    assert dist.my_batches(5) == [0, 1, 2, 3, 4]


SWEEP = (
    EXP.replace(
        "iterations = 20, batch_size = 8, checkpoint_every = 5, log_every = 5, ema = 0.9",
        "iterations = 4, batch_size = 8",
    )
    .replace("samples = 40, batch_size = 16", "samples = 8")
    .replace("    loss dsm { }", "    loss dsm { }\n    sweep sample.samples = [4, 8]")
    .replace("    sweep seed = [0, 1]\n", "")
)


def test_a_sweep_runs_concurrently_through_the_local_scheduler(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("s.exp", SWEEP)
    specs = compile_file(f)
    assert len(specs) == 2 and specs[0].train_hash() == specs[1].train_hash()
    runs = tmp_path / "runs"
    p = repro_run(f, "--runs", runs, "--parallel", "2", "--until", "sample")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "[1/2]" in out and "[2/2]" in out and out.count(": done in") == 2, out
    for s in specs:
        assert layout.is_complete(seed_dir(runs, s) / f"sample-{s.sample_hash()}")
    # The shared training stage ran once: one run trained, the other reused it.
    trained = [d for d in runs.glob("e/*/seed-0/train") if layout.is_complete(d)]
    assert len(trained) == 1


def test_a_sweep_through_submitit_debug_executor(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("submitit")
    f = write("s.exp", SWEEP)
    specs = compile_file(f)
    runs = tmp_path / "runs"
    args = ["--runs", runs, "--until", "sample", "--launcher", "slurm", "--slurm-cluster", "debug"]
    p = repro_run(f, *args, "--partition", "p", "--time", "00:10:00")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("submitted job") == 2 and p.stdout.count(": done") == 2, p.stdout
    for s in specs:
        assert layout.is_complete(seed_dir(runs, s) / f"sample-{s.sample_hash()}")
    assert (runs / ".slurm").is_dir()  # submitit's logs


def test_device_and_launcher_mistakes_are_clear_errors(write, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ncsn_core import launch

    f = write("e.exp", EXP)
    r = CliRunner()
    monkeypatch.setattr(launch, "gpu_count", lambda: 2)
    res = r.invoke(app, ["run", str(f), "--gpus", "3"])
    assert res.exit_code == 2 and "this machine has 2 GPUs (0-1); GPU 2 does not exist" in res.output
    res = r.invoke(app, ["run", str(f), "--gpus", "0,5"])
    assert res.exit_code == 2 and "GPU 5 does not exist" in res.output
    res = r.invoke(app, ["run", str(f), "--device", "cpu", "--nproc", "3"])
    assert res.exit_code == 2, res.output
    assert "train.batch_size = 8 cannot be split over 3 processes" in res.output
    assert "(e.g. 6 or 9)" in res.output and "(1, 2, 4, 8)" in res.output
    monkeypatch.setitem(sys.modules, "submitit", None)
    res = r.invoke(app, ["run", str(f), "--launcher", "slurm", "--partition", "p"])
    assert res.exit_code == 2 and "pip install submitit" in res.output
    assert "Traceback" not in res.output


def test_a_failed_process_group_names_rank_and_address(monkeypatch) -> None:
    port = 1  # nothing listens there: rank 1 cannot reach rank 0's store
    for k, v in {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "REPRO_DIST_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(dist.DistributedInitError) as e:
        dist.init(torch.device("cpu"))
    assert "rank 1 of 2 could not join the gloo process group at 127.0.0.1:1" in str(e.value)
    assert dist.world() == 1
