"""train.micro_batch (ncsn_core.microbatch): a step computed in slices of the global batch, the
gradients accumulated, equals the full-batch step within float rounding (20 steps, one process
and two), draws the same random numbers (the generators end equal bit for bit) and enters no
hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import BASE

from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import microbatch
from ncsn_core.runner import run_spec

ROOT = Path(__file__).resolve().parent.parent
EXP = BASE.replace(
    "train { iterations = 10, batch_size = 8 }",
    "train { iterations = 20, batch_size = 8, checkpoint_every = 20, log_every = 5, ema = 0.9 }",
)


def final(runs: Path, spec) -> dict:  # type: ignore[no-untyped-def]
    folder = runs / spec.experiment / spec.hash() / f"seed-{spec.seed}" / "train" / "checkpoints"
    return torch.load(ckpt.list_checkpoints(folder)[-1][1], weights_only=True)


def relative(a: dict, b: dict) -> float:
    num = den = 0.0
    for k, v in a.items():
        if v.is_floating_point():
            num += (v.double() - b[k].double()).pow(2).sum().item()
            den += v.double().pow(2).sum().item()
    return (num / den) ** 0.5


def test_slices_cover_the_rows_in_order() -> None:
    assert microbatch.slices(slice(0, 8), 3) == [slice(0, 3), slice(3, 6), slice(6, 8)]
    assert microbatch.slices(slice(4, 8), 2) == [slice(4, 6), slice(6, 8)]
    assert microbatch.resolve(None, 8, torch.device("cpu")) is None
    assert microbatch.resolve("auto", 8, torch.device("cpu")) is None  # a CPU: the whole batch
    assert microbatch.resolve(8, 8, torch.device("cpu")) is None
    assert microbatch.resolve(3, 8, torch.device("cpu")) == 3


def test_micro_batches_train_as_the_full_batch(tmp_path: Path) -> None:
    full_f = tmp_path / "full.exp"
    full_f.write_text(EXP, encoding="utf-8")
    micro_f = tmp_path / "micro.exp"
    micro_f.write_text(EXP.replace("ema = 0.9 }", "ema = 0.9, micro_batch = 3 }"), encoding="utf-8")
    (full,) = compile_file(full_f)
    (micro,) = compile_file(micro_f)
    assert micro.hash() == full.hash() and micro.train_hash() == full.train_hash()  # not hashed
    assert micro.train.get("micro_batch") == 3 and full.train.get("micro_batch") is None
    run_spec(full, runs_dir=tmp_path / "a", device="cpu", until="train", quiet=True)
    run_spec(micro, runs_dir=tmp_path / "b", device="cpu", until="train", quiet=True)
    a, b = final(tmp_path / "a", full), final(tmp_path / "b", micro)
    assert a["step"] == b["step"] == 20
    rm, re = relative(a["model"], b["model"]), relative(a["ema"], b["ema"])
    print(f"micro_batch 3 vs full batch 8 after 20 steps: model {rm:.2e}, ema {re:.2e} relative")
    assert 0 <= rm < 1e-6 and re < 1e-6
    for k in ("gen_data", "gen_noise", "torch_rng"):  # the same random numbers, drawn once per step
        assert torch.equal(a[k], b[k]), k


def test_micro_batches_under_two_processes(tmp_path: Path) -> None:
    """Two processes (gloo), each rank's 4 rows in micro-batches of 3 (3 + 1), against one
    process with the whole batch."""
    f = tmp_path / "e.exp"
    f.write_text(EXP.replace("ema = 0.9 }", "ema = 0.9, micro_batch = 3 }"), encoding="utf-8")
    (spec,) = compile_file(f)
    run_spec(spec, runs_dir=tmp_path / "one", device="cpu", until="train", quiet=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dsl.cli", "run", str(f), "--runs", str(tmp_path / "two")]
    p = subprocess.run(
        [*cmd, "--device", "cpu", "--nproc", "2", "--until", "train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    a, b = final(tmp_path / "one", spec), final(tmp_path / "two", spec)
    rm = relative(a["model"], b["model"])
    print(f"2 processes × micro_batch 3 vs 1 process: model {rm:.2e} relative")
    assert rm < 1e-6
    assert torch.equal(a["gen_noise"], b["gen_noise"])
