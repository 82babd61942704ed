"""Third-party components through the `repro.plugins` entry-point group (tests/plugin_demo):
the plug-in's loss is explained, checked, documented by `repro explain` and trained with, all
from an entry point, and the registry's own kinds and duplicate names are guarded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncsn_core.errors import PluginError
from ncsn_core.params import Declaration, declare
from ncsn_core.registry import Registry

DEMO = Path(__file__).resolve().parent / "plugin_demo"
ROOT = Path(__file__).resolve().parent.parent

EXP = """\
experiment plug {
    data mixture2d { n_train = 512 }
    noise geometric { sigma_max = 1.0, sigma_min = 0.1, levels = 3 }
    network mlp { hidden = 16 }
    loss scaled_dsm { scale = 2.0 }
    train { iterations = 4, batch_size = 16, checkpoint_every = 4 }
}
"""


def _site(tmp_path: Path, value: str) -> dict[str, str]:
    """A site folder holding the demo package's entry point, as `pip install` would write it."""
    site = tmp_path / "site"
    dist = site / "repro_demo_plugin-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: repro-demo-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[repro.plugins]\ndemo = {value}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(DEMO), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _repro(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsl.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plugin_component_is_explained_checked_and_trained(tmp_path: Path) -> None:
    env = _site(tmp_path, "repro_demo_plugin:DECLARATIONS")
    r = _repro(env, "explain", "loss", "scaled_dsm", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "λ(σ) = c·σ²" in r.stdout and "scale" in r.stdout
    f = tmp_path / "plug.exp"
    f.write_text(EXP)
    r = _repro(env, "check", str(f), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.exp"
    bad.write_text(EXP.replace("scale = 2.0", "scale = -1"))
    r = _repro(env, "check", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "bad.exp:5:31" in r.stderr and "must be > 0" in r.stderr
    r = _repro(env, "run", str(f), "--runs", str(tmp_path / "runs"), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    log = next((tmp_path / "runs").glob("plug/*/seed-0/train/log.jsonl")).read_text().splitlines()
    assert json.loads(log[-1])["step"] == 4


def test_without_the_plugin_the_name_is_unknown(tmp_path: Path) -> None:
    f = tmp_path / "plug.exp"
    f.write_text(EXP)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = _repro(env, "check", str(f), cwd=tmp_path)
    assert r.returncode == 2 and "unknown loss 'scaled_dsm'" in r.stderr


def test_a_broken_plugin_is_named_not_a_traceback(tmp_path: Path) -> None:
    env = _site(tmp_path, "repro_demo_plugin:NO_SUCH_NAME")
    r = _repro(env, "explain", cwd=tmp_path)
    assert r.returncode == 2
    assert "plug-in demo" in r.stderr and "NO_SUCH_NAME" in r.stderr and "Traceback" not in r.stderr


def test_registry_guards_kinds_and_duplicates() -> None:
    good = declare("loss", "x", "m:f")
    with pytest.raises(PluginError, match="declared twice"):
        Registry([good, good])
    with pytest.raises(PluginError, match="unknown component kind"):
        Registry([Declaration("lossy", "y", "m:f")])
