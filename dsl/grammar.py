"""The one Lark LALR parser of the language (dsl/grammar.lark), built once per process, its tables cached on disk."""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

# Comments, which the grammar ignores, collected by a lexer callback (for `repro fmt`).
SINK: list[Token] = []


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The one parser of the language. Comments, which the grammar ignores, are collected by a
    lexer callback into ``SINK`` (for `repro fmt`). ``cache=True``: Lark keeps the LALR tables
    in the temporary folder, keyed by the grammar's hash, so a new process does not rebuild them."""
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        start=["start", "value"],
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": SINK.append},
        cache=True,
    )
