"""The one registry of everything the `.exp` language can name.

Each component (a dataset, a noise schedule, a loss, a network, a sampler stage, an
initialiser, an optimizer, a metric) is one builder function registered with
:func:`register`, declaring its parameters as :class:`Param` objects. The DSL's checker,
``repro explain`` and the generated reference tables in ``docs/language.md`` all read this
registry; nothing else lists what the language knows.

Values reach builders already checked and in canonical form (see :mod:`ncsn_core.values`):
numbers, strings, booleans, tuples, :class:`~ncsn_core.values.Call` for ``adam(lr = 1e-3)``
and :class:`~ncsn_core.values.Expr` trees for ``sigma ** 2``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ncsn_core.values import AUTO, Call, Expr, Ident

# Kinds of component that the language can name. ``block`` holds the fixed-schema blocks
# (``train``, ``sample``, ``evaluate``) and ``experiment`` (top-level fields such as seed).
KINDS = ("data", "noise", "network", "loss", "stage", "init", "optimizer", "metric", "block")


class ParamError(ValueError):
    """A value that does not fit a parameter's type or range (message is user-facing)."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# --------------------------------------------------------------------------- types
class Type:
    """A parameter type: checks a parsed value and returns its canonical form."""

    def check(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Ident):
        return f"the name '{value.name}'"
    if isinstance(value, Call):
        return f"a call '{value.name}(...)'"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Expr):
        return "an expression"
    if value is AUTO:
        return "'auto'"
    return type(value).__name__


@attrs.frozen
class Int(Type):
    min: int | None = None
    max: int | None = None

    def check(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamError(f"expected an integer, got {_type_name(value)}")
        _range(value, self.min, self.max)
        return value

    def describe(self) -> str:
        return "int" + _range_text(self.min, self.max)


@attrs.frozen
class Float(Type):
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"expected a number, got {_type_name(value)}")
        value = float(value)
        if self.exclusive_min and self.min is not None and value <= self.min:
            raise ParamError(f"must be > {self.min:g}, got {value:g}")
        _range(value, self.min, self.max)
        return value

    def describe(self) -> str:
        if self.exclusive_min and self.min is not None:
            lo = f"> {self.min:g}"
            return "float (" + lo + (f", ≤ {self.max:g}" if self.max is not None else "") + ")"
        return "float" + _range_text(self.min, self.max)


@attrs.frozen
class Bool(Type):
    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"expected true or false, got {_type_name(value)}")
        return value

    def describe(self) -> str:
        return "bool"


@attrs.frozen
class Str(Type):
    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ParamError(f"expected a string, got {_type_name(value)}")
        return value

    def describe(self) -> str:
        return "string"


@attrs.frozen
class Choice(Type):
    """One of a fixed set of names, written bare (``dequantize = uniform``) or quoted."""

    options: tuple[str, ...]

    def check(self, value: Any) -> str:
        name = value.name if isinstance(value, Ident) else value
        if not isinstance(name, str):
            raise ParamError(f"expected one of {_or(self.options)}, got {_type_name(value)}")
        if name not in self.options:
            raise ParamError(f"'{name}' is not one of {_or(self.options)}{did_you_mean(name, self.options)}")
        return name

    def describe(self) -> str:
        return " | ".join(self.options)


@attrs.frozen
class ListOf(Type):
    item: Type
    min_len: int = 0

    def check(self, value: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]  # a single item where a list is expected is a one-item list
        if len(value) < self.min_len:
            raise ParamError(f"expected at least {self.min_len} item(s), got {len(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item.check(v))
            except ParamError as e:
                raise ParamError(f"item {i + 1}: {e}") from None
        return tuple(out)

    def describe(self) -> str:
        return f"list of {self.item.describe()}"


@attrs.frozen
class Either(Type):
    """The first of several types that accepts the value."""

    options: tuple[Type, ...]

    def check(self, value: Any) -> Any:
        errors = []
        for t in self.options:
            try:
                return t.check(value)
            except ParamError as e:
                errors.append(str(e))
        raise ParamError(" or ".join(dict.fromkeys(errors)))

    def describe(self) -> str:
        return " or ".join(t.describe() for t in self.options)


@attrs.frozen
class ExprType(Type):
    """A number or an arithmetic expression over the given symbols (``sigma ** 2``)."""

    symbols: tuple[str, ...]

    def check(self, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, Ident):
            value = Expr(("sym", value.name))
        if not isinstance(value, Expr):
            raise ParamError(
                f"expected a number or an expression in {_or(self.symbols)}, got {_type_name(value)}"
            )
        unknown = sorted(value.symbols() - set(self.symbols))
        if unknown:
            raise ParamError(
                f"unknown symbol '{unknown[0]}' in expression; it may use {_or(self.symbols)}"
                + did_you_mean(unknown[0], self.symbols)
            )
        return value

    def describe(self) -> str:
        return "expression in " + ", ".join(self.symbols)


@attrs.frozen
class ComponentOf(Type):
    """A component of another kind: ``adam`` or ``adam(lr = 1e-4)``; checked recursively."""

    kind: str

    def check(self, value: Any) -> Call:
        if isinstance(value, Ident):
            value = Call(value.name, ())
        if isinstance(value, str):
            value = Call(value, ())
        if not isinstance(value, Call):
            raise ParamError(
                f"expected a {self.kind} such as {_or(names(self.kind)[:3])}, got {_type_name(value)}"
            )
        comp = lookup(self.kind, value.name)
        params, errors = comp.check_params(dict(value.params))
        if errors:
            raise ParamError(f"in {value.name}(...): " + "; ".join(m for _, m in errors))
        return Call(value.name, tuple(sorted(params.items())))

    def describe(self) -> str:
        return f"{self.kind} (see `repro explain {self.kind}`)"


def _range(v: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and v < lo:
        raise ParamError(f"must be ≥ {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        raise ParamError(f"must be ≤ {hi:g}, got {v:g}")


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" (≥ {lo:g})"
    if lo is None:
        return f" (≤ {hi:g})"
    return f" ({lo:g} … {hi:g})"


def _or(options: Iterable[str]) -> str:
    opts = [f"'{o}'" for o in options]
    if len(opts) <= 1:
        return "".join(opts)
    return ", ".join(opts[:-1]) + " or " + opts[-1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# --------------------------------------------------------------------------- params
@attrs.frozen
class AutoValue:
    """What an ``auto`` parameter became, and why (shown by ``repro compile``)."""

    value: Any
    explanation: str
    seconds: float = 0.0


@attrs.frozen
class Param:
    name: str
    type: Type
    default: Any = REQUIRED
    doc: str = ""
    # A function ``(ctx) -> AutoValue`` that computes the value when the user writes ``auto``
    # (NCSNv2 Techniques 1, 2, 4). ``ctx`` is a :class:`AutoContext`.
    auto: Callable[..., AutoValue] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        if value is AUTO:
            if self.auto is None:
                raise ParamError(f"'{self.name}' cannot be auto")
            return AUTO
        return self.type.check(value)


@attrs.frozen
class Component:
    kind: str
    name: str
    builder: Callable[..., Any]
    params: tuple[Param, ...]
    doc: str
    implemented: bool = True

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def check_params(self, given: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Check ``given`` against the declared parameters.

        Returns the full parameter dict (defaults filled in, values canonical) and a list of
        ``(param_name, message)`` errors; an unknown name's error is keyed by that name.
        """
        out: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        known = [p.name for p in self.params]
        for name, value in given.items():
            p = self.param(name)
            if p is None:
                errors.append(
                    (
                        name,
                        f"unknown parameter '{name}' for {self.kind} {self.name}{did_you_mean(name, known)}",
                    )
                )
                continue
            try:
                out[name] = p.check(value)
            except ParamError as e:
                errors.append((name, f"{self.kind} {self.name}: '{name}': {e}"))
        for p in self.params:
            if p.name in out or any(n == p.name for n, _ in errors):
                continue
            if p.required:
                errors.append(
                    ("", f"{self.kind} {self.name}: missing required parameter '{p.name}' ({p.doc})")
                )
            else:
                # A component default (adam, uniform) is checked too, so its own defaults are filled in.
                out[p.name] = p.type.check(p.default) if isinstance(p.default, Call) else p.default
        return out, errors


_REGISTRY: dict[str, dict[str, Component]] = {k: {} for k in KINDS}


def register(
    kind: str, name: str, *, params: Iterable[Param] = (), doc: str = "", implemented: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make ``fn`` the builder of component ``kind name``.

    ``implemented=False`` registers a component the checker validates but whose builder
    raises a clear "not implemented yet" when a run reaches it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} registered twice")
        _REGISTRY[kind][name] = Component(
            kind, name, fn, tuple(params), doc or (fn.__doc__ or "").strip().split("\n")[0], implemented
        )
        return fn

    return deco


def lookup(kind: str, name: str) -> Component:
    """The component ``kind name``; raises :class:`ParamError` with a did-you-mean."""
    load_all()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ParamError(f"unknown {kind} '{name}'{did_you_mean(name, _REGISTRY[kind])}") from None


def names(kind: str) -> list[str]:
    load_all()
    return sorted(_REGISTRY[kind])


def components(kind: str) -> list[Component]:
    load_all()
    return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]


_LOADED = False


def load_all() -> None:
    """Import every module that registers components (idempotent)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import ncsn_core.components  # noqa: F401  (registers everything)


@attrs.define
class AutoContext:
    """What an ``auto`` resolver may look at.

    ``params``: the other (already checked) parameters of the same component;
    ``resolved(block, key)``: a resolved value of an earlier block (``"noise", "sigmas"``);
    ``data()``: the experiment's :class:`~ncsn_core.data.DataSource`, built lazily once;
    ``cache_dir``: where expensive results may be cached, keyed by dataset identity.
    """

    params: dict[str, Any]
    resolved: Callable[[str, str], Any]
    data: Callable[[], Any]
    cache_dir: Any = None
