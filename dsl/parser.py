"""Parse `.exp` text into the syntax tree of :mod:`dsl.ast` (Lark LALR, positions kept)."""

from __future__ import annotations

import functools
import math
import os
import re
import stat
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
    PubProtocol,
    Stage,
    Sweep,
    Value,
)
from dsl.errors import Diagnostic, DiagnosticError, error
from ncsn_core.values import ATOM, AUTO, FUNCTIONS, OPERATORS, PRECEDENCE, Call, Expr, Ident

NEG = PRECEDENCE["neg"]

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

# Bounds that keep every input (however hostile) to a prompt answer: an error, never a hang
# or a crash. Real experiments stay far below all of them.
MAX_FILE_BYTES = 1_000_000  # a source file (root or imported)
MAX_NESTING = 100  # levels of brackets, operators, lists and calls in one value
MAX_FLOAT = 1.7976931348623157e308  # numbers folded or written must fit in a float64
MAX_INT_DIGITS = 4300  # larger integer results are refused, not computed (9 ** 9 ** 9)
_INT_LIMIT = 10**MAX_INT_DIGITS


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    """The one parser of the language. Comments, which the grammar ignores, are collected by a
    lexer callback into ``_SINK`` (for `repro fmt`). ``cache=True``: Lark keeps the LALR tables
    in the temporary folder, keyed by the grammar's hash, so a new process does not rebuild them."""
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        start=["start", "value"],
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _SINK.append},
        cache=True,
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
            return Value(_number(str(tok), pos), str(tok), pos), ATOM
        if d == "name":
            name = str(t.children[0])
            return Value(Ident(name), name, pos), ATOM
        if d == "ref":  # `train.iterations`: another value of the experiment (dsl.resolve)
            path = ".".join(str(c) for c in t.children)
            return Value(Expr(("sym", path)), path, pos), ATOM
        if d == "string":
            raw = str(t.children[0])
            return Value(_unescape(raw), raw, pos), ATOM
        if d in ("true", "false"):
            return Value(d == "true", d, pos), ATOM
        if d == "auto":
            return Value(AUTO, "auto", pos), ATOM
        if d == "list":
            items = tuple(self._val(c)[0] for c in t.children if c is not None)
            text = "[" + ", ".join(i.text for i in items) + "]"
            return Value(tuple(i.value for i in items), text, pos, items), ATOM
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
            return Value(Call(name, tuple(kws)), f"{name}(" + ", ".join(texts) + ")", pos), ATOM
        if d == "func":
            fname = str(t.children[0])
            if fname not in FUNCTIONS:
                raise error(
                    _pos_tok(f, t.children[0]),
                    f"unknown function '{fname}' in an expression; use sqrt, exp or log, "
                    f"or name=value arguments for a component call",
                )
            arg, _ = self._val(t.children[1])
            tree = ("call", fname, self._tree(arg))
            return Value(self._expr_or_const(tree, pos), f"{fname}({arg.text})", pos), ATOM
        if d == "neg":
            a, pa = self._val(t.children[0])
            at = f"({a.text})" if pa < NEG else a.text  # -(0 + 1) is not -0 + 1
            if isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
                return Value(-a.value, "-" + at, pos), NEG
            return Value(self._expr_or_const(("neg", self._tree(a)), pos), "-" + at, pos), NEG
        if d in OPERATORS:
            p = PRECEDENCE[OPERATORS[d]]
            a, pa = self._val(t.children[0])
            b, pb = self._val(t.children[1])
            op = OPERATORS[d]
            if d == "pow":
                at = f"({a.text})" if pa <= p else a.text
                bt = f"({b.text})" if pb < NEG else b.text
            else:
                at = f"({a.text})" if pa < p else a.text
                bt = f"({b.text})" if pb <= p else b.text
            tree = (op, self._tree(a), self._tree(b))
            return Value(self._expr_or_const(tree, pos), f"{at} {op} {bt}", pos), p
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
    def _expr_or_const(tree: tuple, pos: Pos) -> Any:
        e = Expr(tree)
        if e.symbols():
            return e
        # Fold with bounds first: `9 ** 9 ** 9` is never computed. What does not fold (too
        # large, 1 / 0, log(-1)) stays an expression: the resolver reports a number too
        # large (:func:`number_too_large`), the checker an expression where a number is due.
        if _fold_status(tree) != "ok":
            return e
        try:
            v = e.evaluate()
        except (ZeroDivisionError, OverflowError, ValueError):
            return e  # the checker reports it as an expression where a number is expected
        return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 and _all_int(tree) else v

    # ---- statements
    def pos(self, tok: Token) -> Pos:
        return _pos_tok(self.file, tok)

    def opt_pos(self, tok: Token | None) -> Pos | None:
        return None if tok is None else _pos_tok(self.file, tok)

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
        kind, name = str(kind_tok), _opt_str(name_tok)
        return Block(kind, name, tuple(items), self.pos(kind_tok), self.opt_pos(name_tok), t.meta.end_line)

    def sweep(self, t: Tree) -> Sweep:
        path = self.dotted(t.children[0])
        return Sweep(path, self._val(t.children[1])[0], _pos_tree(self.file, t.children[0]))

    def published(self, t: Tree) -> Published:
        label_tok = t.children[0]
        label = _unescape(str(label_tok)) if label_tok is not None else ""
        entries = []
        seen: dict[str, Pos] = {}
        protocol: PubProtocol | None = None
        for e in t.children[1:]:
            if e is None:
                continue
            if e.data == "pub_protocol":
                ppos = _pos_tree(self.file, e)
                if protocol is not None:
                    raise error(ppos, "duplicate protocol block", f"first given at {protocol.pos}")
                items = tuple(self.assign(c) for c in e.children if c is not None)
                protocol = PubProtocol(items, ppos, e.meta.end_line)
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
        return Published(label, tuple(entries), _pos_tree(self.file, t), t.meta.end_line, protocol)

    def _signed(self, t: Tree) -> tuple[float, str]:
        tok = t.children[0]
        v = _number(str(tok), _pos_tok(self.file, tok))
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
        name, parent = str(name_tok), _opt_str(ext_tok)
        return Experiment(
            name, parent, tuple(body), self.pos(name_tok), self.opt_pos(ext_tok), t.meta.end_line
        )


def fold_expr(tree: tuple) -> Any:
    """An expression tree as a number when it is constant and folds within bounds, else an Expr
    (the resolver's references, once replaced by numbers, fold like written constants)."""
    return _Builder._expr_or_const(tree, Pos("", 1, 1))


def _number(text: str, pos: Pos) -> int | float:
    """A number literal, refused when it does not fit in a float64."""
    try:
        v = parse_number(text)
    except ValueError:  # more digits than int() converts
        v = math.inf
    if abs(v) > MAX_FLOAT:
        raise error(pos, f"number too large: {_short(text)} (the largest is about {MAX_FLOAT:.4g})")
    return v


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:10] + "..." + text[-6:] + f" ({len(text)} characters)"


def _too_large(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) >= _INT_LIMIT


class _TooLarge(Exception):
    pass


def number_too_large(value: Any) -> str | None:
    """Why ``value`` (a parsed value: number, list, call, expression) holds a constant
    expression whose result does not fit in a float64, or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, tuple):
            stack.extend(v)
        elif isinstance(v, Call):
            stack.extend(x for _, x in v.params)
        elif isinstance(v, Expr):
            trees = [v.tree]
            while trees:  # the largest constant parts of the expression
                t = trees.pop()
                if _symbolic(t):
                    trees.extend(c for c in t[1:] if isinstance(c, tuple))
                    continue
                st = _fold_status(t)
                if st == "huge":
                    return f"the value of this expression has more than {MAX_INT_DIGITS} digits"
                if st == "large":
                    return f"the value of this expression is beyond {MAX_FLOAT:.4g}"
    return None


def _symbolic(tree: tuple) -> bool:
    if tree[0] == "sym":
        return True
    return any(isinstance(c, tuple) and _symbolic(c) for c in tree[1:])


def _fold_status(tree: tuple) -> str:
    """ok (folds to a float64-sized number), huge (an integer of more than MAX_INT_DIGITS
    digits, not computed), large (beyond a float64) or bad (1 / 0, log(-1), complex)."""
    try:
        if _bounded_eval(tree):
            return "ok"
        return "bad"
    except _TooLarge:
        return "huge"
    except OverflowError:
        return "large"


def _bounded_eval(tree: tuple) -> bool:
    """Evaluate a constant expression tree (depth bounded by the parser) without ever
    building an integer beyond MAX_INT_DIGITS digits (raises _TooLarge instead); raises
    OverflowError for a result beyond a float64. Returns False when it does not fold
    (division by zero, log of a negative number, a complex result)."""

    def ev(n: tuple) -> Any:
        tag = n[0]
        if tag == "num":
            return n[1]
        if tag == "neg":
            r = -ev(n[1])
        elif tag == "call":
            x = ev(n[2])
            if n[1] == "sqrt":
                r = x**0.5
            else:
                r = getattr(math, n[1])(x)
        else:
            a, b = ev(n[1]), ev(n[2])
            if tag == "+":
                r = a + b
            elif tag == "-":
                r = a - b
            elif tag == "*":
                r = a * b
            elif tag == "/":
                r = a / b
            else:
                if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0:
                    digits = b * math.log10(abs(a))
                    if digits > MAX_INT_DIGITS:
                        raise _TooLarge
                    if digits > 309:
                        raise OverflowError("beyond a float64")
                r = a**b
        if isinstance(r, complex):
            raise ValueError("complex")
        if _too_large(r):
            raise _TooLarge
        if abs(r) > MAX_FLOAT or r != r:  # beyond a float64, inf or nan
            raise OverflowError("beyond a float64")
        return r

    try:
        ev(tree)
    except (ZeroDivisionError, ValueError, TypeError):
        return False
    return True


def _opt_str(tok: Token | None) -> str | None:
    return None if tok is None else str(tok)


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
        err = _syntax_error(file, exc)
        note = _unclosed_note(text, file)
        if note:
            d = err.diagnostics[0]
            err = DiagnosticError([attrs.evolve(d, notes=d.notes + (note,))])
        raise err from None
    _check_nesting(tree, file)
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
    p = _lark()
    _SINK[:] = []
    try:
        return p.parse(text, start="start")
    finally:
        sink.extend(_SINK)


_SINK: list[Token] = []


def parse_value(text: str, file: str = "<--set>", line: int = 1, col_offset: int = 0) -> Value:
    """Parse one value (the right-hand side of ``--set key=value``)."""
    try:
        tree = _lark().parse(text, start="value")
    except lark.exceptions.LarkError as exc:
        d = _syntax_error(file, exc).diagnostics[0]
        if d.pos is not None and col_offset:
            d = Diagnostic(attrs.evolve(d.pos, col=d.pos.col + col_offset), d.message, d.notes)
        raise DiagnosticError([d]) from None
    _check_nesting(tree, file)
    v, _ = _Builder(file)._val(tree)
    if col_offset:
        v = attrs.evolve(
            v, pos=attrs.evolve(v.pos, col=v.pos.col + col_offset, end_col=v.pos.end_col + col_offset)
        )
    return v


def parse_file(path: str | Path) -> Module:
    problem = unreadable(path)
    if problem:
        raise error(None, f"{path}: {problem}")
    return parse_text(read_source(path), str(path))


def unreadable(path: str | Path) -> str | None:
    """Why ``path`` cannot be a source file (missing, a directory, a device or FIFO, too
    large), or None. Looks with stat only: a FIFO is never opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except ValueError:
        return "not a valid path"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, FIFO or socket)"
    if st.st_size > MAX_FILE_BYTES:
        return f"is too large ({st.st_size:,} bytes; source files are limited to {MAX_FILE_BYTES:,})"
    return None


def read_source(path: str | Path) -> str:
    """The UTF-8 text of a regular file checked by :func:`unreadable`; a file that is not
    UTF-8 gives an error at the line and column of the first bad byte."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise error(None, f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        raise error(None, f"{path}: is too large (source files are limited to {MAX_FILE_BYTES:,} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start : e.start].decode("utf-8", errors="replace")) + 1
        bad = data[e.start : e.end].hex(" ")
        raise error(
            Pos(str(path), line, col, line, col + 1),
            f"the file is not UTF-8 text: invalid byte(s) {bad}",
            "save it as UTF-8",
        ) from None


def _check_nesting(tree: Tree, file: str) -> None:
    """Refuse values nested deeper than MAX_NESTING (the builder and everything after it
    recurse on them). Iterative, so any depth is measured safely."""
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        t, depth = stack.pop()
        if depth > MAX_NESTING + 8:  # + the statement levels above a value
            raise error(
                _pos_tree(file, t),
                f"too deeply nested: more than {MAX_NESTING} levels of brackets, operators or lists",
            )
        for c in t.children:
            if isinstance(c, Tree):
                stack.append((c, depth + 1))


def _unclosed_note(text: str, file: str) -> str | None:
    """When a syntax error comes with more '{' than '}', say which block is left open:
    the first '{' whose closing '}' sits left of the line that opened it (indentation
    tells where the author meant a block to end), else the innermost one still open."""
    try:
        toks = list(_lark().lex(text))
    except lark.exceptions.LarkError:
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
    lines = text.splitlines()

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
    return f"the block opened here at {file}:{suspect.line}:{suspect.column} is not closed"
