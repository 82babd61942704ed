"""Parse `.exp` text into the syntax tree of :mod:`dsl.ast` (Lark LALR, positions kept)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import attrs
import lark
from lark import Lark, Token, Tree

from dsl.ast import (
    Assign,
    Block,
    Comment,
    Experiment,
    Import,
    Module,
    Pos,
    PubEntry,
    Published,
    Stage,
    Sweep,
    Value,
)
from dsl.errors import Diagnostic, DiagnosticError, error
from ncsn_core.values import AUTO, Call, Expr, Ident

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        start=["start", "value"],
        propagate_positions=True,
        maybe_placeholders=True,
    )


# ----------------------------------------------------------------------------- numbers
_SUFFIX = {"k": 1_000, "M": 1_000_000}


def parse_number(text: str) -> int | float:
    """``200_000`` → 200000, ``50k`` → 50000, ``1e-3`` → 0.001, ``2.5`` → 2.5."""
    t = text.replace("_", "")
    mult = 1
    if t and t[-1] in _SUFFIX:
        mult = _SUFFIX[t[-1]]
        t = t[:-1]
    if re.fullmatch(r"\d+", t):
        return int(t) * mult
    v = float(t) * mult
    if mult != 1 and v.is_integer():
        return int(v)
    return v


# ----------------------------------------------------------------------------- positions
def _pos_tok(file: str, tok: Token) -> Pos:
    return Pos(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _pos_tree(file: str, tree: Tree) -> Pos:
    m = tree.meta
    if getattr(m, "empty", True):
        return Pos(file, 1, 1, 1, 2)
    return Pos(file, m.line, m.column, m.end_line, m.end_column)


_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4}
_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


class _Builder:
    """Turns Lark trees into :mod:`dsl.ast` nodes."""

    def __init__(self, file: str) -> None:
        self.file = file

    # ---- values
    def _val(self, t: Tree | Token) -> tuple[Value, int]:
        """Returns the Value and the precedence of its outermost operator (9 = atom)."""
        f = self.file
        if isinstance(t, Token):  # pragma: no cover - all values arrive as trees
            raise error(_pos_tok(f, t), f"unexpected token {t!r}")
        pos = _pos_tree(f, t)
        d = t.data
        if d == "number":
            tok = t.children[0]
            return Value(parse_number(str(tok)), str(tok), pos), 9
        if d == "name":
            name = str(t.children[0])
            return Value(Ident(name), name, pos), 9
        if d == "string":
            raw = str(t.children[0])
            return Value(_unescape(raw), raw, pos), 9
        if d in ("true", "false"):
            return Value(d == "true", d, pos), 9
        if d == "auto":
            return Value(AUTO, "auto", pos), 9
        if d == "list":
            items = tuple(self._val(c)[0] for c in t.children if c is not None)
            text = "[" + ", ".join(i.text for i in items) + "]"
            return Value(tuple(i.value for i in items), text, pos, items), 9
        if d in ("call", "empty_call"):
            name = str(t.children[0])
            kws: list[tuple[str, Any]] = []
            texts = []
            seen: dict[str, Pos] = {}
            for kw in t.children[1:]:
                if kw is None:
                    continue
                key_tok = kw.children[0]
                key = str(key_tok)
                kpos = _pos_tok(f, key_tok)
                if key in seen:
                    raise error(
                        kpos, f"duplicate argument '{key}' in {name}(...)", f"first given at {seen[key]}"
                    )
                seen[key] = kpos
                v, _ = self._val(kw.children[1])
                kws.append((key, v.value))
                texts.append(f"{key} = {v.text}")
            return Value(Call(name, tuple(kws)), f"{name}(" + ", ".join(texts) + ")", pos), 9
        if d == "func":
            fname = str(t.children[0])
            if fname not in ("sqrt", "exp", "log"):
                raise error(
                    _pos_tok(f, t.children[0]),
                    f"unknown function '{fname}' in an expression; use sqrt, exp or log, "
                    f"or name=value arguments for a component call",
                )
            arg, _ = self._val(t.children[1])
            tree = ("call", fname, self._tree(arg))
            return Value(self._expr_or_const(tree), f"{fname}({arg.text})", pos), 9
        if d == "neg":
            a, pa = self._val(t.children[0])
            if isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
                return Value(-a.value, "-" + a.text, pos), 3
            at = f"({a.text})" if pa < 3 else a.text
            return Value(self._expr_or_const(("neg", self._tree(a))), "-" + at, pos), 3
        if d in _OPS:
            p = _PREC[d]
            a, pa = self._val(t.children[0])
            b, pb = self._val(t.children[1])
            op = _OPS[d]
            if d == "pow":
                at = f"({a.text})" if pa <= p else a.text
                bt = f"({b.text})" if pb < 3 else b.text
            else:
                at = f"({a.text})" if pa < p else a.text
                bt = f"({b.text})" if pb <= p else b.text
            tree = (op, self._tree(a), self._tree(b))
            return Value(self._expr_or_const(tree), f"{at} {op} {bt}", pos), p
        raise error(pos, f"unexpected {d}")  # pragma: no cover

    def _tree(self, v: Value) -> tuple:
        x = v.value
        if isinstance(x, bool) or isinstance(x, str) or isinstance(x, (tuple, Call)) or x is AUTO:
            raise error(v.pos, f"{v.text} cannot be used in an arithmetic expression")
        if isinstance(x, (int, float)):
            return ("num", x)
        if isinstance(x, Ident):
            return ("sym", x.name)
        if isinstance(x, Expr):
            return x.tree
        raise error(v.pos, f"{v.text} cannot be used in an arithmetic expression")  # pragma: no cover

    @staticmethod
    def _expr_or_const(tree: tuple) -> Any:
        e = Expr(tree)
        if e.symbols():
            return e
        try:
            v = e.evaluate()
        except (ZeroDivisionError, OverflowError, ValueError):
            return e  # the checker reports it as an expression where a number is expected
        return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 and _all_int(tree) else v

    # ---- statements
    def dotted(self, t: Tree) -> tuple[str, ...]:
        return tuple(str(c) for c in t.children)

    def assign(self, t: Tree) -> Assign:
        path = self.dotted(t.children[0])
        return Assign(path, self._val(t.children[1])[0], _pos_tree(self.file, t.children[0]))

    def stage(self, t: Tree) -> Stage:
        name_tok = t.children[0]
        items = tuple(self.assign(c) for c in t.children[1:] if c is not None)
        return Stage(
            str(name_tok), items, _pos_tree(self.file, t), _pos_tok(self.file, name_tok), t.meta.end_line
        )

    def block(self, t: Tree) -> Block:
        kind_tok, name_tok = t.children[0], t.children[1]
        items: list[Assign | Stage] = []
        for c in t.children[2:]:
            if c is None:
                continue
            items.append(self.assign(c) if c.data == "assign" else self.stage(c))
        return Block(
            str(kind_tok),
            str(name_tok) if name_tok is not None else None,
            tuple(items),
            _pos_tok(self.file, kind_tok),
            _pos_tok(self.file, name_tok) if name_tok is not None else None,
            t.meta.end_line,
        )

    def sweep(self, t: Tree) -> Sweep:
        path = self.dotted(t.children[0])
        return Sweep(path, self._val(t.children[1])[0], _pos_tree(self.file, t.children[0]))

    def published(self, t: Tree) -> Published:
        label_tok = t.children[0]
        label = _unescape(str(label_tok)) if label_tok is not None else ""
        entries = []
        seen: dict[str, Pos] = {}
        for e in t.children[1:]:
            if e is None:
                continue
            name_tok, val_t, err_t = e.children
            p = _pos_tok(self.file, name_tok)
            if str(name_tok) in seen:
                raise error(
                    p, f"duplicate published value '{name_tok}'", f"first given at {seen[str(name_tok)]}"
                )
            seen[str(name_tok)] = p
            val, vtext = self._signed(val_t)
            err, etext = self._signed(err_t) if err_t is not None else (None, "")
            if err is not None and err < 0:
                raise error(_pos_tree(self.file, err_t), "a published uncertainty must be ≥ 0")
            text = vtext + (f" ± {etext}" if err_t is not None else "")
            entries.append(PubEntry(str(name_tok), float(val), None if err is None else float(err), text, p))
        return Published(label, tuple(entries), _pos_tree(self.file, t), t.meta.end_line)

    def _signed(self, t: Tree) -> tuple[float, str]:
        tok = t.children[0]
        v = parse_number(str(tok))
        if t.data == "neg_number":
            return -v, "-" + str(tok)
        return v, str(tok)

    def experiment(self, t: Tree) -> Experiment:
        name_tok, ext_tok = t.children[0], t.children[1]
        body = []
        for c in t.children[2:]:
            if c is None:
                continue
            body.append(getattr(self, c.data)(c))
        return Experiment(
            str(name_tok),
            str(ext_tok) if ext_tok is not None else None,
            tuple(body),
            _pos_tok(self.file, name_tok),
            _pos_tok(self.file, ext_tok) if ext_tok is not None else None,
            t.meta.end_line,
        )


def _all_int(tree: tuple) -> bool:
    if tree[0] == "num":
        return isinstance(tree[1], int)
    if tree[0] in ("/", "call"):
        return False
    if tree[0] == "**":
        return _all_int(tree[1]) and _all_int(tree[2]) and tree[2][0] == "num" and tree[2][1] >= 0
    return all(_all_int(c) for c in tree[1:] if isinstance(c, tuple))


def _unescape(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


# ----------------------------------------------------------------------------- errors
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
        term = _lark().get_terminal(name)
        return f"'{term.pattern.value}'"
    except KeyError:
        return name.lower()


def _syntax_error(file: str, exc: lark.exceptions.LarkError) -> DiagnosticError:
    if isinstance(exc, lark.exceptions.UnexpectedToken):
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
            pos = _pos_tok(file, tok)
        hint = _hint(tok, exc.expected)
        if expected:
            msg += "; expected " + (
                ", ".join(expected[:-1]) + " or " + expected[-1] if len(expected) > 1 else expected[0]
            )
        return DiagnosticError([Diagnostic(pos, msg + hint)])
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        ch = exc.char
        pos = Pos(file, exc.line, exc.column, exc.line, exc.column + 1)
        if ch == '"':
            return error(pos, "unterminated string (strings end on the same line with '\"')")
        return error(pos, f"unexpected character {ch!r}")
    if isinstance(exc, lark.exceptions.UnexpectedEOF):  # pragma: no cover - LALR raises UnexpectedToken
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


# ----------------------------------------------------------------------------- entry points
def parse_text(text: str, file: str = "<string>") -> Module:
    """Parse a whole `.exp` source. Raises :class:`DiagnosticError` on syntax errors."""
    comments: list[Token] = []
    try:
        tree = _parse_with_comments(text, comments)
    except lark.exceptions.LarkError as exc:
        raise _syntax_error(file, exc) from None
    b = _Builder(file)
    imports: list[Import] = []
    experiments: list[Experiment] = []
    order: list[Import | Experiment] = []
    for item in tree.children:
        if item.data == "import_stmt":
            tok = item.children[0]
            imp = Import(_unescape(str(tok)), _pos_tok(file, tok))
            imports.append(imp)
            order.append(imp)
        else:
            exp = b.experiment(item)
            experiments.append(exp)
            order.append(exp)
    cmts = tuple(Comment(c.line, c.column, str(c)) for c in comments)
    return Module(file, text, tuple(imports), tuple(experiments), cmts, tuple(order))


def _parse_with_comments(text: str, sink: list[Token]) -> Tree:
    # A lexer callback collects comments (the grammar ignores them) for `repro fmt`.
    p = _comment_lark(GRAMMAR_PATH.read_text(encoding="utf-8"))
    _SINK[:] = []
    try:
        return p.parse(text, start="start")
    finally:
        sink.extend(_SINK)


_SINK: list[Token] = []


@functools.lru_cache(maxsize=1)
def _comment_lark(grammar: str) -> Lark:
    return Lark(
        grammar,
        parser="lalr",
        start=["start", "value"],
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _SINK.append},
    )


def parse_value(text: str, file: str = "<--set>", line: int = 1, col_offset: int = 0) -> Value:
    """Parse one value (the right-hand side of ``--set key=value``)."""
    try:
        tree = _lark().parse(text, start="value")
    except lark.exceptions.LarkError as exc:
        d = _syntax_error(file, exc).diagnostics[0]
        if d.pos is not None and col_offset:
            d = Diagnostic(attrs.evolve(d.pos, col=d.pos.col + col_offset), d.message, d.notes)
        raise DiagnosticError([d]) from None
    v, _ = _Builder(file)._val(tree)
    if col_offset:
        v = attrs.evolve(
            v, pos=attrs.evolve(v.pos, col=v.pos.col + col_offset, end_col=v.pos.end_col + col_offset)
        )
    return v


def parse_file(path: str | Path) -> Module:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(None, f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(None, f"{p}: cannot read: {e}") from None
    return parse_text(text, str(path))
