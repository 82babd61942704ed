"""Launcher settings (issue 14 item 5): `repro run`'s options, the file's `launcher { }` block
and the user's config, in that order of precedence — and never part of a hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BASE
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import launch
from ncsn_core.errors import UserError

LAUNCHER = '    launcher { nproc = 2, launcher = slurm, partition = "gpu", time = "02:00:00" }\n'
WITH = BASE.removesuffix("}\n") + LAUNCHER + "}\n"


def test_the_block_is_shown_but_never_hashed(write) -> None:  # type: ignore[no-untyped-def]
    (a,), (b,) = (
        compile_file(write("a.exp", BASE), compute_auto=False),
        compile_file(write("b.exp", WITH), compute_auto=False),
    )
    assert a.hash() == b.hash() and a.train_hash() == b.train_hash() and a.eval_hash() == b.eval_hash()
    r = CliRunner().invoke(app, ["compile", "--no-auto", "--json", str(write("c.exp", WITH))])
    (spec,) = json.loads(r.output)
    assert spec["launcher"]["params"]["nproc"] == 2 and spec["hash"] == a.hash()


def test_precedence_option_file_config_default(
    write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "launcher.toml"
    cfg.write_text('[launcher]\npartition = "user-part"\nnodes = 4\n')
    monkeypatch.setenv("REPRO_CONFIG", str(cfg))
    specs = compile_file(write("w.exp", WITH), compute_auto=False)
    none = dict.fromkeys(
        ("gpus", "nproc", "parallel", "launcher", "partition", "gpus_per_node", "nodes", "time")
    )
    got = launch.settings(none, specs)
    assert got["nproc"] == 2 and got["launcher"] == "slurm" and got["partition"] == "gpu"  # the file's
    assert got["nodes"] == 4  # the user's config where the file says nothing
    assert got["gpus_per_node"] == 0 and got["parallel"] == 1  # the defaults
    got = launch.settings({**none, "nproc": 1, "partition": "cli"}, specs)
    assert got["nproc"] == 1 and got["partition"] == "cli"  # the command line wins
    with pytest.raises(UserError, match="--launcher: 'moon' is not one of"):
        launch.settings({**none, "launcher": "moon"}, specs)
    cfg.write_text("[launcher]\nnodez = 4\n")
    with pytest.raises(UserError, match="unknown launcher setting 'nodez'"):
        launch.settings(none, specs)


def test_experiments_that_disagree_are_a_clear_error(write) -> None:  # type: ignore[no-untyped-def]
    two = WITH + WITH.replace("experiment e", "experiment f").replace("nproc = 2", "nproc = 4")
    specs = compile_file(write("two.exp", two), compute_auto=False)
    none = dict.fromkeys(
        ("gpus", "nproc", "parallel", "launcher", "partition", "gpus_per_node", "nodes", "time")
    )
    with pytest.raises(UserError, match="different launcher"):
        launch.settings(none, specs)
    assert launch.settings(none, specs[:1])["nproc"] == 2
