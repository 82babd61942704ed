"""A table of bad inputs: each must give a compiler-style error at the right line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE

from dsl.compiler import compile_file
from dsl.errors import DiagnosticError


def at(src: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of needle in src."""
    i = -1
    for _ in range(nth):
        i = src.index(needle, i + 1)
    line = src.count("\n", 0, i) + 1
    col = i - (src.rfind("\n", 0, i) + 1) + 1
    return line, col


def sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (id, source, expected message fragment, text whose position the error must point at, nth occurrence)
CASES = [
    # ---- syntax
    ("missing-brace", BASE.rstrip().rstrip("}"), "unexpected end of file", None, 1),
    ("missing-equals", sub("ngf = 8", "ngf 8"), "did you forget '='?", "8 }", 1),
    ("stray-token", BASE + "}\n", "unexpected '}'", (BASE.count("\n") + 1, 1), 1),
    ("bad-char", sub("ngf = 8", "ngf = 8 $"), "unexpected character '$'", "$", 1),
    (
        "unterminated-string",
        sub("data digits { }", 'data digits { root = "abc }'),
        "unterminated string",
        '"abc',
        1,
    ),
    ("keyword-as-name", sub("ngf = 8", "stage = 8"), "unexpected '='; expected a name", "= 8", 1),
    # ---- names
    (
        "unknown-block",
        sub("loss dsm { }", "loss dsm { }\n    nosie geometric { }"),
        "unknown block 'nosie'; did you mean 'noise'?",
        "nosie",
        1,
    ),
    (
        "unknown-data",
        sub("data digits", "data digitz"),
        "unknown data 'digitz'; did you mean 'digits'?",
        "digitz",
        1,
    ),
    ("unknown-noise", sub("noise geometric", "noise geometrik"), "unknown noise 'geometrik'", "geometrik", 1),
    ("unknown-network", sub("network ncsn", "network ncsm"), "unknown network 'ncsm'", "ncsm", 1),
    ("unknown-loss", sub("loss dsm", "loss dms"), "unknown loss 'dms'", "dms", 1),
    (
        "unknown-stage",
        sub("stage annealed_langevin", "stage annealed_langevn"),
        "did you mean 'annealed_langevin'",
        "annealed_langevn",
        1,
    ),
    (
        "unknown-param",
        sub("sigma_max = 1.0", "sigma_mx = 1.0"),
        "unknown parameter 'sigma_mx' for noise geometric; did you mean 'sigma_max'?",
        "sigma_mx",
        1,
    ),
    (
        "unknown-train-param",
        sub("iterations = 10", "iteratons = 10"),
        "did you mean 'iterations'?",
        "iteratons",
        1,
    ),
    ("unknown-stage-param", sub("steps_per_level = 2", "steps = 2"), "unknown parameter 'steps'", "steps", 1),
    (
        "unknown-field",
        sub("data digits { }", "sed = 1\n    data digits { }"),
        "unknown field 'sed'; did you mean 'seed'?",
        "sed",
        1,
    ),
    (
        "unknown-optimizer",
        sub("iterations = 10", "iterations = 10, optimizer = adma(lr = 1e-3)"),
        "unknown optimizer 'adma'; did you mean 'adam'?",
        "adma(",
        1,
    ),
    (
        "unknown-optimizer-arg",
        sub("iterations = 10", "iterations = 10, optimizer = adam(lrr = 1e-3)"),
        "unknown parameter 'lrr' for optimizer adam",
        "adam(",
        1,
    ),
    (
        "unknown-choice",
        sub("data digits { }", "data digits { dequantize = unifrom }"),
        "'unifrom' is not one of",
        "unifrom",
        1,
    ),
    (
        "unknown-symbol",
        sub("loss dsm { }", "loss dsm { weight = sigm ** 2 }"),
        "unknown symbol 'sigm'",
        "sigm **",
        1,
    ),
    (
        "unknown-function",
        sub("loss dsm { }", "loss dsm { weight = cube(sigma) }"),
        "unknown function 'cube'",
        "cube",
        1,
    ),
    # ---- types and ranges
    ("wrong-type-int", sub("levels = 10", 'levels = "ten"'), "expected an integer, got a string", '"ten"', 1),
    (
        "wrong-type-float",
        sub("sigma_max = 1.0", "sigma_max = true"),
        "expected a number, got a boolean",
        "true",
        1,
    ),
    ("float-for-int", sub("levels = 10", "levels = 2.5"), "expected an integer", "2.5", 1),
    ("out-of-range", sub("batch_size = 8", "batch_size = 0"), "must be ≥ 1", "0 }\n    sample", 1),
    ("negative-sigma", sub("sigma_min = 0.01", "sigma_min = -0.01"), "must be > 0", "-0.01", 1),
    ("bool-type", sub("data digits { }", "data digits { flip = 1 }"), "expected true or false", "1 }", 1),
    ("auto-not-allowed", sub("batch_size = 8", "batch_size = auto"), "cannot be auto", "auto", 1),
    (
        "expr-not-allowed",
        sub("batch_size = 8", "batch_size = sigma * 2"),
        "expected an integer",
        "sigma * 2",
        1,
    ),
    # ---- structure
    ("duplicate-key", sub("ngf = 8", "ngf = 8, ngf = 16"), "duplicate key 'ngf'", "ngf", 2),
    (
        "duplicate-arg",
        sub("iterations = 10", "iterations = 10, optimizer = adam(lr = 1, lr = 2)"),
        "duplicate argument 'lr'",
        "lr",
        2,
    ),
    (
        "block-needs-name",
        sub("network ncsn { ngf = 8 }", "network { ngf = 8 }"),
        "a network block needs a name",
        "network",
        1,
    ),
    ("fixed-block-named", sub("train {", "train fast {"), "the train block takes no name", "fast", 1),
    (
        "stage-outside-sample",
        sub("train { iterations = 10, batch_size = 8 }", "train { stage langevin { } }"),
        "'stage' belongs in the sample block",
        "stage langevin",
        1,
    ),
    ("missing-data", sub("    data digits { }\n", ""), "has no data block", "e {", 1),
    ("network-without-loss", sub("    loss dsm { }\n", ""), "has a network but no loss block", "e {", 1),
    (
        "empty-sample",
        sub("sample { stage annealed_langevin { steps_per_level = 2 } }", "sample { samples = 4 }"),
        "has no stage",
        "sample",
        1,
    ),
    (
        "set-unknown-block",
        sub("loss dsm { }", "loss dsm { }\n    trian.iterations = 5"),
        "unknown block 'trian'; did you mean 'train'?",
        "trian",
        1,
    ),
    (
        "block-as-field",
        sub("loss dsm { }", "loss dsm { }\n    train = 5"),
        "'train' is a block",
        "train = 5",
        1,
    ),
    (
        "bad-sweep-empty",
        sub("loss dsm { }", "loss dsm { }\n    sweep noise.levels = []"),
        "a sweep needs at least one value",
        "[]",
        1,
    ),
    (
        "bad-sweep-item",
        sub("loss dsm { }", 'loss dsm { }\n    sweep noise.levels = [5, "x"]'),
        "expected an integer, got a string",
        '"x"',
        1,
    ),
    (
        "sweep-twice",
        sub("loss dsm { }", "loss dsm { }\n    sweep seed = [1]\n    sweep seed = [2]"),
        "swept twice",
        "seed",
        2,
    ),
    (
        "unknown-extends",
        BASE.replace("experiment e {", "experiment e extends nothere {"),
        "unknown experiment 'nothere'",
        "nothere",
        1,
    ),
    (
        "extends-cycle",
        BASE.replace("experiment e {", "experiment e extends f {") + "experiment f extends e { }\n",
        "'extends' cycle",
        "e {",
        2,
    ),
    ("duplicate-experiment", BASE + BASE, "experiment 'e' is defined twice", "e {\n    data", 2),
    (
        "unknown-stage-ref",
        sub("loss dsm { }", "loss dsm { }\n    sample.langevin.steps = 3"),
        "no stage 'langevin' in sample",
        "sample.langevin",
        1,
    ),
    (
        "duplicate-published",
        BASE.replace("    sample", '    published "p" { fid = 1, fid = 2 }\n    sample', 1),
        "duplicate published value 'fid'",
        "fid",
        2,
    ),
]
CASES += [
    (
        "negative-uncertainty",
        BASE.replace("    sample", '    published "p" { fid = 1 ± -2 }\n    sample', 1),
        "a published uncertainty must be ≥ 0",
        "-2",
        1,
    ),
]


def test_table_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case: tuple, tmp_path: Path) -> None:
    name, src, fragment, needle, nth = case
    f = tmp_path / "x.exp"
    f.write_text(src, encoding="utf-8")
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, compute_auto=False)
    diags = ei.value.diagnostics
    msgs = [d.message for d in diags]
    assert any(fragment in m for m in msgs), msgs
    d = next(d for d in diags if fragment in d.message)
    assert d.pos is not None and d.pos.file == str(f)
    if needle is not None:
        expected = needle if isinstance(needle, tuple) else at(src, needle, nth)
        assert (d.pos.line, d.pos.col) == expected, (msgs, d.pos)
    text = d.render()
    assert text.startswith(f"{f}:{d.pos.line}:{d.pos.col}: error: ")
    assert "^" in text  # the source line and a caret


def test_all_semantic_errors_reported_at_once(tmp_path: Path) -> None:
    src = (
        sub("sigma_max = 1.0", "sigma_mx = 1.0")
        .replace("ngf = 8", 'ngf = "x"')
        .replace("iterations = 10", "iteratons = 10")
    )
    f = tmp_path / "x.exp"
    f.write_text(src)
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, compute_auto=False)
    assert len(ei.value.diagnostics) == 3
    assert "3 errors" in ei.value.render()


def test_import_errors(write) -> None:  # type: ignore[no-untyped-def]
    a = write("a.exp", 'import "b.exp"\n' + BASE)
    write("b.exp", 'import "a.exp"\n')
    with pytest.raises(DiagnosticError) as ei:
        compile_file(a, compute_auto=False)
    assert "import cycle" in ei.value.diagnostics[0].message
    c = write("c.exp", 'import "missing.exp"\n' + BASE)
    with pytest.raises(DiagnosticError) as ei:
        compile_file(c, compute_auto=False)
    d = ei.value.diagnostics[0]
    assert "no such file" in d.message and (d.pos.line, d.pos.col) == (1, 8)


def test_inherited_value_notes_origin(write) -> None:  # type: ignore[no-untyped-def]
    write("base.exp", BASE.replace("levels = 10", 'levels = "ten"'))
    child = write("child.exp", 'import "base.exp"\nexperiment c extends e { train.iterations = 3 }\n')
    with pytest.raises(DiagnosticError) as ei:
        compile_file(child, compute_auto=False)
    d = ei.value.diagnostics[0]
    assert d.pos.file.endswith("base.exp")
    assert any("inherited from" in n and "base.exp:3" in n for n in d.notes)


def test_set_errors(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, sets=["train.iterations=abc def"], compute_auto=False)
    assert ei.value.diagnostics[0].pos.file == "<--set #1>"
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, sets=["train.iterations=-5"], compute_auto=False)
    d = ei.value.diagnostics[0]
    assert "must be ≥ 0" in d.message and "set by --set train.iterations=-5" in d.notes
    assert (d.pos.line, d.pos.col) == (1, 18)
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, sets=["noise.sigma_mx=3"], compute_auto=False)
    assert "did you mean 'sigma_max'" in ei.value.diagnostics[0].message
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, sets=["novalue"], compute_auto=False)
    assert "key=value" in ei.value.diagnostics[0].message
