"""repro.api, the Python API: the same results as the commands, values instead of text, errors as exceptions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASE
from typer.testing import CliRunner

from dsl.cli import app
from dsl.errors import DiagnosticError
from ncsn_core.errors import UserError
from repro import api

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

TOY = """\
experiment toy {
    data mixture2d { n_train = 500 }
    noise geometric { sigma_max = 5.0, sigma_min = 0.1, levels = 3 }
    network mlp { hidden = 16, layers = 2, conditional = true, scale_by_sigma = true }
    loss dsm { }
    train { optimizer = adam(lr = 1e-3), batch_size = 32, iterations = 4, checkpoint_every = 2, log_every = 2 }
    sample { samples = 16, init = uniform(low = -8, high = 8), stage annealed_langevin { steps_per_level = 2, step_size = 0.05 } }
    evaluate { metrics = [mmd], samples = 16 }
}
"""


def test_check_returns_specs_and_reports_every_file_at_once(write) -> None:  # type: ignore[no-untyped-def]
    good = write("good.exp", BASE)
    specs = api.check([good], sets=["train.iterations=20,30"])
    assert [s.train.kwargs()["iterations"] for s in specs] == [20, 30]
    bad1 = write("bad1.exp", BASE.replace("ngf = 8", "ngf = 8 $"))
    bad2 = write("bad2.exp", BASE.replace("levels = 10", 'levels = "ten"'))
    with pytest.raises(DiagnosticError) as e:
        api.check([bad1, good, bad2])
    assert {d.pos.file for d in e.value.diagnostics} == {str(bad1), str(bad2)}
    assert isinstance(e.value, UserError) and e.value.exit_code == 2


def test_compile_equals_repro_compile_json(write) -> None:  # type: ignore[no-untyped-def]
    f = write("e.exp", BASE)
    specs = api.compile(f, sets=["train.iterations=12"], compute_auto=False)
    r = runner.invoke(app, ["compile", str(f), "--json", "--no-auto", "--set", "train.iterations=12"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [s.canonical() for s in specs]
    assert specs[0].train.kwargs()["iterations"] == 12


def test_compile_keeps_what_compiled_when_one_experiment_fails(write) -> None:  # type: ignore[no-untyped-def]
    f = write(
        "two.exp", BASE + BASE.replace("experiment e", "experiment f").replace("levels = 10", "levels = -1")
    )
    with pytest.raises(DiagnosticError) as e:
        api.compile(f, compute_auto=False)
    assert [s.experiment for s in e.value.specs] == ["e"]


def test_report_format_rules() -> None:
    assert api.report_format("", "out.html") == "html"
    assert api.report_format("", "out.tex") == "tex"
    assert api.report_format("", None, tty=True) == "text"
    assert api.report_format("", None, tty=False) == "md"
    assert api.report_format("json", "out.html") == "json"
    with pytest.raises(UserError, match="--format must be"):
        api.report_format("pdf")


def test_run_then_ls_report_and_diff(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    runs = tmp_path / "runs"
    lines: list[str] = []
    done = api.run(
        f, runs_dir=runs, device="cpu", sets=["train.iterations=2,4"], log=lines.append, multirun=True
    )
    assert [s.train.kwargs()["iterations"] for s, _ in done] == [2, 4]
    assert lines[0].startswith("[1/2] toy") and lines[1].startswith("[2/2] toy")
    for s, _ in done:
        assert (runs / "toy" / s.hash() / "source.exp").read_text() == TOY
    rows = api.ls(runs)
    assert sorted(r["hash"] for r in rows) == sorted(s.hash()[: len(rows[0]["hash"])] for s, _ in done)
    assert {r["status"] for r in rows} == {"done"}
    assert api.ls(runs, status="failed") == []
    with pytest.raises(UserError, match="--status must be one of"):
        api.ls(runs, status="bogus")
    doc = json.loads(api.report(runs, format="json", papers=tmp_path / "none"))
    assert doc == json.loads(
        runner.invoke(app, ["report", str(runs), "--json", "--papers", str(tmp_path / "none")]).stdout
    )
    a, b = (str(runs / "toy" / s.hash()) for s, _ in done)
    got: list = []
    d = api.diff(a, b, runs=got)
    assert [c["key"] for c in d["settings"]] == ["train.iterations"]
    assert all(r is not None for r in got)
    with pytest.raises(UserError, match="--until must be"):
        api.run(f, runs_dir=runs, until="eval")


def test_importing_the_api_imports_no_torch() -> None:
    code = "import sys, repro.api; assert 'torch' not in sys.modules and 'dsl.compiler' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
