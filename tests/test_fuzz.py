"""The fuzz contract in the suite (hypothesis): any input compiles or gives positioned errors
(DiagnosticError, exit 2 in the CLI) within the time bound; never another exception or a hang.

Inputs: experiments built by hypothesis strategies from the grammar (blocks, stages, values,
expressions, sweeps, extends, imports) and mutations of every ``papers/*.exp`` file (see
tests/fuzz.py, whose standalone runner does the same at scale:
``python -m tests.fuzz --n 100000``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz
from tests.strategies import expressions

# Seconds per input: the standalone runner uses 2; the suite leaves room for a loaded CI
# machine (typical inputs take milliseconds).
TIMEOUT = 5.0
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture(scope="module")
def workdir() -> Path:
    d = fuzz.workdir()
    fuzz.warm_up(d)
    return d


def assert_contract(data: bytes, d: Path, sets: list[str] | tuple[str, ...] = ()) -> str:
    outcome, detail = fuzz.check_one(data, d, TIMEOUT, sets)
    assert outcome in ("ok", "user error"), f"{outcome} on input {data!r} --set {sets!r}\n{detail}"
    return outcome


# ----------------------------------------------------------------------------- strategies
names = st.sampled_from(["e", "f", "x1", "sigma", "digits", "adam", "nosie", "samples", "levels"])
components = st.sampled_from([f"{k} {n}" for k, ns in fuzz.VOCAB.items() for n in ns])
params = st.sampled_from(fuzz.PARAMS)
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(1, 999).map(lambda i: f"{i}_000"),
    st.integers(1, 99).map(lambda i: f"{i}k"),
    st.floats(1e-6, 1e6, allow_nan=False).map(lambda f: f"{f:.3g}"),
    st.sampled_from(fuzz.HUGE_NUMBERS),
)


def exprs(depth: int = 3) -> st.SearchStrategy[str]:
    leaf = st.one_of(numbers, st.sampled_from(["sigma", "sigma_max", "t", "x"]), st.sampled_from(fuzz.REFS))
    return expressions(leaf, depth, ["sqrt", "exp", "log", "cube"])


scalars = st.one_of(
    exprs(),
    st.text(alphabet='abc /._-\\"\x00é', max_size=6).map(
        lambda s: '"' + s.replace('"', "").replace("\\", "") + '"'
    ),
    st.sampled_from(["true", "false", "auto", "uniform", "gaussian", "elu", "fid", "mmd"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(
            st.sampled_from(["adam", "sgd", "uniform", "adma"]),
            st.lists(st.tuples(params, inner), max_size=3),
        ).map(lambda t: f"{t[0]}(" + ", ".join(f"{k} = {v}" for k, v in t[1]) + ")"),
    ),
    max_leaves=8,
)
assigns = st.tuples(params, values).map(lambda kv: f"{kv[0]} = {kv[1]}")
stages = st.tuples(st.sampled_from(fuzz.STAGES), st.lists(assigns, max_size=3)).map(
    lambda t: f"stage {t[0]} {{ " + ", ".join(t[1]) + " }"
)


@st.composite
def blocks(draw: Any) -> str:
    kind = draw(st.sampled_from(["component", "train", "sample", "evaluate", "unknown"]))
    items = draw(st.lists(assigns, max_size=4))
    if kind == "component":
        head = draw(components)
    elif kind == "unknown":
        head = draw(names)
    else:
        head = kind
        if kind == "sample":
            items += draw(st.lists(stages, max_size=2))
    return f"{head} {{ " + draw(st.sampled_from([", ", "\n        ", " "])).join(items) + " }"


BASE_BLOCKS = [
    "data digits { }",
    "noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }",
    "network mlp { hidden = 16 }",
    "loss dsm { weight = sigma ** 2 }",
    "train { iterations = 10, batch_size = 8 }",
    "sample { stage annealed_langevin { steps_per_level = 2 } }",
]
SWEEP_PATHS = [
    "seed",
    "noise.levels",
    "train.iterations",
    "noise.sigma_max",
    "sample.annealed_langevin.step_size",
]


@st.composite
def experiments(draw: Any, name: str, parents: list[str]) -> str:
    body = [b for b in BASE_BLOCKS if draw(st.booleans()) or draw(st.booleans())]
    body += draw(st.lists(blocks(), max_size=3))
    body += draw(
        st.lists(
            st.tuples(st.sampled_from(["train", "noise", "sample", "data", "seed"]), params, values).map(
                lambda t: f"{t[0]}.{t[1]} = {t[2]}"
            ),
            max_size=2,
        )
    )
    for path in draw(st.lists(st.sampled_from(SWEEP_PATHS), max_size=3)):
        body.append(f"sweep {path} = [" + ", ".join(draw(st.lists(numbers, max_size=12))) + "]")
    if draw(st.booleans()):
        err = draw(st.sampled_from(["", " ± 0.1", " ± -1", " +- 2"]))
        body.append(f'published "T" {{ fid = {draw(numbers)}{err}, is = -{draw(numbers)} }}')
    body = draw(st.permutations(body))
    ext = ""
    if parents and draw(st.booleans()):
        ext = " extends " + draw(st.sampled_from(parents + ["nothere", "other_base"]))
    return f"experiment {name}{ext} {{\n    " + "\n    ".join(body) + "\n}"


@st.composite
def programs(draw: Any) -> str:
    out = []
    if draw(st.integers(0, 4)) == 0:
        out.append(f'import "{draw(st.sampled_from(fuzz.IMPORTS))}"')
    names_: list[str] = []
    for i in range(draw(st.integers(1, 3))):
        out.append(draw(experiments(f"e{i}", list(names_))))
        names_.append(f"e{i}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- tests
def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=_QUIET)


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


@fuzz_settings(400)
@given(programs())
def test_generated_programs(workdir: Path, src: str) -> None:
    assert_contract(src.encode("utf-8"), workdir)


@fuzz_settings(1500)
@given(st.sampled_from(fuzz.PAPERS), st.randoms(use_true_random=False))
def test_mutated_papers(workdir: Path, paper: Path, rnd: random.Random) -> None:
    assert_contract(fuzz.mutate(paper.read_text(encoding="utf-8"), rnd), workdir)


@fuzz_settings(400)
@given(st.randoms(use_true_random=False))
def test_runner_inputs(workdir: Path, rnd: random.Random) -> None:
    """The standalone runner's own mix (generated, bound-testing and mutated files)."""
    assert_contract(fuzz.gen_input(rnd), workdir)


set_values = st.one_of(
    st.sampled_from(fuzz.SET_VALUES),
    st.lists(values, min_size=1, max_size=3).map(",".join),
    st.lists(st.sampled_from(["1", "[1,2]", "", " ", "x.y", '"a,b"', "(", ")", "]", "["]), max_size=4).map(
        ",".join
    ),
)
set_args = st.lists(st.tuples(st.sampled_from(fuzz.SET_KEYS), set_values).map("=".join), max_size=3)


@fuzz_settings(300)
@given(programs(), set_args)
def test_generated_programs_with_set(workdir: Path, src: str, sets: list[str]) -> None:
    """`--set` sweeps, lists and references, right and wrong, on generated programs."""
    assert_contract(src.encode("utf-8"), workdir, sets)


@fuzz_settings(300)
@given(st.sampled_from(fuzz.PAPERS), set_args)
def test_papers_with_set(workdir: Path, paper: Path, sets: list[str]) -> None:
    assert_contract(paper.read_bytes(), workdir, sets)


@fuzz_settings(300)
@given(exprs())
def test_reference_expressions_round_trip(e: str) -> None:
    """Expressions with references (`train.iterations / 1000`) print as text that parses back
    to the same value and text (`repro fmt` relies on it)."""
    from dsl.errors import DiagnosticError
    from dsl.parser import parse_value

    try:
        v = parse_value(e)
    except DiagnosticError:
        return  # out of bounds (a huge number written out): a positioned error is the contract
    again = parse_value(v.text)
    assert again.text == v.text and again.value == v.value


@fuzz_settings(300)
@given(st.lists(values, min_size=1, max_size=4))
def test_set_sweep_splits_at_top_level_commas(items: list[str]) -> None:
    """`--set k=v1,v2,...` gives exactly the values written (each may hold commas inside
    brackets, parentheses or strings), or a positioned error in the `--set` pseudo-file."""
    from dsl.errors import DiagnosticError
    from dsl.parser import parse_value
    from dsl.resolve import parse_set

    arg = "train.iterations=" + ",".join(items)
    try:
        _, vs, _ = parse_set(arg, 0)
    except DiagnosticError as err:
        assert all(d.pos is not None and d.pos.file == "<--set #1>" for d in err.diagnostics)
        return
    singles = []
    for it in items:
        try:
            singles.append(parse_value(it).value)
        except DiagnosticError:
            return  # an item that is not a value on its own was read with its neighbours
    assert [v.value for v in vs] == singles


def test_every_paper_passes_the_oracle(workdir: Path) -> None:
    for p in fuzz.PAPERS:
        assert assert_contract(p.read_bytes(), workdir) == "ok", p


def test_standalone_runner_reports_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--n", "40", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "inputs 40, ok " in out and "tracebacks 0, hangs 0" in out


@pytest.mark.parametrize("kind", fuzz.FILE_KINDS)
def test_damaged_files_give_named_errors_promptly(workdir: Path, kind: str) -> None:
    """Runs folders (`repro ls`, `repro report`), released and repro checkpoints, image zips and
    IDX files, built valid then damaged (tests/fuzz.py's file cases; the long version:
    ``python -m tests.fuzz --long``): an answer or a named error, never a traceback or a hang."""
    r = random.Random(f"files-{kind}")
    for _ in range(8):
        outcome, detail = fuzz.check_file_case(kind, r, workdir, 20.0)
        assert outcome in ("ok", "user error"), f"{outcome}\n{detail}"
