"""The `repro` command line through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import BASE
from typer.testing import CliRunner

from dsl.cli import app

runner = CliRunner()


def test_check_ok_and_error_exit_codes(write) -> None:  # type: ignore[no-untyped-def]
    good = write("good.exp", BASE)
    r = runner.invoke(app, ["check", str(good)])
    assert r.exit_code == 0, r.output
    assert "ok: 1 file(s), 1 run(s)" in r.output
    bad = write("bad.exp", BASE.replace("sigma_max", "sigma_mx"))
    r = runner.invoke(app, ["check", str(bad)])
    assert r.exit_code == 2
    assert f"{bad}:3:23: error: unknown parameter 'sigma_mx'" in r.output
    assert "Traceback" not in r.output


def test_check_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["check", str(tmp_path / "nope.exp")])
    assert r.exit_code == 2
    assert "no such file" in r.output and "Traceback" not in r.output


def test_compile_json_has_hashes_and_set(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    r = runner.invoke(app, ["compile", str(f), "--json", "--set", "train.iterations=7"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data[0]["train"]["params"]["iterations"] == 7
    assert len(data[0]["hash"]) == 12
    r = runner.invoke(app, ["compile", str(f)])
    assert r.exit_code == 0, r.output
    assert "experiment e" in r.output and "parameters" in r.output


def test_compile_bad_set_exits_2(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    r = runner.invoke(app, ["compile", str(f), "--set", "train.iterations=oops("])
    assert r.exit_code == 2
    assert "<--set #1>" in r.output


def test_fmt_prints_writes_and_checks(write) -> None:  # type: ignore[no-untyped-def]
    messy = BASE.replace("ngf = 8", "ngf=8").replace("    data digits { }", "  data   digits {}")
    f = write("m.exp", messy)
    r = runner.invoke(app, ["fmt", "--check", str(f)])
    assert r.exit_code == 1
    r = runner.invoke(app, ["fmt", str(f)])
    assert r.exit_code == 0 and "ngf = 8" in r.output
    r = runner.invoke(app, ["fmt", "--write", str(f)])
    assert r.exit_code == 0
    assert f.read_text() == BASE
    assert runner.invoke(app, ["fmt", "--check", str(f)]).exit_code == 0


def test_fmt_syntax_error_exit_2(write) -> None:  # type: ignore[no-untyped-def]
    f = write("s.exp", "experiment e { seed = }")
    r = runner.invoke(app, ["fmt", str(f)])
    assert r.exit_code == 2 and f"{f}:1:23: error:" in r.output


def test_explain_from_registry() -> None:
    r = runner.invoke(app, ["explain"])
    assert r.exit_code == 0
    assert "geometric" in r.output and "annealed_langevin" in r.output
    r = runner.invoke(app, ["explain", "noise", "geometric"])
    assert r.exit_code == 0 and "sigma_max" in r.output and "auto" in r.output
    r = runner.invoke(app, ["explain", "noise", "geometrik"])
    assert r.exit_code == 2 and "did you mean 'geometric'" in r.output
    r = runner.invoke(app, ["explain", "nosie"])
    assert r.exit_code == 2 and "did you mean 'noise'" in r.output


def test_run_bad_device_is_clear(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    r = runner.invoke(app, ["run", str(f), "--device", "tpu:9", "--runs", str(tmp_path / "runs")])
    assert r.exit_code == 1
    assert "error:" in r.output and "Traceback" not in r.output


def test_every_paper_file_checks_and_is_formatted() -> None:
    root = Path(__file__).resolve().parent.parent / "papers"
    files = sorted(root.glob("*.exp"))
    assert len(files) >= 10
    r = runner.invoke(app, ["check", *map(str, files)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["fmt", "--check", *map(str, files)])
    assert r.exit_code == 0, r.output


def test_compile_shows_parameter_counts_without_reading_data() -> None:
    root = Path(__file__).resolve().parent.parent / "papers"
    r = runner.invoke(app, ["compile", str(root / "ncsn_cifar.exp"), "-e", "ncsn_cifar10"])
    assert r.exit_code == 0, r.output
    assert "30,117,635 parameters" in r.output  # CIFAR-10 is not on this machine: shape from params
    r = runner.invoke(app, ["compile", str(root / "ncsnv2_cifar.exp"), "-e", "ncsnv2_cifar10"])
    assert "29,694,083 parameters" in r.output


def test_shell_completion_script_is_offered() -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from dsl.cli import main; main()", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "complete -o default -F _repro_completion repro" in out.stdout
