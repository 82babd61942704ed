"""Config groups: `group NAME { OPTION { ... } }`, `use GROUP = OPTION`, `--use GROUP=OPTION`
(docs/language.md, "Config groups")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.ast import Pos
from dsl.cli import app
from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from dsl.fmt import format_text
from dsl.parser import parse_text
from dsl.resolve import load, resolve
from repro import api
from tests.test_dsl_roundtrip import strip_pos

runner = CliRunner()

# A 2-D toy that trains in seconds on a CPU: two sizes of the score network.
TOY = """\
group size {
    small { network mlp { hidden = 16, layers = 2, act = softplus }, train.iterations = 20 }
    big {
        network mlp { hidden = 32, layers = 3, act = softplus }
    }
}

experiment toy {
    data mixture2d { }
    noise none { }
    use size = small
    loss ssm_vr { }
    train { optimizer = adam(lr = 1e-3), batch_size = 32, iterations = 30, checkpoint_every = 10 }
    sample { samples = 64, init = uniform(low = -8, high = 8), stage langevin { steps = 5, step_size = 0.1 } }
    evaluate { metrics = [mode_weights], samples = 64 }
}
"""


def _one(path: Path, name: str | None = None, sets: list[str] | None = None):  # type: ignore[no-untyped-def]
    (r,) = resolve(load(path), [name] if name else None, sets or [])
    return r


def _errors(path: Path, sets: list[str] | None = None) -> list:
    with pytest.raises(DiagnosticError) as e:
        resolve(load(path), None, sets or [])
    return e.value.diagnostics


# ----------------------------------------------------------------------------- meaning
def test_option_applies_at_its_place(write) -> None:  # type: ignore[no-untyped-def]
    f = write(
        "a.exp",
        """\
group g { o { train.iterations = 5, train.batch_size = 7, network mlp { hidden = 16 } } }
experiment before {
    data mixture2d { }
    train.iterations = 1
    use g = o
}
experiment after {
    data mixture2d { }
    use g = o
    train.iterations = 1
}
""",
    )
    before, after = resolve(load(f))
    # items before the `use` are overridden by the option, items after it override it
    assert before.blocks["train"].params["iterations"].value == 5
    assert after.blocks["train"].params["iterations"].value == 1
    assert after.blocks["train"].params["batch_size"].value == 7
    assert after.blocks["network"].name == "mlp"
    note = after.blocks["network"].params["hidden"].origin
    assert "from option o of group g" in note and f"used at {f}:9:5" in note


def test_child_use_replaces_the_parents_option(write) -> None:  # type: ignore[no-untyped-def]
    f = write(
        "a.exp",
        """\
group size {
    small { network mlp { hidden = 16 }, train.iterations = 400 }
    paper { network ncsn { ngf = 8 } }
}
experiment base {
    data digits { }
    train.batch_size = 4
    use size = small
}
experiment child extends base {
    use size = paper
}
""",
    )
    base = _one(f, "base")
    child = _one(f, "child")
    assert base.blocks["network"].name == "mlp"
    assert base.blocks["train"].params["iterations"].value == 400
    # the parent's option is not applied at all: its block of another kind is gone and its
    # train.iterations does not linger; the parent's own items stay
    assert child.blocks["network"].name == "ncsn"
    assert "hidden" not in child.blocks["network"].params
    assert "iterations" not in child.blocks["train"].params
    assert child.blocks["train"].params["batch_size"].value == 4


def test_use_is_inherited(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", TOY + "experiment kid extends toy { seed = 3 }\n")
    kid = _one(f, "kid")
    assert kid.blocks["network"].params["hidden"].value == 16


def test_same_hash_as_writing_the_option(write) -> None:  # type: ignore[no-untyped-def]
    """The chosen option changes only the content: the hash is that of the same values written out."""
    f = write("a.exp", TOY)
    spelled = TOY.replace(
        "    use size = small\n", "    network mlp { hidden = 32, layers = 3, act = softplus }\n"
    )
    g = write("b.exp", spelled)
    (used,) = compile_file(f, sets=["use:size=big"], compute_auto=False)
    (written,) = compile_file(g, compute_auto=False)
    (small,) = compile_file(f, compute_auto=False)
    assert used.hash() == written.hash()
    assert small.hash() != used.hash()


def test_groups_across_imports_and_defined_twice(write) -> None:  # type: ignore[no-untyped-def]
    write("lib.exp", "group size {\n    small { train.iterations = 3 }\n}\n")
    f = write("a.exp", 'import "lib.exp"\nexperiment e { data digits { }, use size = small }\n')
    assert _one(f).blocks["train"].params["iterations"].value == 3
    g = write("b.exp", 'import "lib.exp"\ngroup size { x { } }\nexperiment e { data digits { } }\n')
    (d,) = _errors(g)
    assert d.message == "group 'size' is defined twice"
    assert str(d.pos) == f"{g}:2:7"
    assert d.notes == (f"first defined at {Path(g).parent / 'lib.exp'}:1:7",)


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("experiment e { use sise = a }", "unknown group 'sise'; did you mean 'size'?", "3:20"),
        (
            "experiment e { use size = smal }",
            "group 'size' has no option 'smal'; did you mean 'small'?",
            "3:27",
        ),
        (
            "experiment e { use size = small, use size = big }",
            "group 'size' is used twice in experiment 'e'",
            "3:38",
        ),
    ],
)
def test_use_errors(write, text: str, message: str, where: str) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", "group size { small { }, big { } }\n\n" + text + "\n")
    (d,) = _errors(f)
    assert d.message == message
    assert str(d.pos) == f"{f}:{where}"


def test_option_defined_twice(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", "group size {\n    a { }\n    a { }\n}\n")
    with pytest.raises(DiagnosticError) as e:
        load(f)
    (d,) = e.value.diagnostics
    assert d.message == "option 'a' is defined twice in group 'size'"
    assert d.pos == Pos(str(f), 3, 5, 3, 6)


def test_check_cli_reports_a_bad_use(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", TOY.replace("use size = small", "use size = smal"))
    r = runner.invoke(app, ["check", str(f)])
    assert r.exit_code == 2
    assert f"{f}:11:16: error: group 'size' has no option 'smal'; did you mean 'small'?" in r.output
    assert "Traceback" not in r.output


# ----------------------------------------------------------------------------- --use
def test_use_option_replaces_and_labels(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", TOY)
    r = runner.invoke(app, ["compile", str(f), "--no-auto", "--use", "size=big"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("experiment toy[size=big]")
    assert "hidden = 32" in r.output
    assert api.point_label("toy", (), ["use:size=big", "seed=1"]) == "toy[size=big,seed=1]"


@pytest.mark.parametrize(
    ("arg", "message", "col"),
    [
        ("sise=big", "--use: unknown group 'sise'; did you mean 'size'?", 1),
        ("size=bgi", "--use: group 'size' has no option 'bgi'; did you mean 'big'?", 6),
        ("size", "--use needs GROUP=OPTION, e.g. --use data=digits", 1),
    ],
)
def test_use_option_errors(write, arg: str, message: str, col: int) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", TOY)
    (d,) = _errors(f, ["use:" + arg])
    assert d.message == message
    assert (d.pos.file, d.pos.line, d.pos.col) == ("<--use #1>", 1, col)
    r = runner.invoke(app, ["check", str(f), "--use", arg])
    assert r.exit_code == 2 and f"<--use #1>:1:{col}: error: {message}" in r.output


def test_use_option_on_an_experiment_without_the_group(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", "group data { d { } }\n" + TOY)
    (d,) = _errors(f, ["use:data=d"])
    assert d.message.startswith("experiment toy does not use group 'data'")


def test_several_options_need_multirun_and_sweep(write) -> None:  # type: ignore[no-untyped-def]
    f = write("a.exp", TOY)
    r = runner.invoke(app, ["compile", str(f), "--no-auto", "--use", "size=small,big"])
    assert r.exit_code == 2
    assert (
        "<--use #1>:1:11: error: --use size: several options (2) make a sweep, which needs --multirun"
        in r.output
    )
    r = runner.invoke(app, ["compile", str(f), "--json", "--no-auto", "-m", "--use", "size=small,big"])
    assert r.exit_code == 0, r.output
    specs = json.loads(r.output)
    assert [s["sweep"] for s in specs] == [{"size": "small"}, {"size": "big"}]
    assert [s["network"]["params"]["hidden"] for s in specs] == [16, 32]
    assert specs[0]["hash"] != specs[1]["hash"]
    # with a --set sweep: one grid, counted by --max-runs
    grid = resolve(load(f), None, ["use:size=small,big", "train.iterations=5,6"])
    assert [(r.sweep_point["size"], r.sweep_point["train.iterations"]) for r in grid] == [
        ("small", "5"),
        ("small", "6"),
        ("big", "5"),
        ("big", "6"),
    ]
    with pytest.raises(DiagnosticError, match="the limit is 3"):
        resolve(load(f), None, ["use:size=small,big", "train.iterations=5,6"], max_runs=3)


# ----------------------------------------------------------------------------- fmt
def test_fmt_round_trip() -> None:
    text = """\
# lead
group size {   # trailing
  small { network mlp { hidden = 16 }, train.iterations=20 }
  # before big
  big {
     network mlp { hidden = 32, layers = 3 }
     published "T" { fid = 1 }
  }
  empty { }
}
experiment toy {
    data mixture2d { }
    use   size=small   # pick
    train.iterations = 3
}
"""
    out = format_text(text)
    assert format_text(out) == out
    assert strip_pos(parse_text(out)) == strip_pos(parse_text(text))
    assert "    use size = small  # pick\n" in out
    assert "    small { network mlp { hidden = 16 }, train.iterations = 20 }\n" in out
    assert "group size {  # trailing\n" in out and "    # before big\n" in out


# ----------------------------------------------------------------------------- end to end
def test_multirun_use_runs_ls_report_diff(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY)
    runs = tmp_path / "runs"
    r = runner.invoke(
        app, ["run", str(f), "-m", "--use", "size=small,big", "--device", "cpu", "--runs", str(runs)]
    )
    assert r.exit_code == 0, r.output
    folders = sorted(p.parent for p in runs.glob("toy/*/spec.json"))
    assert len(folders) == 2
    for p in folders:
        assert json.loads((p / "overrides.json").read_text()) == ["use:size=small,big"]
    inv = next(runs.glob(".invocations/*/invocation.json"))
    record = json.loads(inv.read_text())
    assert "--use" in record["command"] and record["set"] == ["use:size=small,big"]
    assert sorted(x["label"] for x in record["runs"]) == ["toy[size=big]", "toy[size=small]"]
    rows = api.ls(runs, file=f)
    assert sorted(r["label"] for r in rows) == ["toy[size=big]", "toy[size=small]"]
    assert {r["status"] for r in rows} == {"done"}  # recompiled with the run's --use: not stale
    listed = runner.invoke(app, ["ls", str(runs), "--file", str(f)])
    flat = " ".join(listed.output.split())  # wrapped at 100 columns
    assert listed.exit_code == 0 and "--use size=small,big" in flat and "use:" not in flat, flat
    text = api.report(runs, format="text", papers=tmp_path / "none")
    assert "size = small" in text and "size = big" in text
    doc = api.diff(str(folders[0]), str(folders[1]), runs_dir=runs)
    assert {doc["a"]["label"], doc["b"]["label"]} == {"toy[size=big]", "toy[size=small]"}
    assert any(c["key"] == "network.hidden" for c in doc["settings"])
    one = api.diff(f"{f}:toy", str(folders[0]), runs_dir=runs, sets=["use:size=big"])
    assert one["a"]["label"] == "toy[size=big]"
