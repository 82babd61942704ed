"""Diagnostics quote the line their line:col names, whatever line-breaking characters the text holds (issue 23 item 7).

Lark counts lines by "\\n" alone; a form feed, a vertical tab, a bare CR, U+0085 or U+2028/2029
(which str.splitlines also breaks at) is one column of its line. Every diagnostic quotes
through dsl/lines.py, so the quoted line is the one the position names and the caret sits
under the character it names.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from conftest import BASE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from dsl.lines import OTHER_BREAKS, line_at, shown, source_lines
from dsl.parser import parse_text

BREAKS = list(OTHER_BREAKS)  # FF, VT, CR, U+001C-1E, U+0085, U+2028, U+2029
WS = ["\f", "\r", " ", "\t"]  # whitespace the grammar skips between tokens

# (the line with the mistake, the text the diagnostic must point at, the message)
ERRORS = [
    ("    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 } $", "$", "unexpected character"),
    ("    bogus_field = 1", "bogus_field", "unknown field 'bogus_field'"),
    ('    network ncsn { ngf = "eight" }', '"eight"', "expected an integer"),
]


@st.composite
def noisy_source(draw: st.DrawFn) -> tuple[str, str, str]:
    """BASE with one mistake, line-breaking characters in comments, in a string and in the
    whitespace between tokens, and LF or CRLF line ends."""
    bad, marker, message = draw(st.sampled_from(ERRORS))
    lines = BASE.rstrip("\n").split("\n")
    if marker == "$":
        lines = [ln for ln in lines if not ln.startswith("    noise")]
    elif marker == '"eight"':
        lines = [ln for ln in lines if not ln.startswith("    network")]
    at = draw(st.integers(1, len(lines) - 1))
    lines.insert(at, bad)
    paper = "".join(draw(st.lists(st.sampled_from([*BREAKS, "a", " "]), max_size=4)))
    lines.insert(draw(st.integers(1, at)), f'    paper = "x{paper}y"')
    out = []
    for ln in lines:
        lead = "".join(draw(st.lists(st.sampled_from(WS), max_size=3)))
        comment = ""
        if draw(st.booleans()):
            comment = " # " + "".join(draw(st.lists(st.sampled_from([*BREAKS, "c", " "]), max_size=5)))
        out.append(lead + ln + comment + draw(st.sampled_from(["\n", "\r\n"])))
    extra = draw(st.lists(st.sampled_from(BREAKS), max_size=3))  # a comment line of breaks alone
    out.insert(draw(st.integers(0, len(out) - 1)), "#" + "".join(extra) + "\n")
    return "".join(out), marker, message


def _expected(text: str, marker: str) -> tuple[int, int]:
    """(line, col) of ``marker`` counted as lark counts: lines by "\\n", every other character a column."""
    i = re.search(re.escape(marker) + r"(?![A-Za-z_])", text).start()  # type: ignore[union-attr]
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


def _assert_quotes_the_named_line(rendered: str, text: str, marker: str, line: int, col: int) -> None:
    assert rendered.splitlines() == rendered.split("\n"), "a quoted line must stay one line"
    head, quote, caret = rendered.split("\n")[:3]
    assert f":{line}:{col}:" in head
    assert quote.startswith(f"{line:>5} | ")
    assert quote[len(f"{line:>5} | ") :] == shown(line_at(text, line))
    at = caret.index("^")
    assert quote[at : at + len(marker)] == marker


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_source())
def test_the_quoted_line_is_the_line_the_position_names(case: tuple[str, str, str]) -> None:
    text, marker, message = case
    line, col = _expected(text, marker)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.exp"
        path.write_bytes(text.encode("utf-8"))  # CRs kept as written
        with pytest.raises(DiagnosticError) as e:
            compile_file(path, compute_auto=False)
        diag = next(x for x in e.value.diagnostics if message in x.message)
        assert (diag.pos.line, diag.pos.col) == (line, col)
        _assert_quotes_the_named_line(diag.render(), text, marker, line, col)  # quoted from the file
    _assert_quotes_the_named_line(diag.render({str(path): text}), text, marker, line, col)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*BREAKS, "\n", "\r\n", " "]), max_size=6))
def test_the_unclosed_block_error_names_a_brace(breaks: list[str]) -> None:
    """The error at the block left open (reported at its opening brace, issue 25) counts lines
    as the parser does; its note says where the parser stopped."""
    text = "# " + "".join(b for b in breaks if b not in ("\n", "\r\n")) + "\n" + BASE.rstrip().rstrip("}")
    with pytest.raises(DiagnosticError) as e:
        parse_text(text, "t.exp")
    d = e.value.diagnostics[0]
    assert "not closed" in d.message and "parser stopped" in d.notes[0]
    assert line_at(text, d.pos.line)[d.pos.col - 1] == "{"


def test_source_lines_split_at_newlines_only() -> None:
    text = "a\fb\r\nc\u2028d\rE\n\n"
    assert source_lines(text) == ["a\fb\r", "c\u2028d\rE", ""]
    assert line_at(text, 2) == "c\u2028d\rE" and line_at(text, 4) is None and line_at(text, 0) is None
    assert shown("a\tb\u2028c\r") == "a b c"
    assert source_lines("x\ny") == "x\ny".splitlines()  # plain text: as before


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(ROOT).as_posix() for d in ("dsl", "repro") for p in (ROOT / d).rglob("*.py")),
)
def test_language_modules_are_short_and_say_what_they_are(path: str) -> None:
    """Issue 21: no module of dsl/ (or repro/) over 600 lines; its first line, a docstring, says what it is."""
    text = (ROOT / path).read_text(encoding="utf-8")
    generated = text.startswith('"""GENERATED by `python -m dsl.grammar --write`')  # Lark's standalone parser
    assert generated or len(text.splitlines()) <= 600, (
        f"{path}: {len(text.splitlines())} lines; split it by concern"
    )
    if text.strip():
        first = text.splitlines()[0]
        assert first.startswith('"""') and len(first.strip('"').strip()) > 10, f"{path}: {first!r}"
