"""The one registry of everything the `.exp` language can name.

Assembled from the built-in declarations (:mod:`ncsn_core.declarations`), the schema's fixed
blocks (:mod:`ncsn_core.schema`, kind ``block``) and third-party plug-ins: any installed
package may add components through the entry-point group ``repro.plugins``, whose entry points
name a sequence of :class:`~ncsn_core.params.Declaration` (or a module with ``DECLARATIONS``,
or a function returning them). The DSL's checker, ``repro explain`` and the generated reference
tables in ``docs/language.md`` all read this registry; nothing else lists what the language
knows. Nothing here imports torch: implementations are imported when a run builds them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ncsn_core import declarations, schema
from ncsn_core.errors import ParamError, PluginError
from ncsn_core.params import (  # noqa: F401  (re-exported: the registry's vocabulary)
    REQUIRED,
    AutoContext,
    AutoValue,
    Bool,
    Choice,
    ComponentOf,
    DataFacts,
    Declaration,
    Either,
    ExprType,
    Float,
    Int,
    ListOf,
    MetricFacts,
    Param,
    Str,
    Type,
    did_you_mean,
)
from ncsn_core.values import Call

# Kinds of component the language can name, with the title of their reference section.
# ``block`` holds the schema's fixed blocks (`experiment` fields, `train`, `sample`, `evaluate`).
KINDS: dict[str, str] = {
    "data": "`data` — datasets",
    "noise": "`noise` — noise schedules",
    "network": "`network` — score networks",
    "loss": "`loss` — training objectives",
    "stage": "`stage` — sampler stages (inside `sample`)",
    "init": "`init` — initial samples (`sample { init = ... }`)",
    "optimizer": "`optimizer` — optimizers (`train { optimizer = ... }`)",
    "metric": "`metric` — evaluation metrics (`evaluate { metrics = [...] }`)",
    "weights": "`weights` — trained weights from a file (`train { from = released(...) }`)",
    "block": "Blocks (`experiment` fields, `train`, `sample`, `evaluate`)",
}
PLUGIN_GROUP = "repro.plugins"


def load_object(path: str) -> Any:
    """``"package.module:attr"`` → the object (imports the module)."""
    mod, _, attr = path.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Component:
    """A declared component as the registry serves it: the declaration's facts, parameter
    checking (nested components included) and the lazily imported implementation."""

    def __init__(self, decl: Declaration, registry: Registry) -> None:
        self.decl = decl
        self._registry = registry
        self._builder: Callable[..., Any] | None = None

    kind = property(lambda self: self.decl.kind)
    name = property(lambda self: self.decl.name)
    params = property(lambda self: self.decl.params)
    doc = property(lambda self: self.decl.doc)
    facts = property(lambda self: self.decl.facts)
    impl = property(lambda self: self.decl.impl)

    def param(self, name: str) -> Param | None:
        return self.decl.param(name)

    @property
    def builder(self) -> Callable[..., Any]:
        """The implementation, imported on first use."""
        if self._builder is None:
            try:
                self._builder = load_object(self.decl.impl)
            except (ImportError, AttributeError) as e:
                raise PluginError(
                    f"{self.kind} {self.name}: its implementation {self.decl.impl!r} cannot be imported "
                    f"({type(e).__name__}: {e})"
                ) from None
        return self._builder

    def build(self, **kwargs: Any) -> Any:
        return self.builder(**kwargs)

    def check_params(self, given: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Check ``given`` against the declared parameters.

        Returns the full parameter dict (defaults filled in, values canonical) and a list of
        ``(param_name, message)`` errors; an unknown name's error is keyed by that name.
        """
        out: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        known = [p.name for p in self.params]
        label = f"{self.kind} {self.name}"
        for name, value in given.items():
            p = self.param(name)
            if p is None:
                hint = self._registry.elsewhere(name, self) or did_you_mean(name, known)
                errors.append((name, f"unknown parameter '{name}' for {label}{hint}"))
                continue
            try:
                out[name] = self._registry.check_nested(p.type, p.check(value))
            except ParamError as e:
                errors.append((name, f"{label}: '{name}': {e}"))
        for p in self.params:
            if p.name in out or any(n == p.name for n, _ in errors):
                continue
            if p.required:
                errors.append(("", f"{label}: missing required parameter '{p.name}' ({p.doc})"))
            else:
                # A component default (adam, uniform) is checked too, so its own defaults are filled in.
                out[p.name] = self._registry.check_nested(p.type, p.default)
        return out, errors

    def auto(self, param: str) -> Callable[..., AutoValue]:
        """The function that computes ``param = auto``, imported on first use."""
        p = self.param(param)
        if p is None or p.auto is None:
            raise ParamError(f"'{param}' cannot be auto")
        return load_object(p.auto)


class Registry:
    def __init__(self, decls: Iterable[Declaration]) -> None:
        self._by_kind: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        for d in decls:
            self.add(d)

    def add(self, d: Declaration) -> None:
        if d.kind not in self._by_kind:
            raise PluginError(f"{d.kind} {d.name!r}: unknown component kind (one of {', '.join(KINDS)})")
        if d.name in self._by_kind[d.kind]:
            raise PluginError(f"{d.kind} {d.name!r} is declared twice")
        self._by_kind[d.kind][d.name] = Component(d, self)

    def lookup(self, kind: str, name: str) -> Component:
        try:
            return self._by_kind[kind][name]
        except KeyError:
            if kind not in self._by_kind:
                raise ParamError(f"unknown kind '{kind}'{did_you_mean(kind, KINDS)}") from None
            raise ParamError(
                f"unknown {kind} '{name}'{_suggestion(kind, name, self._by_kind[kind])}"
            ) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def elsewhere(self, param: str, comp: Component) -> str:
        """``"; step_size is a parameter of sampler stages (annealed_langevin, …), not of train"``
        when ``param`` is unknown to ``comp`` but declared by other components (or ``""``): a
        misplaced parameter names the block kind where it belongs, before any did-you-mean."""
        where = []
        for kind, comps in self._by_kind.items():
            owners = [n for n, c in sorted(comps.items()) if c is not comp and c.param(param) is not None]
            if owners:
                shown = ", ".join(owners[:3]) + (", …" if len(owners) > 3 else "")
                if kind == "block":
                    where.append(f"the {shown} block{'s' if len(owners) > 1 else ''}")
                else:
                    where.append(f"{_PLURAL.get(kind, kind)} ({shown})")
        if not where:
            return ""
        here = comp.name if comp.kind == "block" else f"{comp.kind} {comp.name}"
        return f"; {param} is a parameter of {' and of '.join(where)}, not of {here}"

    def components(self, kind: str) -> list[Component]:
        return [self._by_kind[kind][n] for n in sorted(self._by_kind[kind])]

    def check_nested(self, t: Any, value: Any) -> Any:
        """Check the components named inside a value (``adam(lr = 1e-4)``, a list of metrics)."""
        if isinstance(t, ComponentOf) and isinstance(value, Call):
            comp = self.lookup(t.kind, value.name)
            params, errors = comp.check_params(dict(value.params))
            if errors:
                raise ParamError(f"in {value.name}(...): " + "; ".join(m for _, m in errors))
            return Call(value.name, tuple(sorted(params.items())))
        if isinstance(t, ListOf) and isinstance(value, tuple):
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(self.check_nested(t.item, v))
                except ParamError as e:
                    raise ParamError(f"item {i + 1}: {e}") from None
            return tuple(out)
        return value


# Each kind in the plural, for "a parameter of sampler stages (…)".
_PLURAL = {
    "data": "datasets",
    "noise": "noise schedules",
    "network": "networks",
    "loss": "losses",
    "stage": "sampler stages",
    "init": "sample inits",
    "optimizer": "optimizers",
    "metric": "metrics",
    "weights": "weights",
}

# Names that are not components but say how to get what they name (`data ffhq` → `data images`).
ALIASES: dict[str, dict[str, str]] = {"data": declarations.data.ALIASES}


def _suggestion(kind: str, name: str, known: Iterable[str]) -> str:
    """``"; <how to read it>"`` for a known alias of ``kind``, else a did-you-mean (or ``""``)."""
    alias = ALIASES.get(kind, {}).get(name.lower())
    return f"; {alias}" if alias else did_you_mean(name, known)


def _block_declarations() -> list[Declaration]:
    """The schema's fixed blocks as components of kind ``block`` (checked like any component)."""
    kinds = [schema.EXPERIMENT, *(b for b in schema.BLOCKS if not b.holds)]
    return [Declaration("block", b.name, "", b.fields, b.doc) for b in kinds]


def _plugin_declarations() -> list[Declaration]:
    out: list[Declaration] = []
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, Sequence):
                obj = obj()
            decls = getattr(obj, "DECLARATIONS", obj)
            decls = list(decls)
        except Exception as e:  # noqa: BLE001 - a broken plug-in is named, never a traceback
            raise PluginError(
                f"plug-in {ep.name} ({ep.value}, entry point group {PLUGIN_GROUP}) cannot be loaded: "
                f"{type(e).__name__}: {e}"
            ) from None
        bad = [d for d in decls if not isinstance(d, Declaration)]
        if bad:
            raise PluginError(
                f"plug-in {ep.name} ({ep.value}): expected ncsn_core.params.Declaration objects, got "
                f"{type(bad[0]).__name__}"
            )
        out += decls
    return out


_REGISTRY: Registry | None = None
_PLUGINS_LOADED = False


def get(plugins: bool = True) -> Registry:
    """The registry: built-ins and the schema's blocks, assembled once; plug-ins are added the
    first time they can matter (a name the built-ins lack, or a listing of a kind), so a file
    that names only built-ins never scans the installed packages' entry points."""
    global _REGISTRY, _PLUGINS_LOADED
    if _REGISTRY is None:
        _REGISTRY = Registry([*_block_declarations(), *declarations.ALL])
    if plugins and not _PLUGINS_LOADED:
        _PLUGINS_LOADED = True
        for d in _plugin_declarations():
            _REGISTRY.add(d)
    return _REGISTRY


def lookup(kind: str, name: str) -> Component:
    """The component ``kind name``; raises :class:`ParamError` with a did-you-mean."""
    try:
        return get(plugins=False).lookup(kind, name)
    except ParamError:
        return get().lookup(kind, name)


def names(kind: str) -> list[str]:
    return get().names(kind)


def components(kind: str) -> list[Component]:
    return get().components(kind)


def build(kind: str, name: str, params: dict[str, Any], **extra: Any) -> Any:
    """Build component ``kind name`` from checked ``params`` plus run-time arguments."""
    return lookup(kind, name).build(**params, **extra)


def metric_outputs() -> dict[str, Any]:
    """Every key a metric writes to metrics.json → its :class:`~ncsn_core.params.MetricOutput`
    (which direction is better, how to print it): the report's one source for both."""
    return {o.key: o for c in components("metric") for o in c.facts.outputs}


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of metrics.json's ``key`` is better (unknown keys: higher)."""
    o = metric_outputs().get(key)
    return o is not None and o.better == "lower"
