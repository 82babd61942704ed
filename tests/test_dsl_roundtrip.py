"""Parser/printer round trip over generated programs (hypothesis).

fmt(parse(fmt(x))) == fmt(x), and formatting never changes meaning: the syntax tree of
fmt(x) equals that of x, positions aside.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.ast import Pos
from dsl.fmt import format_text
from dsl.parser import parse_text
from tests.strategies import expressions

KEYWORDS = {
    "import",
    "experiment",
    "extends",
    "stage",
    "sweep",
    "published",
    "true",
    "false",
    "auto",
    "use",
    "group",
}
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(1, 999).map(lambda i: f"{i}_000"),
    st.integers(1, 99).map(lambda i: f"{i}k"),
    st.floats(1e-6, 1e6, allow_nan=False).map(lambda f: f"{f:.3g}"),
    st.integers(1, 9).map(lambda i: f"{i}e-{i}"),
)
strings = st.text(alphabet="abc xyz/._-", max_size=8).map(lambda s: f'"{s}"')


def exprs(depth: int = 2) -> st.SearchStrategy[str]:
    return expressions(st.one_of(numbers, st.just("sigma")), depth, ["sqrt"])


scalars = st.one_of(numbers, strings, names, st.sampled_from(["true", "false", "auto"]), exprs())
calls = st.tuples(names, st.lists(st.tuples(names, scalars), max_size=3, unique_by=lambda kv: kv[0])).map(
    lambda t: f"{t[0]}(" + ", ".join(f"{k} = {v}" for k, v in t[1]) + ")"
)
values = st.one_of(
    scalars, calls, st.lists(st.one_of(scalars, calls), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
)
assigns = st.tuples(names, values).map(lambda kv: f"{kv[0]} = {kv[1]}")
comment = st.sampled_from(["", "  # note", "   # x = 1 { }"])


@st.composite
def block(draw: Any) -> str:
    kind = draw(names)
    name = draw(st.one_of(st.just(""), names))
    items = draw(st.lists(assigns, max_size=4, unique_by=lambda a: a.split(" =")[0]))
    stages = draw(
        st.lists(
            st.tuples(names, st.lists(assigns, max_size=2, unique_by=lambda a: a.split(" =")[0])), max_size=2
        )
    )
    sep = draw(st.sampled_from([", ", "\n        ", " "]))
    body = sep.join(items + [f"stage {n} {{ " + ", ".join(a) + " }" for n, a in stages])
    head = f"{kind} {name}".strip()
    return f"{head} {{ {body} }}" + draw(comment)


@st.composite
def program(draw: Any) -> str:
    out = []
    if draw(st.booleans()):
        out.append('import "other.exp"' + draw(comment))
    for _ in range(draw(st.integers(1, 2))):
        name = draw(names)
        ext = draw(st.one_of(st.just(""), names.map(lambda n: f" extends {n}")))
        body = []
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.integers(0, 3))
            if kind == 0:
                path = ".".join(draw(st.lists(names, min_size=1, max_size=3)))
                body.append(f"{path} = {draw(values)}" + draw(comment))
            elif kind == 1:
                body.append(draw(block()))
            elif kind == 2:
                body.append(f"sweep {draw(names)}.{draw(names)} = [{draw(numbers)}, {draw(numbers)}]")
            else:
                e = draw(numbers)
                extra = ", ".join(f"metric_{k} = {draw(numbers)}" for k in range(draw(st.integers(0, 8))))
                body.append(
                    f'published "T 1" {{ fid = {draw(numbers)} ± {e}, is = -{draw(numbers)}, {extra} }}'
                )
        if draw(st.booleans()):
            body.insert(0, "# leading comment")
        out.append(f"experiment {name}{ext} {{\n    " + "\n    ".join(body) + "\n}")
    return "\n\n".join(out) + "\n"


def strip_pos(node: Any) -> Any:
    """The tree with positions and source text removed: what the program means."""
    if isinstance(node, Pos):
        return None
    if attrs.has(type(node)):
        return tuple(
            (f.name, strip_pos(getattr(node, f.name)))
            for f in attrs.fields(type(node))
            if f.name
            not in (
                "pos",
                "name_pos",
                "extends_pos",
                "end_line",
                "source",
                "comments",
                "file",
                "order",
                "text",
            )
        )
    if isinstance(node, tuple):
        return tuple(strip_pos(x) for x in node)
    return node


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program())
def test_fmt_round_trip(src: str) -> None:
    once = format_text(src)
    twice = format_text(once)
    assert twice == once
    assert strip_pos(parse_text(once)) == strip_pos(parse_text(src))
    # comments survive formatting
    assert sorted(c.text.strip() for c in parse_text(once).comments) == sorted(
        c.text.strip() for c in parse_text(src).comments
    )


def test_number_spellings() -> None:
    from dsl.parser import parse_number

    assert parse_number("200_000") == 200000
    assert parse_number("50k") == 50000
    assert parse_number("1.5k") == 1500
    assert parse_number("2M") == 2_000_000
    assert parse_number("1e-3") == 0.001
    assert parse_number(".5") == 0.5
    assert isinstance(parse_number("10"), int)


def test_expression_folding_and_canonical_text() -> None:
    from ncsn_core.values import Expr

    mod = parse_text("experiment e { a = 2 * 3, b = sigma**2, c = (sigma + 1) * 2, d = -(2 ** 2) }")
    vals = {a.path[0]: a.value for a in mod.experiments[0].body}
    assert vals["a"].value == 6 and isinstance(vals["a"].value, int)
    assert isinstance(vals["b"].value, Expr) and vals["b"].value.evaluate(sigma=3.0) == 9.0
    assert vals["c"].text == "(sigma + 1) * 2" and vals["c"].value.evaluate(sigma=1.0) == 4.0
    assert vals["d"].value == -4
