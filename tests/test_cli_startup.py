"""Start-up of the `repro` command line (issue 25): the generated standalone parser is current
and parses exactly as a parser built from dsl/grammar.lark; the light commands import neither
torch nor the heavy modules made lazy (lark, jinja2, tabulate, rich, matplotlib). Speed itself is
measured by `repro bench cli`, not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dsl import grammar, grammar_parser

ROOT = Path(__file__).resolve().parent.parent
PAPERS = sorted((ROOT / "papers").glob("*.exp"))


def test_generated_parser_is_current() -> None:
    assert grammar_parser.GRAMMAR_SHA256 == grammar.grammar_sha256(), (
        "dsl/grammar_parser.py is stale: run `python -m dsl.grammar --write`"
    )


def test_generated_parser_has_no_cache_or_file_path() -> None:
    """Lark's standalone module carries its pickle cache and `Lark.open`; the generated one has
    them replaced by a function that raises (docs/security.md), and regenerating keeps it so."""
    import ast

    text = grammar.generate()
    calls = {
        ast.unparse(n.func)
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.Call) and ast.unparse(n.func) in ("pickle.load", "pickle.dump", "open")
    }
    assert calls == set()
    assert "_refused(f)" in text  # the cache's load is there, refused
    with pytest.raises(RuntimeError, match="reads no cache or grammar file"):
        grammar_parser.Lark.open("grammar.lark")


def _shape(t):  # type: ignore[no-untyped-def]
    """A tree as plain tuples: rule names, token types, values and every position."""
    if t is None:
        return None
    if hasattr(t, "data"):
        m = t.meta
        pos = None if getattr(m, "empty", True) else (m.line, m.column, m.end_line, m.end_column)
        return (str(t.data), pos, tuple(_shape(c) for c in t.children))
    return (t.type, str(t), t.line, t.column, t.end_line, t.end_column)


def test_generated_parser_parses_as_grammar_lark() -> None:
    """Same trees and positions as lark building the tables from grammar.lark now, on every
    papers file and on values; the same error class and position on broken input."""
    built = grammar.build_from_grammar()
    gen = grammar.lark_parser()
    assert PAPERS
    for p in PAPERS:
        text = p.read_text(encoding="utf-8")
        assert _shape(gen.parse(text, start="start")) == _shape(built.parse(text, start="start")), p
    for value in ("1e-4 * 2", "[fid, kid]", "(1 + 2) * 3", '"text"', "-x.y ** 2"):
        assert _shape(gen.parse(value, start="value")) == _shape(built.parse(value, start="value"))
    for bad in ("experiment x {\n  train {\n", "experiment { }", "experiment x { a = = 1 }", "§"):
        errs = []
        for parser in (gen, built):
            try:
                parser.parse(bad, start="start")
                errs.append(None)
            except Exception as e:  # noqa: BLE001 - compared, not handled
                errs.append((type(e).__name__, getattr(e, "line", None), getattr(e, "column", None)))
        assert errs[0] == errs[1] and errs[0] is not None, bad


HEAVY = ("torch", "numpy", "lark", "jinja2", "tabulate", "rich", "matplotlib", "scipy")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["check", "papers/quickstart_digits.exp"],
        ["compile", "--no-auto", "papers/quickstart_digits.exp"],
        ["ls", "{runs}"],
        ["report", "{runs}", "--format", "md"],  # jinja2: the md template
        ["report", "{runs}", "--format", "json"],
        ["explain", "noise", "geometric"],
    ],
)
def test_light_commands_import_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = [a.replace("{runs}", str(runs)) for a in args]
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['repro', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('dsl.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    allowed = {"md": ["jinja2"], "geometric": ["tabulate"]}.get(args[-1], [])  # what they print with
    assert f"HEAVY {allowed}" in r.stderr, f"{args}: {r.stderr.splitlines()[-1]}"
