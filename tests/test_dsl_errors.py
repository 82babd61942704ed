"""A table of bad inputs: each must give a compiler-style error at the right line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE

from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from tests.fuzz import SWEEP_PATHS


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
# One case per line: the table reads as a table.
# fmt: off
CASES = [
    # ---- syntax
    ("missing-brace", BASE.rstrip().rstrip("}"), "is not closed", None, 1),
    ("missing-equals", sub("ngf = 8", "ngf 8"), "did you forget '='?", "8 }", 1),
    ("stray-token", BASE + "}\n", "unexpected '}'", (BASE.count("\n") + 1, 1), 1),
    ("bad-char", sub("ngf = 8", "ngf = 8 $"), "unexpected character '$'", "$", 1),
    ("unterminated-string", sub("data digits { }", 'data digits { root = "abc }'), "unterminated string", '"abc', 1),
    ("keyword-as-name", sub("ngf = 8", "stage = 8"), "unexpected '='; expected a name", "= 8", 1),
    # ---- names
    ("unknown-block", sub("loss dsm { }", "loss dsm { }\n    nosie geometric { }"), "unknown block 'nosie'; did you mean 'noise'?", "nosie", 1),
    ("unknown-data", sub("data digits", "data digitz"), "unknown data 'digitz'; did you mean 'digits'?", "digitz", 1),
    ("unknown-noise", sub("noise geometric", "noise geometrik"), "unknown noise 'geometrik'", "geometrik", 1),
    ("unknown-network", sub("network ncsn", "network ncsm"), "unknown network 'ncsm'", "ncsm", 1),
    ("unknown-loss", sub("loss dsm", "loss dms"), "unknown loss 'dms'", "dms", 1),
    ("unknown-stage", sub("stage annealed_langevin", "stage annealed_langevn"), "did you mean 'annealed_langevin'", "annealed_langevn", 1),
    ("unknown-param", sub("sigma_max = 1.0", "sigma_mx = 1.0"), "unknown parameter 'sigma_mx' for noise geometric; did you mean 'sigma_max'?", "sigma_mx", 1),
    ("unknown-train-param", sub("iterations = 10", "iteratons = 10"), "did you mean 'iterations'?", "iteratons", 1),
    ("unknown-stage-param", sub("steps_per_level = 2", "steps = 2"), "unknown parameter 'steps'", "steps", 1),
    ("unknown-field", sub("data digits { }", "sed = 1\n    data digits { }"), "unknown field 'sed'; did you mean 'seed'?", "sed", 1),
    ("unknown-optimizer", sub("iterations = 10", "iterations = 10, optimizer = adma(lr = 1e-3)"), "unknown optimizer 'adma'; did you mean 'adam'?", "adma(", 1),
    ("unknown-optimizer-arg", sub("iterations = 10", "iterations = 10, optimizer = adam(lrr = 1e-3)"), "unknown parameter 'lrr' for optimizer adam", "adam(", 1),
    ("unknown-choice", sub("data digits { }", "data digits { dequantize = unifrom }"), "'unifrom' is not one of", "unifrom", 1),
    ("unknown-symbol", sub("loss dsm { }", "loss dsm { weight = sigm ** 2 }"), "unknown symbol 'sigm'", "sigm **", 1),
    ("unknown-function", sub("loss dsm { }", "loss dsm { weight = cube(sigma) }"), "unknown function 'cube'", "cube", 1),
    # ---- types and ranges
    ("wrong-type-int", sub("levels = 10", 'levels = "ten"'), "expected an integer, got a string", '"ten"', 1),
    ("wrong-type-float", sub("sigma_max = 1.0", "sigma_max = true"), "expected a number, got a boolean", "true", 1),
    ("float-for-int", sub("levels = 10", "levels = 2.5"), "expected an integer", "2.5", 1),
    ("out-of-range", sub("batch_size = 8", "batch_size = 0"), "must be ≥ 1", "0 }\n    sample", 1),
    ("negative-sigma", sub("sigma_min = 0.01", "sigma_min = -0.01"), "must be > 0", "-0.01", 1),
    ("bool-type", sub("data digits { }", "data digits { flip = 1 }"), "expected true or false", "1 }", 1),
    ("auto-not-allowed", sub("batch_size = 8", "batch_size = auto"), "cannot be auto", "auto", 1),
    ("expr-not-allowed", sub("batch_size = 8", "batch_size = sigma * 2"), "expected an integer", "sigma * 2", 1),
    # ---- structure
    ("duplicate-key", sub("ngf = 8", "ngf = 8, ngf = 16"), "duplicate key 'ngf'", "ngf", 2),
    ("duplicate-arg", sub("iterations = 10", "iterations = 10, optimizer = adam(lr = 1, lr = 2)"), "duplicate argument 'lr'", "lr", 2),
    ("block-needs-name", sub("network ncsn { ngf = 8 }", "network { ngf = 8 }"), "a network block needs a name", "network", 1),
    ("fixed-block-named", sub("train {", "train fast {"), "the train block takes no name", "fast", 1),
    ("stage-outside-sample", sub("train { iterations = 10, batch_size = 8 }", "train { stage langevin { } }"), "'stage' belongs in the sample block", "stage langevin", 1),
    ("missing-data", sub("    data digits { }\n", ""), "has no data block", "e {", 1),
    ("network-without-loss", sub("    loss dsm { }\n", ""), "has a network but no loss block", "e {", 1),
    ("empty-sample", sub("sample { stage annealed_langevin { steps_per_level = 2 } }", "sample { samples = 4 }"), "has no stage", "sample", 1),
    ("set-unknown-block", sub("loss dsm { }", "loss dsm { }\n    trian.iterations = 5"), "unknown block 'trian'; did you mean 'train'?", "trian", 1),
    ("block-as-field", sub("loss dsm { }", "loss dsm { }\n    train = 5"), "'train' is a block", "train = 5", 1),
    ("bad-sweep-empty", sub("loss dsm { }", "loss dsm { }\n    sweep noise.levels = []"), "a sweep needs at least one value", "[]", 1),
    ("bad-sweep-item", sub("loss dsm { }", 'loss dsm { }\n    sweep noise.levels = [5, "x"]'), "expected an integer, got a string", '"x"', 1),
    ("sweep-twice", sub("loss dsm { }", "loss dsm { }\n    sweep seed = [1]\n    sweep seed = [2]"), "swept twice", "seed", 2),
    ("unknown-extends", BASE.replace("experiment e {", "experiment e extends nothere {"), "unknown experiment 'nothere'", "nothere", 1),
    ("extends-cycle", BASE.replace("experiment e {", "experiment e extends f {") + "experiment f extends e { }\n", "'extends' cycle", "e {", 2),
    ("duplicate-experiment", BASE + BASE, "experiment 'e' is defined twice", "e {\n    data", 2),
    ("unknown-stage-ref", sub("loss dsm { }", "loss dsm { }\n    sample.langevin.steps = 3"), "no stage 'langevin' in sample", "sample.langevin", 1),
    ("duplicate-published", BASE.replace("    sample", '    published "p" { fid = 1, fid = 2 }\n    sample', 1), "duplicate published value 'fid'", "fid", 2),
]
# fmt: on
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


# ----------------------------------------------------------------------------- issue 12: bounds
# Every user mistake, however hostile, is a DiagnosticError with a position (or naming a
# path) in bounded time: no other exception, no hang.
import os  # noqa: E402
import time  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from dsl.cli import app  # noqa: E402
from dsl.parser import MAX_FILE_BYTES, MAX_NESTING  # noqa: E402
from dsl.resolve import DEFAULT_MAX_RUNS, MAX_EXTENDS_DEPTH, MAX_IMPORT_DEPTH, load, resolve  # noqa: E402


def diags_of(path: Path, **kw) -> list:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(DiagnosticError) as ei:
        compile_file(path, compute_auto=False, **kw)
    assert time.monotonic() - t0 < 5, "took too long"
    for d in ei.value.diagnostics:
        assert d.pos is not None or str(path) in d.message, d.message
        d.render()
    return list(ei.value.diagnostics)


def one(path: Path, fragment: str, **kw):  # type: ignore[no-untyped-def]
    ds = diags_of(path, **kw)
    hits = [d for d in ds if fragment in d.message]
    assert hits, [d.message for d in ds]
    return hits[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "pipe.exp"
    os.mkfifo(p)  # nobody ever writes: opening it for reading would block forever
    return p


IMPORT_CASES = [
    ("dev-zero", "/dev/zero", "is not a regular file"),
    ("fifo", "pipe.exp", "is not a regular file"),
    ("directory", "sub", "is a directory"),
    ("dot", ".", "is a directory"),
    ("too-large", "big.exp", "is too large"),
    ("missing", "missing.exp", "no such file"),
    ("nul", "a\\x00b", ""),
]


@pytest.mark.parametrize("case", IMPORT_CASES, ids=[c[0] for c in IMPORT_CASES])
def test_import_reads_only_regular_files(case: tuple, tmp_path: Path, fifo: Path) -> None:
    _, target, fragment = case
    (tmp_path / "sub").mkdir()
    (tmp_path / "big.exp").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    src = f'import "{target}"\n' + BASE
    if target == "a\\x00b":
        src = 'import "a\x00b"\n' + BASE
    f = tmp_path / "x.exp"
    f.write_text(src, encoding="utf-8")
    d = one(f, fragment)
    assert d.message.startswith("cannot import")
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(f), 1, 8)


@pytest.mark.parametrize("kind", ["fifo", "directory", "dev-zero", "too-large"])
def test_root_file_that_is_not_a_regular_file(kind: str, tmp_path: Path, fifo: Path) -> None:
    path = {
        "fifo": fifo,
        "directory": tmp_path,
        "dev-zero": Path("/dev/zero"),
        "too-large": tmp_path / "b.exp",
    }[kind]
    if kind == "too-large":
        path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(DiagnosticError) as ei:
        compile_file(path, compute_auto=False)
    assert str(path) in ei.value.diagnostics[0].message
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 2 and str(path) in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["fmt", str(path)])
    assert r.exit_code == 2 and str(path) in r.output


def test_not_utf8_points_at_the_first_bad_byte(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_bytes(BASE.replace("ngf = 8", "ngf = 8 é\xff").encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    d = one(f, "not UTF-8")
    line, col = at(BASE, "ngf = 8")
    assert (d.pos.line, d.pos.col) == (line, col + len("ngf = 8 é"))
    assert "ff" in d.message
    f.write_bytes(b"\xfe" + BASE.encode())
    d = one(f, "not UTF-8")
    assert (d.pos.line, d.pos.col) == (1, 1)
    assert f"{f}:1:1: error:" in d.render()


def test_nul_byte_in_source(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_text(BASE.replace("ngf = 8", "ngf = 8\x00"), encoding="utf-8")
    d = one(f, "unexpected character")
    assert (d.pos.line, d.pos.col) == (at(BASE, "ngf = 8")[0], at(BASE, "ngf = 8")[1] + 7)
    f.write_text(BASE.replace("digits { }", 'digits { root = "a\x00b" }'), encoding="utf-8")
    diags_of(f) if False else None  # a NUL inside a string is the checker's business: no crash
    try:
        compile_file(f, compute_auto=False)
    except DiagnosticError:
        pass


DEEP = 5000
NESTING_CASES = [
    ("minus", "-" * DEEP + "1"),
    ("lists", "[" * DEEP + "]" * DEEP),
    ("sum", " + ".join(["1"] * DEEP)),
    ("pow", "2 ** " * DEEP + "1"),
    ("calls", "sqrt(" * DEEP + "1" + ")" * DEEP),
    ("mixed", "-(" * DEEP + "1" + ")" * DEEP),
]


@pytest.mark.parametrize("case", NESTING_CASES, ids=[c[0] for c in NESTING_CASES])
def test_deep_nesting_is_an_error_not_a_recursion_error(case: tuple, tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    src = BASE.replace("ngf = 8", f"ngf = {case[1]}")
    f.write_text(src, encoding="utf-8")
    d = one(f, "too deeply nested")
    assert d.pos.line == at(src, "ngf")[0]
    assert str(MAX_NESTING) in d.message


def test_parentheses_alone_do_not_nest_and_moderate_nesting_is_fine(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_text(BASE.replace("ngf = 8", "ngf = " + "(" * DEEP + "8" + ")" * DEEP), encoding="utf-8")
    assert compile_file(f, compute_auto=False)[0].canonical()["network"]["params"]["ngf"] == 8
    f.write_text(BASE.replace("ngf = 8", "ngf = " + "-" * 50 + "8"), encoding="utf-8")
    assert compile_file(f, compute_auto=False)[0].canonical()["network"]["params"]["ngf"] == 8


# id → (the value written, what the message says)
NUMBER_CASES = {
    "tower": ("9 ** 9 ** 9", "more than 4300 digits"),
    "pow-1e8": ("2 ** 100000000", "more than 4300 digits"),
    "beyond-float": ("2 ** 2000", "beyond"),
    "float-pow": ("10.0 ** 400", "beyond"),
    "exp": ("exp(1000)", "beyond"),
    "inf-product": ("1e308 * 10", "beyond"),
    "literal-float": ("1e999", "1e999"),
    "literal-int": ("9" * 5000, "5000 characters"),
    "in-symbolic": ("sigma * 9 ** 9 ** 9", "more than 4300 digits"),
    "in-list": ("[1, 2 ** 100000000]", "more than 4300 digits"),
}


@pytest.mark.parametrize("case", NUMBER_CASES.values(), ids=NUMBER_CASES.keys())
def test_number_too_large(case: tuple, tmp_path: Path) -> None:
    expr, fragment = case
    f = tmp_path / "x.exp"
    src = BASE.replace("loss dsm { }", f"loss dsm {{ weight = {expr} }}")
    f.write_text(src, encoding="utf-8")
    d = one(f, "number too large")
    assert fragment in d.message
    assert (d.pos.line, d.pos.col) == at(src, expr if not expr.startswith("9" * 10) else expr[:10])


def test_number_too_large_in_set(write) -> None:  # type: ignore[no-untyped-def]
    f = write("x.exp", BASE)
    d = one(f, "number too large", sets=["train.iterations=9**9**9"])
    assert d.pos.file == "<--set #1>" and d.pos.col == len("train.iterations=") + 1


def test_big_but_fitting_numbers_still_fold(tmp_path: Path) -> None:
    from dsl.parser import parse_value

    assert parse_value("2 ** 1000").value == 2**1000
    assert parse_value("1e308 * 1.5").value == 1.5e308
    assert parse_value("10 ** 300 / 10 ** 299").value == 10.0


def sweep_file(tmp_path: Path, axes: int, size: int) -> Path:
    vals = ", ".join(str(i + 1) for i in range(size))
    sweeps = "\n".join(f"    sweep {p} = [{vals}]" for p in SWEEP_PATHS[:axes])
    f = tmp_path / "s.exp"
    f.write_text(BASE.replace("    sample {", sweeps + "\n    sample {"), encoding="utf-8")
    return f


def test_sweep_grid_of_a_million_runs_is_refused(tmp_path: Path) -> None:
    f = sweep_file(tmp_path, 6, 10)
    d = one(f, "runs")
    assert "1,000,000 runs (10 × 10 × 10 × 10 × 10 × 10)" in d.message
    assert f"the limit is {DEFAULT_MAX_RUNS:,}" in d.message
    assert any("--max-runs" in n for n in d.notes)
    assert (d.pos.line, d.pos.col) == at(f.read_text(), "seed")


def test_max_runs_limit_can_be_raised(tmp_path: Path) -> None:
    f = sweep_file(tmp_path, 2, 3)  # 9 runs
    assert len(compile_file(f, compute_auto=False)) == 9
    program = load(f)
    with pytest.raises(DiagnosticError):
        resolve(program, max_runs=8)
    assert len(resolve(program, max_runs=9)) == 9
    with pytest.raises(DiagnosticError):
        compile_file(f, compute_auto=False, max_runs=8)
    r = CliRunner().invoke(app, ["check", str(f), "--max-runs", "8"])
    assert r.exit_code == 2 and "9 runs" in r.output and "the limit is 8" in r.output
    r = CliRunner().invoke(app, ["check", str(f), "--max-runs", "9"])
    assert r.exit_code == 0 and "9 run(s)" in r.output, r.output
    r = CliRunner().invoke(app, ["compile", str(f), "--no-auto", "--json", "--max-runs", "8"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["run", str(f), "--max-runs", "8"])
    assert r.exit_code == 2 and "the limit is 8" in r.output


def test_runs_over_all_experiments_of_a_file_count_together(tmp_path: Path) -> None:
    f = sweep_file(tmp_path, 2, 3)
    text = f.read_text()
    f.write_text(text + text.replace("experiment e ", "experiment e2 "), encoding="utf-8")
    program = load(f)
    assert len(resolve(program, max_runs=18)) == 18
    with pytest.raises(DiagnosticError) as ei:
        resolve(program, max_runs=17)
    assert "(9 before it in this file)" in ei.value.diagnostics[0].message


def test_extends_chain_too_long(tmp_path: Path) -> None:
    lines = [BASE.rstrip()]
    lines += [
        f"experiment c{i} extends {'e' if i == 1 else f'c{i - 1}'} {{ seed = {i} }}" for i in range(1, 500)
    ]
    f = tmp_path / "x.exp"
    src = "\n".join(lines) + "\n"
    f.write_text(src, encoding="utf-8")
    d = one(f, "'extends' chain too long")
    assert str(MAX_EXTENDS_DEPTH) in d.message
    assert (d.pos.line, d.pos.col) == at(src, f"c{MAX_EXTENDS_DEPTH} {{")
    # the same chain written leaf first (each parent resolved recursively)
    f.write_text(BASE.rstrip() + "\n" + "\n".join(reversed(lines[1:])) + "\n", encoding="utf-8")
    one(f, "'extends' chain too long")
    lines = [BASE.rstrip()] + [
        f"experiment c{i} extends {'e' if i == 1 else f'c{i - 1}'} {{ }}" for i in range(1, 20)
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(compile_file(f, compute_auto=False)) == 20


def test_import_chain_too_deep(tmp_path: Path) -> None:
    n = MAX_IMPORT_DEPTH + 10
    leaf = BASE.replace("experiment e ", "experiment leaf ")
    for i in range(n):
        (tmp_path / f"f{i}.exp").write_text(
            f'import "f{i + 1}.exp"\n' + (BASE if i == 0 else ""), encoding="utf-8"
        )
    (tmp_path / f"f{n}.exp").write_text(leaf, encoding="utf-8")
    d = one(tmp_path / "f0.exp", "imports nested too deeply")
    assert (d.pos.line, d.pos.col) == (1, 8)
    (tmp_path / "f5.exp").write_text(leaf, encoding="utf-8")  # 5 deep is fine
    assert len(compile_file(tmp_path / "f0.exp", compute_auto=False)) == 1


def test_defines_no_experiment_has_a_position(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_text("# only a comment\n", encoding="utf-8")
    d = one(f, "defines no experiment")
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(f), 1, 1)


def test_missing_brace_in_the_middle_points_at_the_open_block(tmp_path: Path) -> None:
    """An unclosed '{' before the error is reported at its opening line first (not 'did you
    forget =?'), with where the parser stopped in a note (issue 25, item 8)."""
    src = BASE.replace("data digits { }", "data digits {") + BASE.replace("experiment e", "experiment f")
    f = tmp_path / "x.exp"
    f.write_text(src, encoding="utf-8")
    ds = diags_of(f)
    line, col = at(src, "{", 2)  # the data block's brace
    assert (ds[0].pos.line, ds[0].pos.col) == (line, col), ds[0]
    assert "is not closed" in ds[0].message and "did you forget" not in ds[0].message, ds[0].message
    assert any(n.startswith(f"the parser stopped at {f}:") for n in ds[0].notes), ds[0].notes
    src = BASE.rstrip().rstrip("}")  # the experiment itself is not closed
    f.write_text(src, encoding="utf-8")
    d = one(f, "is not closed")
    assert (d.pos.line, d.pos.col) == (1, 14)
    assert any("unexpected end of file" in n for n in d.notes), d.notes
    src = BASE.replace("ngf = 8 }", "ngf = 8")  # same line layout: innermost open block
    f.write_text(src, encoding="utf-8")
    d = diags_of(f)[0]
    line, col = at(src, "{", 4)
    assert (d.pos.line, d.pos.col) == (line, col) and "is not closed" in d.message, d


def test_error_before_an_unclosed_brace_keeps_its_own_message(tmp_path: Path) -> None:
    """A '{' opened after the error is not its cause: the error leads, the open block is a note."""
    src = BASE.replace("ngf = 8", "ngf 8").rstrip().rstrip("}")
    f = tmp_path / "x.exp"
    f.write_text(src, encoding="utf-8")
    d = diags_of(f)[0]
    assert "did you forget '='?" in d.message, d.message


def test_cli_default_max_runs_matches_the_resolver() -> None:
    import dsl.cli

    assert dsl.cli.DEFAULT_MAX_RUNS == DEFAULT_MAX_RUNS
    for cmd in ("check", "compile", "run"):
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert "--max-runs" in r.output
