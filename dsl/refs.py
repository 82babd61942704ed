"""References between values of an experiment (`train.iterations / 1000`): replaced by what they refer to, cycles and bad targets reported."""

from __future__ import annotations

from typing import Any

from dsl.ast import Pos
from dsl.numbers import fold_expr, number_too_large
from dsl.resolved import Entry, Resolved
from ncsn_core import registry, schema
from ncsn_core.errors import ParamError
from ncsn_core.params import REQUIRED, did_you_mean
from ncsn_core.values import AUTO, Call, Expr, Ident, value_text

BLOCK_KINDS = schema.NAMES
MAX_REF_DEPTH = 32  # values referring to values referring to values ...


def resolve_refs(res: Resolved, r: Any) -> Resolved:
    """Replace every reference to another value of the experiment (``train.iterations / 1000``)
    by what it refers to, after inheritance, ``--set`` and sweeps; notes say what it became."""
    refs = _Refs(res, r)
    for path, e in _entries(res):
        refs.entry(path, e)
    return res


def _entries(res: Resolved) -> list[tuple[str, Entry]]:
    out = [(k, e) for k, e in res.fields.items()]
    for b in res.blocks.values():
        out += [(f"{b.kind}.{k}", e) for k, e in b.params.items()]
        for st in b.stages:
            out += [(f"{b.kind}.{st.name}.{k}", e) for k, e in st.params.items()]
    return out


def _has_ref(v: Any) -> bool:
    if isinstance(v, tuple):
        return any(_has_ref(x) for x in v)
    if isinstance(v, Call):
        return any(_has_ref(x) for _, x in v.params)
    return isinstance(v, Expr) and any("." in s for s in v.symbols())


class _RefError(Exception):
    reported = False  # said once, where it happened; the values depending on it stay quiet


_FAILED = object()  # an entry whose references could not be resolved


class _Refs:
    def __init__(self, res: Resolved, r: Any) -> None:
        self.res, self.r = res, r
        self.done: dict[int, Any] = {}  # id(entry) -> resolved value
        self.stack: list[tuple[str, int]] = []  # (path, id(entry)) being resolved

    def entry(self, path: str, e: Entry) -> Any:
        """The value of ``e`` with its references replaced (errors reported; _RefError up)."""
        if id(e) in self.done:
            return self.done[id(e)]
        if not _has_ref(e.value):
            return e.value
        if any(i == id(e) for _, i in self.stack):
            chain = [p for p, _ in self.stack[[i for _, i in self.stack].index(id(e)) :]] + [path]
            raise _RefError(f"reference cycle: {' → '.join(chain)}")
        if len(self.stack) >= MAX_REF_DEPTH:
            raise _RefError(f"references nested too deeply: more than {MAX_REF_DEPTH} values referring on")
        self.stack.append((path, id(e)))
        try:
            value = self.subst(e.value)
        except _RefError as exc:
            if not exc.reported:
                self.r.err(e.pos, str(exc), *e.notes())
                exc.reported = True
            self.done[id(e)] = _FAILED
            if len(self.stack) > 1:
                raise
            return _FAILED
        finally:
            self.stack.pop()
        why = number_too_large(value)
        if why:
            self.r.err(e.pos, f"number too large: {why}", *e.notes())
        e.ref = f"{e.text} = {value_text(value)}"
        self.res.refs.append((path, e.ref))
        e.value = self.done[id(e)] = value
        return value

    def subst(self, v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(self.subst(x) for x in v)
        if isinstance(v, Call):
            return Call(v.name, tuple((k, self.subst(x)) for k, x in v.params))
        if not (isinstance(v, Expr) and _has_ref(v)):
            return v
        if v.tree[0] == "sym":  # the whole value is one reference: a number, string or bool
            return self.target(v.tree[1], arithmetic=False)
        return fold_expr(self.tree(v.tree))

    def tree(self, t: tuple) -> tuple:
        if t[0] == "sym" and "." in t[1]:
            return ("num", self.target(t[1], arithmetic=True))
        if t[0] in ("num", "sym"):
            return t
        return (t[0], *(self.tree(c) if isinstance(c, tuple) else c for c in t[1:]))

    def target(self, path: str, arithmetic: bool) -> Any:
        e, default = self.find(path)
        value = default if e is None else self.entry(path, e)
        if value is _FAILED:
            err = _RefError("")
            err.reported = True
            raise err
        if value is AUTO:
            raise _RefError(f"refers to {path}, which is auto; write the value or compute it first")
        ok = (int, float) if arithmetic else (int, float, str, bool)
        if not isinstance(value, ok) or (arithmetic and isinstance(value, bool)):
            what = "a number" if arithmetic else "a number, string or boolean"
            use = "; it cannot be used in arithmetic" if arithmetic else ""
            raise _RefError(f"refers to {path}, which is {value_text(value)}, not {what}{use}")
        return value

    def find(self, path: str) -> tuple[Entry | None, Any]:
        """The entry at ``path`` or (None, the registry's default for it)."""
        parts = path.split(".")
        head = parts[0]
        if head not in BLOCK_KINDS:
            hint = did_you_mean(head, BLOCK_KINDS)
            raise _RefError(f"unknown reference '{path}': '{head}' is not a block{hint}")
        blk = self.res.blocks.get(head)
        if blk is None:
            raise _RefError(f"refers to {path}, but the experiment has no {head} block")
        kind = schema.BY_NAME[head]
        params, owner = blk.params, (kind.holds, blk.name) if kind.holds else ("block", head)
        rest = parts[1:]
        if kind.child is not None and len(rest) == 2:
            errs = len(self.r.diags)
            st = self.r.find_stage(blk, rest[0], Pos("", 0, 0))
            del self.r.diags[errs:]
            if st is None:
                names = ", ".join(s.name for s in blk.stages) or "none"
                raise _RefError(
                    f"unknown reference '{path}': no stage '{rest[0]}' in {head} (stages: {names})"
                )
            params, owner, rest = st.params, (kind.child, st.name), rest[1:]
        if len(rest) == 2 and rest[0] in params and isinstance(params[rest[0]].value, (Call, Ident)):
            call = params[rest[0]].value
            args = dict(call.params) if isinstance(call, Call) else {}
            if rest[1] not in args:
                raise _RefError(
                    f"refers to {path}, but {call.name}(...) sets no '{rest[1]}'; write it to refer to it"
                )
            return Entry(
                args[rest[1]], value_text(args[rest[1]]), params[rest[0]].pos, params[rest[0]].key_pos
            ), None
        if len(rest) != 1:
            raise _RefError(
                f"unknown reference '{path}': refer to a value as block.name or sample.stage.name"
            )
        if rest[0] in params:
            return params[rest[0]], None
        try:
            comp = registry.lookup(*owner)
        except ParamError as exc:
            raise _RefError(f"cannot refer to {path}: {exc}") from None
        p = comp.param(rest[0])
        if p is None:
            hint = did_you_mean(rest[0], [q.name for q in comp.params])
            raise _RefError(f"unknown reference '{path}': {owner[1]} has no parameter '{rest[0]}'{hint}")
        if p.default is REQUIRED:
            raise _RefError(f"refers to {path}, which is required and not set")
        return None, p.default
