"""`repro fmt`: the canonical layout of a `.exp` file.

Canonical means: 4-space indentation; `key = value` with single spaces; values spelled as
written (numbers keep `1e-3`, `200_000`) with canonical spacing; a block whose items fit
on one line (≤ 88 columns, no comments inside) is printed on one line with commas,
otherwise one item per line; at most one blank line kept between statements; comments
kept where they were (own-line or trailing). Idempotent: fmt(parse(fmt(x))) == fmt(x).
"""

from __future__ import annotations

from collections.abc import Sequence

import dsl.ast as syntax
from dsl.parser import parse_text

WIDTH = 88
IND = "    "


class _Printer:
    def __init__(self, comments: tuple[syntax.Comment, ...]) -> None:
        self.comments = list(comments)
        self.out: list[str] = []

    def take_before(self, line: int) -> list[syntax.Comment]:
        got = [c for c in self.comments if c.line < line]
        self.comments = [c for c in self.comments if c.line >= line]
        return got

    def take_range(self, lo: int, hi: int) -> list[syntax.Comment]:
        got = [c for c in self.comments if lo <= c.line <= hi]
        self.comments = [c for c in self.comments if not (lo <= c.line <= hi)]
        return got

    def has_range(self, lo: int, hi: int) -> bool:
        return any(lo <= c.line <= hi for c in self.comments)

    def emit(self, indent: int, text: str, trailing: list[syntax.Comment] = ()) -> None:  # type: ignore[assignment]
        line = IND * indent + text
        if trailing:
            line += "  " + " ".join(c.text.rstrip() for c in trailing)
        self.out.append(line.rstrip())

    def lead(self, indent: int, start: int, prev_end: int) -> None:
        cs = self.take_before(start)
        first = cs[0].line if cs else start
        if prev_end and first - prev_end > 1 and self.out and self.out[-1].strip():
            self.out.append("")
        last = None
        for c in cs:
            if last is not None and c.line - last > 1:
                self.out.append("")
            self.emit(indent, c.text.rstrip())
            last = c.line
        if cs and start - cs[-1].line > 1:
            self.out.append("")

    # ---- statements
    def stmt(self, s: object, indent: int, prev_end: int) -> int:
        start, end = _span(s)
        self.lead(indent, start, prev_end)
        if isinstance(s, (syntax.Assign, syntax.Sweep)):
            kw = "sweep " if isinstance(s, syntax.Sweep) else ""
            self.emit(indent, f"{kw}{'.'.join(s.path)} = {s.value.text}", self.take_range(start, end))
            return end
        if isinstance(s, syntax.PubEntry):
            self.emit(indent, f"{s.name} = {s.text}", self.take_range(start, end))
            return end
        if isinstance(s, syntax.Use):
            self.emit(indent, f"use {s.group} = {s.option}", self.take_range(start, end))
            return end
        if isinstance(s, syntax.Option):
            self.block_like(s.name, _flat_body(s.body), s.body, indent, start, end)
            return end
        if isinstance(s, syntax.Published):
            header = "published" + (f" {_quote(s.label)}" if s.label else "")
            children = _pub_children(s)
            items = [_flat(c) for c in children]
            self.block_like(header, items, children, indent, start, end)
            return end
        if isinstance(s, syntax.PubProtocol):
            items = [_flat(a) for a in s.items]
            self.block_like("protocol", items, s.items, indent, start, end)
            return end
        if isinstance(s, syntax.Stage):
            items = [f"{a.path[0]} = {a.value.text}" for a in s.items]
            self.block_like(f"stage {s.name}", items, s.items, indent, start, end)
            return end
        if isinstance(s, syntax.Block):
            header = s.kind + (f" {s.name}" if s.name else "")
            items = [_flat(i) for i in s.items]
            self.block_like(header, items, s.items, indent, start, end)
            return end
        raise TypeError(s)  # pragma: no cover

    def block_like(
        self,
        header: str,
        flat: list[str] | None,
        children: tuple,
        indent: int,
        start: int,
        end: int,
    ) -> None:
        inner_comments = self.has_range(start, end - 1) if end > start else False
        if flat is not None and not inner_comments:
            text = f"{header} {{ {', '.join(flat)} }}" if flat else f"{header} {{ }}"
            if len(IND * indent + text) <= WIDTH:
                self.emit(indent, text, self.take_range(start, end))
                return
        self.emit(indent, header + " {", self.take_range(start, start))
        prev = start
        for c in children:
            prev = self.stmt(c, indent + 1, prev)
        rest = self.take_before(end)
        for c in rest:
            self.emit(indent + 1, c.text.rstrip())
        self.emit(indent, "}", self.take_range(end, end))


def _flat_body(body: tuple) -> list[str] | None:
    """An option's items on one line, or None when one of them is a block of several lines
    (a published block, or a block holding a stage or a published protocol)."""
    out = []
    for i in body:
        if isinstance(i, syntax.Use):
            out.append(f"use {i.group} = {i.option}")
        elif isinstance(i, (syntax.Assign, syntax.Sweep)):
            out.append(
                ("sweep " if isinstance(i, syntax.Sweep) else "") + f"{'.'.join(i.path)} = {i.value.text}"
            )
        elif isinstance(i, syntax.Block):
            header = i.kind + (f" {i.name}" if i.name else "")
            inner = ", ".join(_flat(x) for x in i.items)
            out.append(f"{header} {{ {inner} }}" if inner else f"{header} {{ }}")
        else:
            return None
    return out


def _pub_children(s: syntax.Published) -> tuple:
    """A published block's values and its protocol block, in source order."""
    kids: list = list(s.entries)
    if s.protocol is not None:
        kids.append(s.protocol)
    return tuple(sorted(kids, key=lambda c: (c.pos.line, c.pos.col)))


def _flat(i: syntax.Assign | syntax.Stage | syntax.PubEntry | syntax.PubProtocol) -> str:
    if isinstance(i, syntax.PubEntry):
        return f"{i.name} = {i.text}"
    if isinstance(i, syntax.PubProtocol):
        inner = ", ".join(_flat(a) for a in i.items)
        return f"protocol {{ {inner} }}" if inner else "protocol { }"
    if isinstance(i, syntax.Stage):
        inner = ", ".join(f"{a.path[0]} = {a.value.text}" for a in i.items)
        return f"stage {i.name} {{ {inner} }}" if inner else f"stage {i.name} {{ }}"
    return f"{'.'.join(i.path)} = {i.value.text}"


def _span(s: object) -> tuple[int, int]:
    if isinstance(s, syntax.PubEntry):
        return s.pos.line, s.pos.line
    if isinstance(s, (syntax.Assign, syntax.Sweep)):
        return s.pos.line, max(s.value.pos.end_line, s.pos.line)
    if isinstance(s, (syntax.Published, syntax.PubProtocol)):
        return s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Stage):
        return s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Block):
        return s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Experiment):
        return s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Use):
        return s.pos.line, s.option_pos.line
    if isinstance(s, syntax.Option):
        return s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Group):
        return s.keyword_line or s.pos.line, s.end_line or s.pos.line
    if isinstance(s, syntax.Import):
        return s.pos.line, s.pos.line
    raise TypeError(s)  # pragma: no cover


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def format_module(mod: syntax.Module) -> str:
    p = _Printer(mod.comments)
    prev_end = 0
    prev_kind = None
    for item in mod.order:
        start, end = _span(item)
        if isinstance(item, syntax.Import):
            p.lead(0, start, prev_end)
            p.emit(0, f"import {_quote(item.path)}", p.take_range(start, end))
        elif isinstance(item, syntax.Group):
            if p.out and p.out[-1].strip() and prev_kind is not None:
                p.out.append("")  # groups are separated by a blank line, as experiments
            p.lead(0, start, prev_end)
            _braced(p, f"group {item.name}", item.options, start, end)
        else:
            if p.out and p.out[-1].strip() and prev_kind is not None:
                p.out.append("")  # experiments are separated by a blank line
            p.lead(0, start, prev_end)
            ext = f" extends {item.extends}" if item.extends else ""
            _braced(p, f"experiment {item.name}{ext}", item.body, start, end)
        prev_end, prev_kind = end, type(item)
    for c in p.comments:
        p.emit(0, c.text.rstrip())
    text = "\n".join(p.out).strip("\n")
    return text + "\n" if text else ""


def format_text(text: str, file: str = "<string>") -> str:
    return format_module(parse_text(text, file))


def _braced(p: _Printer, head: str, items: Sequence[object], start: int, end: int) -> None:
    """A top-level ``head { … }`` (an experiment or a group): its items one level in, the
    comments inside it kept in place."""
    p.emit(0, f"{head} {{", p.take_range(start, start))
    prev = start
    for it in items:
        prev = p.stmt(it, 1, prev)
    for c in p.take_before(end):
        p.emit(1, c.text.rstrip())
    p.emit(0, "}", p.take_range(end, end))
