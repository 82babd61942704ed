"""The resolved experiment: one run's values, each with the position it was written at and a note of where it came from."""

from __future__ import annotations

from typing import Any

import attrs

from dsl.ast import Pos, Published


@attrs.define
class Entry:
    value: Any
    text: str
    pos: Pos  # the value
    key_pos: Pos  # the key
    origin: str = ""  # note: where it came from when not written in this experiment
    ref: str = ""  # note: what its references became (`= train.iterations / 1000 = 200`)

    def notes(self) -> tuple[str, ...]:
        return tuple(n for n in (self.origin, self.ref) if n)


@attrs.define
class RStage:
    name: str
    name_pos: Pos
    params: dict[str, Entry]
    origin: str = ""


@attrs.define
class RBlock:
    kind: str
    name: str | None
    pos: Pos
    params: dict[str, Entry] = attrs.Factory(dict)
    stages: list[RStage] = attrs.Factory(list)
    origin: str = ""


@attrs.define
class Resolved:
    name: str
    pos: Pos
    file: str
    fields: dict[str, Entry] = attrs.Factory(dict)
    blocks: dict[str, RBlock] = attrs.Factory(dict)
    sweeps: list[tuple[tuple[str, ...], list[Entry], Pos]] = attrs.Factory(list)
    published: list[Published] = attrs.Factory(list)
    sweep_point: dict[str, Any] = attrs.Factory(dict)  # dotted key -> raw value text
    parent: str | None = None
    refs: list[tuple[str, str]] = attrs.Factory(list)  # path -> `train.iterations / 1000 = 200`

    def clone(self) -> Resolved:
        """An independent copy, as copy.deepcopy would give, in a fraction of its time: every
        container and mutable record (Entry, RBlock, RStage) is new; what is frozen (Pos,
        Published, the parsed values: tuples and frozen attrs classes) is shared."""
        return Resolved(
            self.name,
            self.pos,
            self.file,
            {k: _entry(e) for k, e in self.fields.items()},
            {k: _block(b) for k, b in self.blocks.items()},
            [(path, [_entry(e) for e in entries], pos) for path, entries, pos in self.sweeps],
            list(self.published),
            dict(self.sweep_point),
            self.parent,
            list(self.refs),
        )


def _entry(e: Entry) -> Entry:
    return Entry(e.value, e.text, e.pos, e.key_pos, e.origin, e.ref)


def _block(b: RBlock) -> RBlock:
    return RBlock(
        b.kind,
        b.name,
        b.pos,
        {k: _entry(e) for k, e in b.params.items()},
        [RStage(s.name, s.name_pos, {k: _entry(e) for k, e in s.params.items()}, s.origin) for s in b.stages],
        b.origin,
    )
