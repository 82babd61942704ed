"""Issue 16.8: `--set` with several values (a sweep) and list values, and values that refer to
other values of the experiment (`steps_per_level = train.iterations / 1000`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from dsl.parser import parse_text
from dsl.resolve import load, resolve
from ncsn_core.values import value_text

runner = CliRunner()


def specs(path: Path, **kw):  # type: ignore[no-untyped-def]
    return compile_file(path, compute_auto=False, **kw)


OPT_BASE = BASE.replace("batch_size = 8 }", "batch_size = 8, optimizer = adam(lr = 1e-3) }")


def with_body(*lines: str) -> str:
    return OPT_BASE.replace("\n}\n", "\n" + "".join(f"    {x}\n" for x in lines) + "}\n")


def diag(path: Path, **kw):  # type: ignore[no-untyped-def]
    with pytest.raises(DiagnosticError) as ei:
        specs(path, **kw)
    assert len(ei.value.diagnostics) == 1, [d.render() for d in ei.value.diagnostics]
    return ei.value.diagnostics[0]


def summary(ss) -> list:  # type: ignore[no-untyped-def]
    return [(s.hash(), s.sweep, s.train.get("optimizer")) for s in ss]


# ----------------------------------------------------------------------------- --set sweeps
def test_cli_sweep_equals_file_sweep(write) -> None:  # type: ignore[no-untyped-def]
    plain = write("plain.exp", OPT_BASE)
    swept = write("swept.exp", with_body("sweep train.optimizer.lr = [1e-4, 2e-4]"))
    from_file = specs(swept)
    from_cli = specs(plain, sets=["train.optimizer.lr=1e-4,2e-4"])
    assert len(from_cli) == 2
    assert summary(from_cli) == summary(from_file)  # same runs, hashes and sweep-point labels
    assert from_cli[0].sweep == (("train.optimizer.lr", "1e-4"),)
    # spaces after the commas change nothing
    assert summary(specs(plain, sets=["train.optimizer.lr=1e-4, 2e-4"])) == summary(from_file)


def test_list_value_stays_one_value(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    (s,) = specs(f, sets=["evaluate.metrics=[fid,kid]"])
    assert [value_text(m) for m in s.evaluate.get("metrics")] == ["fid", "kid"]
    assert not s.sweep
    # commas inside parentheses and strings do not sweep either
    (s,) = specs(f, sets=["train.optimizer=adam(lr=1e-4, beta1=0.5)", 'paper="a, b"'])
    assert s.paper == "a, b" and dict(s.train.get("optimizer").params)["beta1"] == 0.5
    # a list sweep: lists separated by a top-level comma
    ss = specs(f, sets=["evaluate.metrics=[fid],[fid,kid]"])
    assert [len(s.evaluate.get("metrics")) for s in ss] == [1, 2]


def test_set_sweeps_make_a_grid_with_the_file_sweeps(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", with_body("sweep noise.levels = [5, 10, 20]"))
    ss = specs(f, sets=["train.iterations=10,20", "train.batch_size=4,8"])
    assert len(ss) == 3 * 2 * 2 and len({s.hash() for s in ss}) == 12
    assert {dict(s.sweep)["train.batch_size"] for s in ss} == {"4", "8"}
    assert all(set(dict(s.sweep)) == {"noise.levels", "train.iterations", "train.batch_size"} for s in ss)
    # a --set sweep of a key the file sweeps replaces the file's axis; so does a single --set
    assert len(specs(f, sets=["noise.levels=2,3"])) == 2
    (one,) = specs(f, sets=["noise.levels=7"])
    assert one.noise.get("levels") == 7


def test_set_sweeps_count_against_the_run_limit(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", with_body("sweep noise.levels = [5, 10, 20]"))
    sets = ["train.iterations=1,2,3", "seed=0,1"]
    assert len(specs(f, sets=sets, max_runs=18)) == 18
    d = diag(f, sets=sets, max_runs=17)
    assert "make 18 runs (3 × 3 × 2); the limit is 17" in d.message


def test_set_sweep_provenance(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    d = diag(f, sets=["train.iterations=10,-5"])
    assert "must be ≥ 0" in d.message
    assert "swept by --set train.iterations=10,-5" in d.notes
    assert (d.pos.file, d.pos.line, d.pos.col) == ("<--set #1>", 1, 21)


@pytest.mark.parametrize(
    ("arg", "col", "fragment"),
    [
        ("train.iterations=1,,2", 19, "two commas with no value between them"),
        ("train.iterations=1,", 19, "a comma with no value after it"),
        ("train.iterations=,1", 18, "a comma with no value before it"),
        ("train.iterations=1, ,2", 19, "two commas with no value between them"),
        ("train.iterations=[1,2", 21, "unexpected end of file"),
        ("train.iterations=1],2", 19, "unexpected ']'"),
        ("sweep.seed=1,2", 1, "--set takes no 'sweep'"),
    ],
)
def test_bad_comma_placement_is_positioned(write, arg: str, col: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    d = diag(f, sets=["seed=1", arg])
    assert fragment in d.message
    assert (d.pos.file, d.pos.line, d.pos.col) == ("<--set #2>", 1, col), d.render()
    r = runner.invoke(app, ["check", str(f), "--set", arg])
    assert r.exit_code == 2 and "Traceback" not in r.output


# ----------------------------------------------------------------------------- references
REFS = with_body(
    "sample { stage annealed_langevin { steps_per_level = train.iterations / 5, step_size = train.optimizer.lr / 50 } }",
    "loss dsm { weight = sigma ** 2 * noise.sigma_max }",
    "evaluate { samples = sample.annealed_langevin.steps_per_level * 10 }",
)


def test_references_resolve_to_the_values(write) -> None:  # type: ignore[no-untyped-def]
    f = write("refs.exp", REFS)
    (s,) = specs(f)
    assert s.stages[0].get("steps_per_level") == 2 and s.stages[0].get("step_size") == pytest.approx(2e-5)
    assert s.evaluate.get("samples") == 20
    assert s.loss.get("weight").text() == "sigma ** 2 * 1.0"
    # the same run as the values written out
    written = write(
        "written.exp",
        with_body(
            "sample { stage annealed_langevin { steps_per_level = 2, step_size = 2e-5 } }",
            "loss dsm { weight = sigma ** 2 * 1.0 }",
            "evaluate { samples = 20 }",
        ),
    )
    assert s.hash() == specs(written)[0].hash()


def test_references_follow_sets_sweeps_and_defaults(write) -> None:  # type: ignore[no-untyped-def]
    f = write("refs.exp", REFS)
    ss = specs(f, sets=["train.iterations=50,100"])
    assert [s.stages[0].get("steps_per_level") for s in ss] == [10, 20]
    g = write("dflt.exp", with_body("evaluate { batch_size = sample.annealed_langevin.record_every + 1 }"))
    assert specs(g)[0].evaluate.get("batch_size") == 1  # an unset parameter: its default
    h = write("ref_in_set.exp", BASE)
    (s,) = specs(h, sets=["sample.annealed_langevin.steps_per_level=train.iterations * 3"])
    assert s.stages[0].get("steps_per_level") == 30


def test_compile_shows_reference_provenance(write) -> None:  # type: ignore[no-untyped-def]
    f = write("refs.exp", REFS)
    r = runner.invoke(app, ["compile", str(f), "--no-auto"])
    assert r.exit_code == 0, r.output
    assert "# values that refer to others:" in r.output
    assert "#   sample.annealed_langevin.steps_per_level = train.iterations / 5 = 2.0" in r.output
    r = runner.invoke(app, ["compile", str(f), "--no-auto", "--json"])
    assert '"sample.annealed_langevin.steps_per_level": "train.iterations / 5 = 2.0"' in r.output


@pytest.mark.parametrize(
    ("line", "needle", "fragment"),
    [
        ("evaluate { samples = train.iteratons * 2 }", "train.iteratons", "train has no parameter 'iteratons'"),
        ("evaluate { samples = trian.iterations }", "trian.iterations", "'trian' is not a block"),
        ("evaluate { samples = sample.langevin.steps }", "sample.langevin.steps", "no stage 'langevin'"),
        ("evaluate { samples = evaluate.batch_size, batch_size = evaluate.samples }", "evaluate.samples", "reference cycle: evaluate.samples → evaluate.batch_size → evaluate.samples"),
        ("evaluate { samples = evaluate.samples + 1 }", "evaluate.samples", "reference cycle: evaluate.samples → evaluate.samples"),
        ("evaluate { samples = data.dequantize * 2 }", "data.dequantize", 'refers to data.dequantize, which is "uniform", not a number; it cannot be used in arithmetic'),
        ("evaluate { samples = loss.weight }", "loss.weight", "refers to loss.weight, which is sigma ** 2, not a number"),
        ("evaluate { samples = noise.levels * 2 }\n    noise.levels = auto", "noise.levels", "refers to noise.levels, which is auto; write the value or compute it first"),
        ("evaluate { samples = train.iterations ** 1000 }", "train.iterations", "number too large"),
    ],
)  # fmt: skip
def test_reference_errors_are_positioned(write, line: str, needle: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    src = with_body(line)
    f = write("bad.exp", src)
    d = diag(f)
    assert fragment in d.message, d.render()
    lines = src.splitlines()
    at = next((i + 1, ln.index(needle) + 1) for i, ln in enumerate(lines) if needle in ln)
    assert (d.pos.line, d.pos.col) == at, d.render()
    r = runner.invoke(app, ["check", str(f)])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_a_failed_reference_does_not_cascade(write) -> None:  # type: ignore[no-untyped-def]
    f = write("bad.exp", with_body("evaluate { samples = nope.x, batch_size = evaluate.samples }"))
    d = diag(f)  # one error, at nope.x; batch_size depends on it and stays quiet
    assert "'nope' is not a block" in d.message


def test_reference_chains_are_bounded(write) -> None:  # type: ignore[no-untyped-def]
    body = ", ".join(f"a{i} = train.a{i + 1}" for i in range(200))
    f = write("chain.exp", with_body(f"train {{ {body}, a200 = 1 }}"))
    with pytest.raises(DiagnosticError) as ei:
        specs(f)
    assert any("references nested too deeply" in d.message for d in ei.value.diagnostics)


def test_reference_syntax_round_trips() -> None:
    mod = parse_text(
        with_body("evaluate { samples = 2 * (train.iterations + sample.stage1.steps_per_level) }")
    )
    v = mod.experiments[0].body[-1].items[0].value
    assert v.text == "2 * (train.iterations + sample.stage1.steps_per_level)"
    assert v.value.text() == v.text


def test_resolve_keeps_sweep_labels_for_set_sweeps(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_text(BASE, encoding="utf-8")
    pts = resolve(load(f), sets=["seed=0,1,2"])
    assert [p.sweep_point for p in pts] == [{"seed": "0"}, {"seed": "1"}, {"seed": "2"}]
    assert pts[1].fields["seed"].origin == "swept by --set seed=0,1,2"


def test_too_many_noise_levels_is_an_error_not_a_hang(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE.replace("levels = 10", "levels = 99999999999999999999999999k"))
    d = diag(f)
    assert "is more than 100,000 noise levels" in d.message and (d.pos.line, d.pos.col) == (3, 67)
