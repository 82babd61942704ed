"""Syntax errors as diagnostics: what was found, what was expected, a hint, the block left open."""

from __future__ import annotations

from dsl.ast import Pos
from dsl.errors import Diagnostic, DiagnosticError, error
from dsl.grammar import Token, exceptions, lark_parser
from dsl.lines import source_lines


def pos_tok(file: str, tok: Token) -> Pos:
    """The position of a token (lark's line and column: lines counted by "\\n", dsl/lines.py)."""
    return Pos(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


_FRIENDLY = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "$END": "end of file",
    "_PM": "'±'",
    "_EXTENDS": "'extends'",
}


def _describe_terminal(name: str) -> str:
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    try:
        term = lark_parser().get_terminal(name)
        return f"'{term.pattern.value}'"
    except KeyError:
        return name.lower()


def syntax_error(file: str, exc: exceptions.LarkError, text: str | None = None) -> DiagnosticError:
    """The diagnostic of a syntax error. When a '{' before the error is never closed, that is
    the likely cause: the error is reported at that '{' first, and where the parser stopped in a
    note (``text``, the source, is taken from the exception when not given)."""
    err = _syntax_error(file, exc)
    src = text if text is not None else _source_of(exc)
    d = err.diagnostics[0] if len(err.diagnostics) == 1 else None
    if src is None or d is None or d.pos is None:
        return err
    open_brace = _unclosed(src)
    if open_brace is None or not (_at_end(exc) or _closing_fixes(src, open_brace, d.pos.line)):
        return err
    where = f"{file}:{d.pos.line}:{d.pos.col}"
    stopped = d.message.replace(" (did you forget '='?)", "").replace(" (a '{' is not closed)", "")
    return DiagnosticError(
        [
            Diagnostic(
                pos_tok(file, open_brace),
                "the block opened here is not closed (a '}' is missing)",
                (f"the parser stopped at {where}: {stopped}",),
            )
        ]
    )


def _source_of(exc: exceptions.LarkError) -> str | None:
    """The parsed text, as lark keeps it on the exception (None when it does not)."""
    if isinstance(exc, exceptions.UnexpectedCharacters):
        seq = getattr(exc, "_source", None)
        return seq if isinstance(seq, str) else None
    ip = getattr(exc, "interactive_parser", None)
    try:
        t = ip.lexer_thread.state.text  # type: ignore[union-attr]
    except AttributeError:
        return None
    t = getattr(t, "text", t)  # lark >= 1.2 wraps it in a TextSlice
    return t if isinstance(t, str) else None


def _syntax_error(file: str, exc: exceptions.LarkError) -> DiagnosticError:
    if isinstance(exc, exceptions.UnexpectedToken):
        tok = exc.token
        expected = sorted({_describe_terminal(e) for e in exc.expected})
        if tok.type == "$END":
            msg = "unexpected end of file"
            # Point at the last character of the file rather than past it.
            pos = Pos(
                file, max(1, exc.line if exc.line > 0 else 1), max(1, exc.column if exc.column > 0 else 1)
            )
        else:
            msg = f"unexpected {_describe_token(tok)}"
            pos = pos_tok(file, tok)
        hint = _hint(tok, exc.expected)
        if expected:
            msg += "; expected " + (
                ", ".join(expected[:-1]) + " or " + expected[-1] if len(expected) > 1 else expected[0]
            )
        return DiagnosticError([Diagnostic(pos, msg + hint)])
    if isinstance(exc, exceptions.UnexpectedCharacters):
        ch = exc.char
        pos = Pos(file, exc.line, exc.column, exc.line, exc.column + 1)
        if ch == '"':
            return error(pos, "unterminated string (strings end on the same line with '\"')")
        return error(pos, f"unexpected character {ch!r}")
    if isinstance(exc, exceptions.UnexpectedEOF):  # pragma: no cover - LALR raises UnexpectedToken
        return error(Pos(file, 1, 1), "unexpected end of file")
    return error(Pos(file, 1, 1), f"syntax error: {exc}")  # pragma: no cover


def _describe_token(tok: Token) -> str:
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    if tok.type == "STRING":
        return f"string {tok}"
    return f"'{tok}'"


def _hint(tok: Token, expected: set[str]) -> str:
    if "EQUAL" in expected and tok.type in ("NUMBER", "STRING", "NAME"):
        return " (did you forget '='?)"
    if "RBRACE" in expected and tok.type == "$END":
        return " (a '{' is not closed)"
    return ""


def unclosed_note(text: str, file: str) -> str | None:
    """When a syntax error comes with more '{' than '}' and :func:`syntax_error` did not
    already lead with the open block (the '{' comes after the error), say which block is left
    open."""
    suspect = _unclosed(text)
    if suspect is None:
        return None
    try:
        lark_parser().parse(text, start="start")
    except exceptions.UnexpectedInput as exc:
        if _source_of(exc) is not None and (_at_end(exc) or _closing_fixes(text, suspect, exc.line)):
            return None  # syntax_error reported it first
    except exceptions.LarkError:
        pass
    return f"the block opened here at {file}:{suspect.line}:{suspect.column} is not closed"


def _at_end(exc: exceptions.LarkError) -> bool:
    return isinstance(exc, exceptions.UnexpectedToken) and exc.token.type == "$END"


def _closing_fixes(text: str, brace: Token, line: int) -> bool:
    """Whether the open ``brace`` is the error's cause: a '}' put at the start of the error's
    line (past the brace's line) lets the parser get further than that line."""
    if line <= brace.line:
        return False
    lines = text.split("\n")
    if line > len(lines):
        fixed = text + "\n}"
    else:
        fixed = "\n".join(lines[: line - 1] + ["}" + lines[line - 1]] + lines[line:])
    try:
        lark_parser().parse(fixed, start="start")
    except exceptions.UnexpectedInput as exc:
        return exc.line > line
    except exceptions.LarkError:
        return False
    return True


def _unclosed(text: str) -> Token | None:
    """The '{' left open, when the text has more '{' than '}': the first '{' whose closing '}'
    sits left of the line that opened it (indentation tells where the author meant a block to
    end), else the innermost one still open."""
    try:
        toks = list(lark_parser().lex(text))
    except exceptions.LarkError:
        return None
    opens: list[Token] = []
    pairs: list[tuple[Token, Token]] = []
    for t in toks:
        if t.type == "LBRACE":
            opens.append(t)
        elif t.type == "RBRACE" and opens:
            pairs.append((opens.pop(), t))
    if not opens:
        return None
    lines = source_lines(text)  # as lark counts lines

    def indent(line: int) -> int:
        s = lines[line - 1] if 0 < line <= len(lines) else ""
        return len(s) - len(s.lstrip())

    def first_on_line(t: Token) -> bool:
        s = lines[t.line - 1] if 0 < t.line <= len(lines) else ""
        return s[: t.column - 1].strip() == ""

    suspect = opens[-1]
    for o, c in sorted(pairs, key=lambda p: p[0].start_pos or 0):
        if c.line != o.line and first_on_line(c) and indent(c.line) < indent(o.line):
            suspect = o
            break
    return suspect
