"""env.json (issue 26.2): what decides bit-identity is recorded in the seed folder and in each
stage a run computes, never hashed; env_differences names the fields two records differ in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core import layout
from ncsn_core.environment import env_differences
from ncsn_core.runner import run_spec
from ncsn_core.stages.env import cpu_math, cuda_math, environment

TINY = """\
experiment tiny {
    data mixture2d { n_train = 500 }
    noise geometric { sigma_max = 5.0, sigma_min = 0.1, levels = 4 }
    network mlp { hidden = 16, layers = 2, conditional = true }
    loss dsm { }
    train { batch_size = 32, iterations = 4, checkpoint_every = 4, log_every = 2 }
    sample { samples = 20, init = uniform(low = -8, high = 8), stage annealed_langevin { steps_per_level = 2, step_size = 0.05 } }
    evaluate { metrics = [mmd], samples = 20 }
}
"""


@pytest.fixture
def threads():  # type: ignore[no-untyped-def]
    """Two intra-op threads for the test (conftest's one restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_env_json_of_a_tiny_run_records_what_decides_bit_identity(write, tmp_path: Path, threads) -> None:  # type: ignore[no-untyped-def]
    (spec,) = compile_file(write("tiny.exp", TINY))
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    seed = layout.seed_dir(layout.run_dir(runs, "tiny", spec.hash()), 0)
    stages = [
        layout.stage_dir(seed, layout.TRAIN),
        layout.stage_dir(seed, layout.SAMPLE, spec.sample_hash()),
        layout.stage_dir(seed, layout.EVAL, spec.eval_hash()),
    ]
    config = torch.__config__.show()
    for folder in (seed, *stages):
        env = json.loads((folder / layout.ENV).read_text())
        assert env["threads"] == torch.get_num_threads() == threads
        assert env["interop_threads"] == torch.get_num_interop_threads()
        # run_spec sets deterministic algorithms for a CPU run (ncsn_core.determinism), restored after
        assert env["deterministic_algorithms"] is True
        assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
        assert env["blas"] and f"BLAS_INFO={env['blas']}" in config
        if torch.backends.mkldnn.is_available():
            assert env["onednn"] and env["onednn"] in config
        if torch.backends.mkl.is_available():
            assert env["mkl"] and env["mkl"] in config
        assert env["cpu"] and env["cpu_capability"]
        assert (env["device"], env["world_size"], env["backend"], env["devices"]) == ("cpu", 1, None, ["cpu"])
        assert env["torch"] == torch.__version__
        assert "cuda" not in env and "gpu" not in env  # CUDA's fields only when a GPU is used
    # A stage's env.json is the environment that computed it: a rerun (another thread count)
    # reuses every stage and rewrites only the seed folder's.
    before = [(f / layout.ENV).read_bytes() for f in stages]
    torch.set_num_threads(1)
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    assert [(f / layout.ENV).read_bytes() for f in stages] == before
    now = json.loads((seed / layout.ENV).read_text())
    assert now["threads"] == 1
    assert env_differences(json.loads(before[0]), now) == ["threads"]


def test_the_flags_are_read_when_the_record_is_made() -> None:
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        assert cpu_math()["deterministic_algorithms"] is True
    finally:
        torch.use_deterministic_algorithms(was)
    assert cpu_math()["deterministic_algorithms"] is was
    assert cuda_math(torch.device("cpu")) == {}


def test_env_differences_names_fields_not_time_or_physical_devices() -> None:
    a = environment(torch.device("cpu"))
    assert env_differences(a, dict(a)) == []
    b = {**a, "time": "another time", "devices": ["cuda:7"]}  # when and where: not compared
    assert env_differences(a, b) == []
    c = {**a, "threads": a["threads"] + 1, "blas": "openblas", "gpu": "H100"}
    assert env_differences(a, c) == ["blas", "gpu", "threads"]  # a field only one has counts
    del c["cpu"]
    assert env_differences(c, a) == ["blas", "cpu", "gpu", "threads"]


def test_the_commit_is_read_once_per_process(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A commit made while a long sweep runs is not recorded for the stages the process ran with
    the code it imported at its start."""
    from ncsn_core.stages import env as stage_env

    heads = iter(["aaaa", "", "bbbb", " M x"])
    monkeypatch.setattr(stage_env, "_git", lambda *a: next(heads))
    stage_env.code_version.cache_clear()
    try:
        first = stage_env.environment(torch.device("cpu"))
        later = stage_env.environment(torch.device("cpu"))
        assert first["git_commit"] == later["git_commit"] == "aaaa"
        assert first["git_dirty"] is later["git_dirty"] is False
    finally:
        stage_env.code_version.cache_clear()
