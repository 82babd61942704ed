"""`--set key=value[,value...]` arguments: parsed in a pseudo-file each (quoted by diagnostics), commas outside brackets sweeping (only with --multirun, as Hydra)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from dsl.ast import Pos, Value
from dsl.errors import Diagnostic, DiagnosticError, register_source
from dsl.numbers import number_too_large
from dsl.parser import parse_value
from ncsn_core import layout


def parse_set(arg: str, index: int) -> tuple[tuple[str, ...], list[Value], Pos]:
    """``train.iterations=100`` → (path, [Value], key position) in a pseudo-file per argument.
    Commas outside brackets, parentheses and strings separate several values, a sweep:
    ``train.optimizer.lr=1e-4,2e-4`` → two Values; ``evaluate.metrics=[fid,kid]`` is one."""
    fname = f"<--set #{index + 1}>"
    register_source(fname, arg)
    if "=" not in arg:
        raise DiagnosticError([Diagnostic(Pos(fname, 1, 1, 1, len(arg) + 1), "--set needs key=value")])
    key, _, val = arg.partition("=")
    key_s = key.strip()
    path = tuple(key_s.split("."))
    kpos = Pos(fname, 1, 1, 1, len(key) + 1)
    if not all(p.isidentifier() for p in path):
        raise DiagnosticError(
            [Diagnostic(kpos, f"--set: '{key_s}' is not a dotted name like train.iterations")]
        )
    if not val.strip():
        raise DiagnosticError(
            [Diagnostic(Pos(fname, 1, len(key) + 2), f"--set {key_s}: missing value after '='")]
        )
    off = len(key) + 1
    values = []
    pieces = _split_top(val)
    for start, end in pieces:
        if not val[start:end].strip():
            at = Pos(fname, 1, off + start + 1, 1, off + start + 2)
            if len(pieces) > 1 and start == 0:
                what = "a comma with no value before it"
            elif end == len(val):
                what = "a comma with no value after it"
            else:
                what = "two commas with no value between them"
            raise DiagnosticError(
                [
                    Diagnostic(
                        at if start == 0 else attrs.evolve(at, col=at.col - 1, end_col=at.col),
                        f"--set {key_s}: {what}",
                        (
                            "several values (a sweep) are separated by single commas: --set "
                            f"{key_s}=1,2; a list is one value in brackets: [1, 2]",
                        ),
                    )
                ]
            )
        v = parse_value(val[start:end], fname, col_offset=off + start)
        why = number_too_large(v.value)
        if why:
            raise DiagnosticError([Diagnostic(v.pos, f"number too large: {why}")])
        values.append(v)
    return path, values, kpos


USE_PREFIX = layout.USE_PREFIX  # `--use data=digits` travels among the --set values as `use:data=digits`


def split_uses(sets: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``--use`` entries (without their prefix) and the ``--set`` entries of ``sets``."""
    uses = [s[len(USE_PREFIX) :] for s in sets if s.startswith(USE_PREFIX)]
    return uses, [s for s in sets if not s.startswith(USE_PREFIX)]


def with_uses(uses: Sequence[str] | None, sets: Sequence[str] | None) -> list[str]:
    """``--use`` and ``--set`` values as the one override sequence every command records
    (overrides.json, labels, `repro ls`/`report`/`diff` recompiling a run)."""
    return [USE_PREFIX + u.strip() for u in uses or ()] + list(sets or ())


def parse_use(arg: str, index: int) -> tuple[str, Pos, list[tuple[str, Pos]]]:
    """``data=digits`` → ("data", its position, [("digits", position)]) in the pseudo-file
    ``<--use #N>``; ``data=digits,fashion`` (with --multirun) gives several options."""
    fname = f"<--use #{index + 1}>"
    register_source(fname, arg)
    if "=" not in arg:
        raise DiagnosticError(
            [
                Diagnostic(
                    Pos(fname, 1, 1, 1, len(arg) + 1), "--use needs GROUP=OPTION, e.g. --use data=digits"
                )
            ]
        )
    key, _, val = arg.partition("=")
    group = key.strip()
    lead = len(key) - len(key.lstrip())
    gpos = Pos(fname, 1, lead + 1, 1, lead + len(group) + 1)
    if not group.isidentifier():
        raise DiagnosticError([Diagnostic(gpos, f"--use: '{group}' is not a group name")])
    options = []
    col = len(key) + 1
    for piece in val.split(","):
        name = piece.strip()
        start = col + (len(piece) - len(piece.lstrip()))
        opos = Pos(fname, 1, start + 1, 1, start + max(1, len(name)) + 1)
        if not name.isidentifier():
            what = f"'{name}' is not an option name" if name else "missing option name"
            raise DiagnosticError(
                [
                    Diagnostic(
                        opos, f"--use {group}: {what}", ("several options (with -m) are separated by commas",)
                    )
                ]
            )
        options.append((name, opos))
        col += len(piece) + 1
    return group, gpos, options


def require_multirun(sets: Sequence[str], multirun: bool) -> None:
    """Without ``--multirun`` (``-m``), a ``--set`` with several values is an error that says
    so (as Hydra: a comma outside brackets is a sweep only when a multirun is asked for).
    A ``--set`` that does not parse is left to the resolver, which reports it in full."""
    if multirun:
        return
    diags = []
    uses, sets = split_uses(sets)
    for i, arg in enumerate(uses):
        try:
            group, _, options = parse_use(arg, i)
        except DiagnosticError:
            continue
        if len(options) > 1:
            at = options[1][1]
            diags.append(
                Diagnostic(
                    Pos(at.file, 1, max(1, at.col - 1), 1, at.col),
                    f"--use {group}: several options ({len(options)}) make a sweep, which needs --multirun",
                    (f"run one per option with --multirun (-m): repro run FILE -m --use {arg}",),
                )
            )
    for i, arg in enumerate(sets):
        try:
            path, values, _ = parse_set(arg, i)
        except DiagnosticError:
            continue
        if len(values) > 1:
            key = ".".join(path)
            at = values[1].pos
            comma = Pos(at.file, 1, max(1, at.col - 1), 1, at.col)
            diags.append(
                Diagnostic(
                    comma,
                    f"--set {key}: several values ({len(values)}) make a sweep, which needs --multirun",
                    (
                        f"run one per value with --multirun (-m): repro run FILE -m --set {arg}; "
                        "a list is one value in brackets: [1, 2]",
                    ),
                )
            )
    if diags:
        raise DiagnosticError(diags)


def _split_top(text: str) -> list[tuple[int, int]]:
    """(start, end) of each part of ``text`` between commas outside brackets, parentheses and
    strings (a string's backslash escapes included)."""
    parts = []
    depth, start, i, n = 0, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append((start, i))
            start = i + 1
        i += 1
    parts.append((start, n))
    return parts
