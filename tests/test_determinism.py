"""`repro run --deterministic` (issue 26.3): ncsn_core.determinism sets deterministic algorithms,
cuDNN's flags, cuBLAS's workspace and the thread count for a run, records them in env.json and
leaves the process as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import determinism, layout
from ncsn_core.errors import UserError
from ncsn_core.runner import run_spec

TINY = """\
experiment tiny {
    data mixture2d { n_train = 200 }
    noise geometric { sigma_max = 5.0, sigma_min = 0.1, levels = 4 }
    network mlp { hidden = 16, layers = 2, conditional = true }
    loss dsm { }
    train { batch_size = 32, iterations = 2, checkpoint_every = 2, log_every = 2 }
}
"""


def _flags() -> tuple:
    return (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


@pytest.fixture(autouse=True)
def _no_cublas_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def test_the_default_is_on_for_the_cpu_and_off_for_cuda() -> None:
    before = _flags()
    with determinism.applied(None, None, "cpu") as got:
        assert got == {"deterministic": True, "threads": before[0]}
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None  # a CPU run needs no cuBLAS setting
    assert _flags() == before
    with determinism.applied(None, None, torch.device("cuda", 1)) as got:  # flags only: no GPU needed
        assert got["deterministic"] is False
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert _flags() == before


def test_deterministic_on_cuda_sets_the_cublas_workspace_and_restores_it() -> None:
    before = _flags()
    with determinism.applied(True, 2, "cuda"):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == determinism.CUBLAS_WORKSPACE
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 2
    assert _flags() == before
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"  # the user's own setting is kept
    with determinism.applied(True, None, "cuda"):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_thread_count_below_one_is_a_user_error() -> None:
    before = _flags()
    with pytest.raises(UserError, match="--threads 0"), determinism.applied(True, 0, "cpu"):
        pass
    assert _flags() == before


@pytest.mark.parametrize(("deterministic", "threads"), [(None, 2), (False, 1)])
def test_a_run_records_what_it_was_computed_with(write, tmp_path: Path, deterministic, threads) -> None:  # type: ignore[no-untyped-def]
    (spec,) = compile_file(write("tiny.exp", TINY))
    before = _flags()
    run_spec(
        spec,
        runs_dir=tmp_path / "runs",
        device="cpu",
        quiet=True,
        deterministic=deterministic,
        threads=threads,
    )
    assert _flags() == before  # the process is left as it was
    seed = layout.seed_dir(layout.run_dir(tmp_path / "runs", "tiny", spec.hash()), 0)
    for folder in (seed, layout.stage_dir(seed, layout.TRAIN)):
        env = json.loads((folder / layout.ENV).read_text())
        assert env["threads"] == threads
        assert env["deterministic_algorithms"] is (deterministic is None)  # None: the CPU's default, on


def test_two_deterministic_runs_train_bit_identical_weights(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (spec,) = compile_file(write("tiny.exp", TINY))
    states = []
    for name in ("a", "b"):
        run_spec(spec, runs_dir=tmp_path / name, device="cpu", quiet=True, deterministic=True)
        train = layout.stage_dir(
            layout.seed_dir(layout.run_dir(tmp_path / name, "tiny", spec.hash()), 0), "train"
        )
        ((_, path),) = ckpt.list_checkpoints(layout.checkpoints_dir(train))
        states.append(torch.load(path, weights_only=True)["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_repro_run_threads_and_deterministic_options_reach_env_json(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import BASE
    from typer.testing import CliRunner

    from dsl.cli import app

    f = write("e.exp", BASE)
    runs = tmp_path / "runs"
    before = torch.get_num_threads()
    r = CliRunner().invoke(
        app, ["run", str(f), "--runs", str(runs), "--device", "cpu", "--until", "train", "--threads", "1"]
    )
    assert r.exit_code == 0, r.output
    assert torch.get_num_threads() == before  # restored after the run
    (env,) = [json.loads(p.read_text()) for p in runs.rglob("train/env.json")]
    assert env["threads"] == 1 and env["deterministic_algorithms"] is True
