"""Parameters, their types, and declarations: what the language can name, without building it.

A :class:`Declaration` says what a component is called, which parameters it takes (typed,
with defaults and docs), where its implementation lives (``"module:function"``, imported only
when a run builds it) and the facts the rest of the system needs without building it (a
dataset's shape, a metric's direction and format). Nothing here imports torch: ``repro
check``, ``fmt``, ``explain``, ``compile --no-auto`` and ``report`` stay light.

Values reach parameters already parsed into the language-neutral objects of
:mod:`ncsn_core.values` and leave in canonical form.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ncsn_core.errors import ParamError
from ncsn_core.values import AUTO, Call, Expr, Ident


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
        try:
            value = float(value)
        except OverflowError:
            raise ParamError("number too large: it is beyond a float64 (1.798e+308)") from None
        if self.exclusive_min and self.min is not None and value <= self.min:
            raise ParamError(f"must be > {self.min:g}, got {value:g}")
        _range(value, self.min, self.max)
        return value

    def describe(self) -> str:
        if self.exclusive_min and self.min is not None:
            lo = f"> {self.min:g}"
            return "float (" + lo + (f", ≤ {self.max:g}" if self.max is not None else "") + ")"
        return "float" + _range_text(self.min, self.max)


class _Exactly(Type):
    """A value of one Python type, taken as it is (``expected`` names it in errors)."""

    python: type = object
    expected, name = "", ""

    def check(self, value: Any) -> Any:
        if not isinstance(value, self.python):
            raise ParamError(f"expected {self.expected}, got {_type_name(value)}")
        return value

    def describe(self) -> str:
        return self.name


@attrs.frozen
class Bool(_Exactly):
    python, expected, name = bool, "true or false", "bool"


@attrs.frozen
class Str(_Exactly):
    python, expected, name = str, "a string", "string"


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
    """A component of another kind: ``adam`` or ``adam(lr = 1e-4)``. Here only the form is
    checked; the registry checks the named component and its arguments
    (:meth:`ncsn_core.registry.Component.check_params`)."""

    kind: str

    def check(self, value: Any) -> Call:
        if isinstance(value, Ident):
            value = Call(value.name, ())
        if isinstance(value, str):
            value = Call(value, ())
        if not isinstance(value, Call):
            raise ParamError(
                f"expected a {self.kind} (see `repro explain {self.kind}`), got {_type_name(value)}"
            )
        return value

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
    # Where the function ``(ctx: AutoContext) -> AutoValue`` lives that computes the value when
    # the user writes ``auto`` (NCSNv2 Techniques 1, 2, 4), as "module:function"; imported only
    # when an auto value is computed.
    auto: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        if value is AUTO:
            if self.auto is None:
                try:  # a choice named "auto" (train.micro_batch, data_on_device...): bare auto is it
                    return self.type.check("auto")
                except ParamError:
                    raise ParamError(f"'{self.name}' cannot be auto") from None
            return AUTO
        return self.type.check(value)


# --------------------------------------------------------------------------- declarations
@attrs.frozen
class DataFacts:
    """What a dataset is, known from its parameters alone (no file read, no download)."""

    shape: Callable[[dict[str, Any]], tuple[int, ...]]  # per-sample shape from the parameters
    modality: str = "image"  # image | points
    labels: bool = False  # class labels (the domain classifier's metrics need them)
    density: bool = False  # a known density: exact scores and exact samples (toy mixtures)


@attrs.frozen
class NoiseFacts:
    """The σ ladder a noise schedule's parameters give, computed without torch, so the checker
    can evaluate loss weights over every σ and judge sampler step sizes before anything runs.
    ``sigmas(params)`` returns σ₁ > … > σ_L (float64 arithmetic; equal to the run's ladder to
    rounding) or raises :class:`ParamError` for an impossible ladder."""

    sigmas: Callable[[dict[str, Any]], list[float]] | None = None


@attrs.frozen
class StageFacts:
    """``annealed``: the stage runs Alg. 1's α_i = ε·σ_i²/σ_L² over the ladder (its
    ``step_size`` is ε), so the checker can warn when the first level's step is unstable."""

    annealed: bool = False


@attrs.frozen
class MetricOutput:
    key: str  # the key in metrics.json
    better: str  # "lower" or "higher"
    fmt: str = ".4g"  # how the report prints it


@attrs.frozen
class MetricFacts:
    """A metric's outputs (direction and format, for the report) and what data it needs."""

    outputs: tuple[MetricOutput, ...]
    needs: str = "image"  # image | labels | density


@attrs.frozen
class Declaration:
    """One component the language can name. ``impl`` is ``"module:function"``: the builder,
    called with the checked parameters (plus run-time arguments such as ``data``), or for a
    metric the backend that computes every metric declared with the same ``impl`` at once."""

    kind: str
    name: str
    impl: str
    params: tuple[Param, ...] = ()
    doc: str = ""
    facts: Any = None

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


def declare(
    kind: str, name: str, impl: str, *, params: Iterable[Param] = (), doc: str = "", facts: Any = None
) -> Declaration:
    return Declaration(kind, name, impl, tuple(params), doc, facts)


@attrs.define
class AutoContext:
    """What an ``auto`` resolver may look at.

    ``params``: the other (already checked) parameters of the same component;
    ``resolved(block, key)``: a resolved value of an earlier block (``"noise", "sigma_max"``);
    ``shape``: the data's per-sample shape, from its declaration (no data read);
    ``data()``: the experiment's built dataset, built lazily once (Technique 1 reads it);
    ``cache_dir``: where expensive results may be cached, keyed by dataset identity.
    """

    params: dict[str, Any]
    resolved: Callable[[str, str], Any]
    data: Callable[[], Any]
    shape: tuple[int, ...] | None = None
    cache_dir: Any = None
