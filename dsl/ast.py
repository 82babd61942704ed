"""Syntax tree of a `.exp` file; every node keeps its source position."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Pos:
    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@attrs.frozen
class Value:
    """A parsed value: ``value`` is the language-neutral object (see ncsn_core.values);
    ``text`` its canonical spelling (numbers as written, canonical spacing)."""

    value: Any
    text: str
    pos: Pos
    items: tuple[Value, ...] = ()  # list items, for positioned errors in sweeps


@attrs.frozen
class Assign:
    path: tuple[str, ...]
    value: Value
    pos: Pos  # position of the key


@attrs.frozen
class Stage:
    name: str
    items: tuple[Assign, ...]
    pos: Pos
    name_pos: Pos
    end_line: int = 0


@attrs.frozen
class Block:
    kind: str
    name: str | None
    items: tuple[Assign | Stage, ...]
    pos: Pos
    name_pos: Pos | None
    end_line: int = 0


@attrs.frozen
class Sweep:
    path: tuple[str, ...]
    value: Value
    pos: Pos


@attrs.frozen
class PubEntry:
    name: str
    value: float
    error: float | None
    text: str
    pos: Pos


@attrs.frozen
class PubProtocol:
    """``protocol { samples = 50k, reference = train, ... }`` inside a ``published`` block:
    how the paper computed its numbers (keys: ncsn_core.schema.PROTOCOL)."""

    items: tuple[Assign, ...]
    pos: Pos
    end_line: int = 0


@attrs.frozen
class Published:
    label: str
    entries: tuple[PubEntry, ...]
    pos: Pos
    end_line: int = 0
    protocol: PubProtocol | None = None


@attrs.frozen
class Use:
    """``use GROUP = OPTION`` in an experiment body: the option's items applied at this place."""

    group: str
    option: str
    pos: Pos  # the `use` keyword
    group_pos: Pos
    option_pos: Pos


@attrs.frozen
class Option:
    """One named alternative of a group: a fragment of an experiment body."""

    name: str
    body: tuple[Assign | Block | Sweep | Published, ...]
    pos: Pos  # its name
    end_line: int = 0


@attrs.frozen
class Group:
    """``group NAME { OPTION { ... } ... }``: named alternatives an experiment chooses with ``use``."""

    name: str
    options: tuple[Option, ...]
    pos: Pos  # its name
    end_line: int = 0
    keyword_line: int = 0


@attrs.frozen
class Experiment:
    name: str
    extends: str | None
    body: tuple[Assign | Block | Sweep | Published | Use, ...]
    pos: Pos
    extends_pos: Pos | None
    end_line: int = 0


@attrs.frozen
class Import:
    path: str
    pos: Pos


@attrs.frozen
class Comment:
    line: int
    col: int
    text: str


@attrs.frozen
class Module:
    file: str
    source: str
    imports: tuple[Import, ...]
    experiments: tuple[Experiment, ...]
    comments: tuple[Comment, ...] = ()
    order: tuple[Import | Experiment | Group, ...] = ()  # top-level items in source order
    groups: tuple[Group, ...] = ()
