"""Parse `.exp` text into the syntax tree of :mod:`dsl.ast` (Lark LALR, positions kept)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from dsl.ast import (
    Assign,
    Block,
    Comment,
    Experiment,
    Group,
    Import,
    Module,
    Option,
    Pos,
    PubEntry,
    Published,
    PubProtocol,
    Stage,
    Sweep,
    Use,
    Value,
)
from dsl.errors import Diagnostic, DiagnosticError, error
from dsl.grammar import SINK, Token, Tree, exceptions, lark_parser
from dsl.numbers import (  # noqa: F401 - re-exported: the parser's public names
    MAX_FLOAT,
    MAX_INT_DIGITS,
    expr_or_const,
    fold_expr,
    number_literal,
    number_too_large,
    parse_number,
)
from dsl.source import MAX_FILE_BYTES, read_source, unreadable  # noqa: F401 - re-exported
from dsl.syntax_errors import pos_tok, syntax_error, unclosed_note
from ncsn_core.values import ATOM, AUTO, FUNCTIONS, OPERATORS, PRECEDENCE, Call, Expr, Ident

NEG = PRECEDENCE["neg"]

# Bounds that keep every input (however hostile) to a prompt answer: an error, never a hang
# or a crash. Real experiments stay far below all of them (numbers: dsl/numbers.py; files:
# dsl/source.py).
MAX_NESTING = 100  # levels of brackets, operators, lists and calls in one value


# ----------------------------------------------------------------------------- positions
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
            raise error(pos_tok(f, t), f"unexpected token {t!r}")
        pos = _pos_tree(f, t)
        d = t.data
        if d == "number":
            tok = t.children[0]
            return Value(number_literal(str(tok), pos), str(tok), pos), ATOM
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
                kpos = pos_tok(f, key_tok)
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
                    pos_tok(f, t.children[0]),
                    f"unknown function '{fname}' in an expression; use sqrt, exp or log, "
                    f"or name=value arguments for a component call",
                )
            arg, _ = self._val(t.children[1])
            tree = ("call", fname, self._tree(arg))
            return Value(expr_or_const(tree), f"{fname}({arg.text})", pos), ATOM
        if d == "neg":
            a, pa = self._val(t.children[0])
            at = f"({a.text})" if pa < NEG else a.text  # -(0 + 1) is not -0 + 1
            if isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
                return Value(-a.value, "-" + at, pos), NEG
            return Value(expr_or_const(("neg", self._tree(a))), "-" + at, pos), NEG
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
            return Value(expr_or_const(tree), f"{at} {op} {bt}", pos), p
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

    # ---- statements
    def pos(self, tok: Token) -> Pos:
        return pos_tok(self.file, tok)

    def opt_pos(self, tok: Token | None) -> Pos | None:
        return None if tok is None else pos_tok(self.file, tok)

    def dotted(self, t: Tree) -> tuple[str, ...]:
        return tuple(str(c) for c in t.children)

    def assign(self, t: Tree) -> Assign:
        path = self.dotted(t.children[0])
        return Assign(path, self._val(t.children[1])[0], _pos_tree(self.file, t.children[0]))

    def stage(self, t: Tree) -> Stage:
        name_tok = t.children[0]
        items = tuple(self.assign(c) for c in t.children[1:] if c is not None)
        return Stage(
            str(name_tok), items, _pos_tree(self.file, t), pos_tok(self.file, name_tok), t.meta.end_line
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
            p = pos_tok(self.file, name_tok)
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
        v = number_literal(str(tok), pos_tok(self.file, tok))
        if t.data == "neg_number":
            return -v, "-" + str(tok)
        return v, str(tok)

    def use(self, t: Tree) -> Use:
        g, o = t.children
        return Use(str(g), str(o), _pos_tree(self.file, t), self.pos(g), self.pos(o))

    def group(self, t: Tree) -> Group:
        name_tok = t.children[0]
        options: list[Option] = []
        seen: dict[str, Pos] = {}
        for c in t.children[1:]:
            if c is None:
                continue
            otok = c.children[0]
            opos = self.pos(otok)
            if str(otok) in seen:
                raise error(
                    opos,
                    f"option '{otok}' is defined twice in group '{name_tok}'",
                    f"first defined at {seen[str(otok)]}",
                )
            seen[str(otok)] = opos
            body = tuple(getattr(self, b.data)(b) for b in c.children[1:] if b is not None)
            options.append(Option(str(otok), body, opos, c.meta.end_line))
        return Group(str(name_tok), tuple(options), self.pos(name_tok), t.meta.end_line, t.meta.line)

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


def _opt_str(tok: Token | None) -> str | None:
    return None if tok is None else str(tok)


def _unescape(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


# ----------------------------------------------------------------------------- entry points
def parse_text(text: str, file: str = "<string>") -> Module:
    """Parse a whole `.exp` source. Raises :class:`DiagnosticError` on syntax errors."""
    comments: list[Token] = []
    try:
        tree = _parse_with_comments(text, comments)
    except exceptions.LarkError as exc:
        err = syntax_error(file, exc)
        note = unclosed_note(text, file)
        if note:
            d = err.diagnostics[0]
            err = DiagnosticError([attrs.evolve(d, notes=d.notes + (note,))])
        raise err from None
    _check_nesting(tree, file)
    b = _Builder(file)
    imports: list[Import] = []
    experiments: list[Experiment] = []
    order: list[Import | Experiment | Group] = []
    groups: list[Group] = []
    for item in tree.children:
        if item.data == "import_stmt":
            tok = item.children[0]
            imp = Import(_unescape(str(tok)), pos_tok(file, tok))
            imports.append(imp)
            order.append(imp)
        elif item.data == "group":
            grp = b.group(item)
            groups.append(grp)
            order.append(grp)
        else:
            exp = b.experiment(item)
            experiments.append(exp)
            order.append(exp)
    cmts = tuple(Comment(c.line, c.column, str(c)) for c in comments)
    return Module(file, text, tuple(imports), tuple(experiments), cmts, tuple(order), tuple(groups))


def _parse_with_comments(text: str, sink: list[Token]) -> Tree:
    # A lexer callback collects comments (the grammar ignores them) for `repro fmt`.
    p = lark_parser()
    SINK[:] = []
    try:
        return p.parse(text, start="start")
    finally:
        sink.extend(SINK)


def parse_value(text: str, file: str = "<--set>", line: int = 1, col_offset: int = 0) -> Value:
    """Parse one value (the right-hand side of ``--set key=value``)."""
    try:
        tree = lark_parser().parse(text, start="value")
    except exceptions.LarkError as exc:
        d = syntax_error(file, exc).diagnostics[0]
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
