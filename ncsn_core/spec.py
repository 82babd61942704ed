"""The typed run spec: what the DSL lowers an experiment to and what the runner executes.

Frozen and hashable; :meth:`RunSpec.canonical` is its canonical JSON and the stage hashes
are SHA-256 digests of the parts each stage depends on, so the same meaning gives the same
hash whatever the whitespace, comments, field order or file that set a value. The seed and
the published numbers are not part of any hash (seeds are repeats of one run).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from ncsn_core import released_files, schema
from ncsn_core.params import AutoValue
from ncsn_core.values import to_json


def _set_params(params: Any) -> tuple[tuple[str, Any], ...]:
    """A parameter whose value is None is unset and not part of the spec (``train.from``):
    a block without it lowers, and hashes, exactly as before the parameter existed."""
    return tuple((k, v) for k, v in params if v is not None)


@attrs.frozen
class ComponentSpec:
    name: str
    params: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_set_params)

    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def to_json(self, leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:
        return {"name": self.name, "params": {k: to_json(v) for k, v in self.params if k not in leave_out}}


@attrs.frozen
class PublishedSpec:
    label: str
    values: tuple[tuple[str, float, float | None], ...]  # (metric, value, uncertainty)
    # How the paper computed them (schema.PROTOCOL keys, checked values); not hashed.
    protocol: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "values": {k: {"value": v, "error": e} for k, v, e in self.values},
        }
        if self.protocol:
            out["protocol"] = {k: to_json(v) for k, v in self.protocol}
        return out


@attrs.frozen
class RunSpec:
    experiment: str
    seed: int
    data: ComponentSpec
    noise: ComponentSpec
    network: ComponentSpec | None = None
    loss: ComponentSpec | None = None
    train: ComponentSpec | None = None
    select: ComponentSpec | None = None
    sample: ComponentSpec | None = None
    stages: tuple[ComponentSpec, ...] = ()
    evaluate: ComponentSpec | None = None
    interpolate: ComponentSpec | None = None  # NCSNv2's interpolation figure (optional)
    # Where and how to launch (schema.LAUNCHER_FIELDS): in no hash, shown by compile and spec.json.
    launcher: ComponentSpec | None = attrs.field(default=None, eq=False, hash=False)
    published: tuple[PublishedSpec, ...] = ()
    sweep: tuple[tuple[str, str], ...] = ()
    paper: str = ""
    description: str = ""
    # What each `auto` became (path, AutoValue); derived, so not part of equality.
    autos: tuple[tuple[str, AutoValue], ...] = attrs.field(default=(), eq=False, hash=False)
    # What each value that refers to others became (path, "train.iterations / 1000 = 200.0").
    refs: tuple[tuple[str, str], ...] = attrs.field(default=(), eq=False, hash=False)
    source: str = attrs.field(default="", eq=False, hash=False)
    # The experiment this one `extends` (the resolver's Resolved.parent): an ablation's
    # report compares it with its parent's run. Provenance, not meaning: in no hash.
    parent: str | None = attrs.field(default=None, eq=False, hash=False)

    @property
    def trains(self) -> bool:
        return self.network is not None and self.train is not None and self.loss is not None

    # ---- canonical forms
    def _fields(self, *stages: str) -> tuple[str, ...]:
        """The spec fields of ``stages`` (all by default) that enter its hashes and spec.json:
        an optional block (schema.optional_fields, ``select``) only when present."""
        names = (
            schema.spec_fields() if not stages else tuple(f for s in stages for f in schema.stage_fields(s))
        )
        optional = schema.optional_fields()
        return tuple(n for n in names if n not in optional or getattr(self, n) is not None)

    def _part(self, *names: str, speed: bool = False) -> dict[str, Any]:
        """The blocks ``names`` as JSON; without ``speed`` (every hash) the speed settings
        (schema.UNHASHED: how fast, not what) are left out."""
        out: dict[str, Any] = {}
        for n in names:
            v = getattr(self, n)
            if isinstance(v, tuple):  # a block's children (the sample block's stages)
                out[n] = [s.to_json() for s in v]
            else:
                leave = frozenset() if speed else schema.UNHASHED.get(n, frozenset())
                out[n] = None if v is None else v.to_json(leave)
        return out

    def weights(self) -> Any:
        """``train.from`` (a ``values.Call``, e.g. ``released(path = ..., format = ...)``) or None."""
        return None if self.train is None else self.train.get("from")

    def _released_parts(self) -> dict[str, Any]:
        """A released model's identity: the file's SHA-256 and format (ncsn_core.released), and
        the data, noise and network it is loaded into; not the loss or the training settings."""
        rest = [f for f in schema.stage_fields("train") if f not in ("loss", "train")]
        return {"released": released_files.identity(self.weights()), **self._part(*rest)}

    def train_part(self) -> dict[str, Any]:
        if self.weights() is not None:
            return self._released_parts()
        return self._part(*schema.stage_fields("train"))

    def select_part(self) -> dict[str, Any]:
        """The selection's inputs: the trained checkpoints, its own block, and the sample block's
        init, weights choice and stages it draws each candidate's samples with."""
        s = self.sample.to_json(schema.UNHASHED.get("sample", frozenset())) if self.sample else {}
        params = s.get("params", {}) if s else {}
        return {
            "train": self.train_hash(),
            **self._part(*schema.stage_fields("select")),
            "sampler": {k: params.get(k) for k in schema.SELECT_FROM_SAMPLE},
            "stages": [st.to_json() for st in self.stages],
        }

    def sample_part(self) -> dict[str, Any]:
        # With a select block the sample stage covers the selection (which covers training);
        # without one, exactly what it covered before the select stage existed.
        before = {"select": self.select_hash()} if self.select is not None else {}
        return {"train": self.train_hash(), **before, **self._part(*self._fields("sample"))}

    def eval_part(self) -> dict[str, Any]:
        return {"sample": self.sample_hash(), **self._part(*schema.stage_fields("evaluate"))}

    def interpolate_part(self) -> dict[str, Any]:
        """The interpolation figure's inputs: the trained model and its own block."""
        return {"train": self.train_hash(), **self._part(*schema.stage_fields("interpolate"))}

    def train_hash(self) -> str:
        return digest(self.train_part())

    def select_hash(self) -> str:
        return digest(self.select_part())

    def sample_hash(self) -> str:
        return digest(self.sample_part())

    def eval_hash(self) -> str:
        return digest(self.eval_part())

    def interpolate_hash(self) -> str:
        return digest(self.interpolate_part())

    def hash(self) -> str:
        """The run's identity: everything but the seed, the name and published numbers."""
        if self.weights() is not None:
            later = [f for f in self._fields() if f not in schema.stage_fields("train")]
            return digest({**self._released_parts(), **self._part(*later)})
        return digest(self._part(*self._fields()))

    def canonical(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "paper": self.paper,
            "description": self.description,
            "seed": self.seed,
            "hash": self.hash(),
            "train_hash": self.train_hash(),
            **({"select_hash": self.select_hash()} if self.select is not None else {}),
            "sample_hash": self.sample_hash(),
            "eval_hash": self.eval_hash(),
            **({"interpolate_hash": self.interpolate_hash()} if self.interpolate is not None else {}),
            **self._part(*self._fields(), speed=True),
            **({} if self.launcher is None else {"launcher": self.launcher.to_json()}),
            "published": [p.to_json() for p in self.published],
            "sweep": dict(self.sweep),
            **({} if self.parent is None else {"parent": self.parent}),
            "auto": {k: {"value": to_json(a.value), "explanation": a.explanation} for k, a in self.autos},
            **({} if self.weights() is None else {"released": self._released_description()}),
            **({"references": dict(self.refs)} if self.refs else {}),
        }

    def _released_description(self) -> dict[str, Any]:
        return released_files.description(self.weights())

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), indent=2, sort_keys=False, ensure_ascii=False)


def canonical_dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(canonical_dumps(obj).encode()).hexdigest()[:n]
