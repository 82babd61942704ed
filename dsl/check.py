"""Check resolved experiments against the registry, compute `auto` values, lower to RunSpec.

Every problem of every experiment is collected before anything is raised, so a user sees
all the semantic errors of a file at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from dsl.ast import Published
from dsl.errors import Diagnostic, DiagnosticError
from dsl.resolve import Entry, RBlock, Resolved
from ncsn_core import registry, schema
from ncsn_core.declarations.samplers import unstable_step
from ncsn_core.errors import ParamError
from ncsn_core.params import AutoContext, AutoValue, ExprType, NoiseFacts, did_you_mean
from ncsn_core.registry import Component
from ncsn_core.spec import ComponentSpec, PublishedSpec, RunSpec
from ncsn_core.values import AUTO, Expr

MAX_LEVELS = 100_000  # noise levels a ladder may have (the papers: at most 2311)


class _Checker:
    def __init__(self, res: Resolved, compute_auto: bool, data_cache: dict[str, Any]) -> None:
        self.res = res
        self.compute_auto = compute_auto
        self.diags: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.autos: list[tuple[str, AutoValue]] = []
        self.data_cache = data_cache

    def err(self, pos: Any, msg: str, notes: tuple[str, ...] = ()) -> None:
        self.diags.append(Diagnostic(pos, msg, notes))

    def warn(self, pos: Any, msg: str, notes: tuple[str, ...] = ()) -> None:
        self.warnings.append(Diagnostic(pos, msg, notes, severity="warning"))

    def params(self, comp: Component, given: dict[str, Entry], where: str) -> dict[str, Any]:
        raw = {k: e.value for k, e in given.items()}
        out, errors = comp.check_params(raw)
        for name, msg in errors:
            e = given.get(name)
            if e is None:
                self.err(self._block_pos(where), msg)
            elif msg.startswith("unknown parameter"):
                self.err(e.key_pos, msg, e.notes())
            else:
                self.err(e.pos, msg, e.notes())
        return out

    def _block_pos(self, where: str) -> Any:
        b = self.res.blocks.get(where.split(".")[0])
        return b.pos if b is not None else self.res.pos

    def component(self, kind: str, blk: RBlock) -> tuple[Component | None, dict[str, Any]]:
        try:
            comp = registry.lookup(kind, blk.name or "")
        except ParamError as e:
            self.err(
                blk.pos, str(e), ((blk.origin,) if blk.origin else ()) + (f"see `repro explain {kind}`",)
            )
            return None, {}
        return comp, self.params(comp, blk.params, kind)

    def run(self) -> RunSpec | None:
        r = self.res
        fields = self.params(registry.lookup("block", "experiment"), r.fields, "experiment")
        # Every block of the schema: (component or the fixed block's schema, checked params).
        comps: dict[str, tuple[Component | None, dict[str, Any]]] = {}
        children: dict[str, list[tuple[Component | None, dict[str, Any], Any]]] = {}
        for b in schema.BLOCKS:
            blk = r.blocks.get(b.name)
            if blk is None:
                if b.required:
                    self.err(r.pos, f"experiment '{r.name}' has no {b.name} block")
                elif b.default_with is not None and b.default_with in r.blocks:
                    comps[b.name] = self.fixed(b.name, {})
                continue
            for other in b.needs:
                if other not in r.blocks:
                    self.err(*self.missing(b, other))
            if b.default_with is not None and b.default_with not in r.blocks:
                continue  # nothing to apply it to (`train` without a network)
            comps[b.name] = self.component(b.holds, blk) if b.holds else self.fixed(b.name, blk.params)
            if b.child is not None:
                children[b.name] = self.children(b.child, blk)
        published = self.published()
        if self.diags:
            return None
        # ---- auto values, in schema order (noise: σ_max, then L), then the children (stages)
        resolved: dict[tuple[str, str], Any] = {}
        data_comp, data_params = comps["data"]
        assert data_comp is not None
        data_key = repr((data_comp.name, sorted(data_params.items(), key=lambda kv: kv[0])))
        shape = tuple(data_comp.facts.shape(data_params)) if data_comp.facts is not None else None

        def data() -> Any:
            if data_key not in self.data_cache:
                self.data_cache[data_key] = data_comp.build(**data_params)
            return self.data_cache[data_key]

        def lookup_resolved(block: str, key: str) -> Any:
            return resolved[(block, key)]

        for b in schema.BLOCKS:
            comp, params = comps.get(b.name, (None, {}))
            if comp is None or not b.holds:
                continue
            self.fill_autos(comp, params, f"{b.name}.", r.blocks[b.name].params, lookup_resolved, data, shape)
            for k, v in params.items():
                resolved[(b.name, k)] = v
        if self.diags:
            return None  # a failed noise auto would only cascade into the stages' autos
        for kids in children.values():
            for comp, params, st in kids:
                assert comp is not None
                self.fill_autos(comp, params, f"sample.{st.name}.", st.params, lookup_resolved, data, shape)
        if self.diags:
            return None
        self.validate(comps, children)
        self.selection(comps)
        if self.diags:
            return None
        # ---- lowering: one run spec field per block, one per block's children
        lowered: dict[str, Any] = {}
        for b in schema.BLOCKS:
            if b.name in comps:
                comp, params = comps[b.name]
                if not b.fill_defaults:  # only what the file states (the launcher: later sources fill in)
                    params = {k: v for k, v in params.items() if k in self.res.blocks[b.name].params}
                lowered[b.name] = ComponentSpec(comp.name if b.holds else b.name, _sorted(params))
            if b.child is not None:
                lowered[b.child_field] = tuple(
                    ComponentSpec(c.name, _sorted(p)) for c, p, _ in children.get(b.name, ()) if c is not None
                )
        return RunSpec(
            experiment=r.name,
            seed=fields["seed"],
            paper=fields["paper"],
            description=fields["description"],
            **lowered,
            published=published,
            sweep=tuple(sorted(r.sweep_point.items())),
            autos=tuple(self.autos),
            refs=tuple(r.refs),
            source=r.file,
            parent=r.parent,
        )

    # ---- values that pass their types but cannot run, judged over the σ ladder
    def validate(
        self,
        comps: dict[str, tuple[Component | None, dict[str, Any]]],
        children: dict[str, list[tuple[Component | None, dict[str, Any], Any]]],
    ) -> None:
        noise, nparams = comps.get("noise", (None, {}))
        facts = getattr(noise, "facts", None)
        if noise is None or not isinstance(facts, NoiseFacts) or facts.sigmas is None:
            return
        if any(nparams.get(k) is AUTO for k in ("sigma_max", "sigma_min", "levels")):
            return  # `repro check` leaves auto values uncomputed
        nblk = self.res.blocks["noise"]
        levels = nparams.get("levels")
        if isinstance(levels, int) and levels > MAX_LEVELS:
            e = nblk.params.get("levels")
            self.err(
                e.pos if e else nblk.pos,
                f"noise {noise.name}: 'levels' = {levels:,} is more than {MAX_LEVELS:,} noise levels; "
                "neither the checks over the σ ladder nor a run would finish",
                e.notes() if e else (),
            )
            return
        try:
            sigmas = facts.sigmas(nparams)
        except ParamError as e:
            where = next((nblk.params[k] for k in ("sigma_min", "sigma_max") if k in nblk.params), None)
            self.err(
                where.pos if where else nblk.pos, f"noise {noise.name}: {e}", where.notes() if where else ()
            )
            return
        for b in schema.BLOCKS:  # expressions in σ (loss weights) must be finite on every level
            comp, params = comps.get(b.name, (None, {}))
            if comp is None or not b.holds:
                continue
            for p in comp.params:
                v = params.get(p.name)
                if isinstance(p.type, ExprType) and "sigma" in p.type.symbols and isinstance(v, Expr):
                    self.finite_on_ladder(comp, p.name, v, sigmas, self.res.blocks[b.name])
        for kids in children.values():
            for comp, params, st in kids:
                if comp is not None and getattr(comp.facts, "annealed", False):
                    self.step_stability(comp, params, st, sigmas)

    def selection(self, comps: dict[str, tuple[Component | None, dict[str, Any]]]) -> None:
        """Checkpoint retention and selection: ``sample.checkpoint = best`` needs a select block;
        ``train.keep_every`` keeps checkpoints that are written; ``select.from`` ≤ ``select.to``."""

        def entry(block: str, key: str) -> tuple[Any, tuple[str, ...]]:
            blk = self.res.blocks.get(block)
            e = blk.params.get(key) if blk is not None else None
            return (e.pos, e.notes()) if e is not None else (self._block_pos(block), ())

        sample = comps.get("sample", (None, {}))[1]
        released = comps.get("train", (None, {}))[1].get("from") is not None
        if released and "select" in comps:
            # One released checkpoint, nothing to choose between: a select block inherited from
            # the trained experiment (papers/*_released.exp extend them) is not lowered.
            del comps["select"]
        if "select" in comps and sample.get("checkpoint", "last") != "best":
            # Nothing samples the chosen checkpoint: the block is not lowered (no select stage, no
            # hash), e.g. an inpainting experiment extending a file that selects by FID and
            # sampling its last checkpoint, as the official inpainting did. Written here: a warning.
            blk = self.res.blocks.get("select")
            if blk is not None and not blk.origin:
                self.warn(
                    blk.pos,
                    f"this select block is not used: sample.checkpoint = {sample.get('checkpoint', 'last')}, "
                    "not best (only `sample { checkpoint = best }` samples the checkpoint it chooses)",
                )
            del comps["select"]
        if sample.get("checkpoint") == "best" and "select" not in comps:
            pos, notes = entry("sample", "checkpoint")
            self.err(
                pos,
                "sample.checkpoint = best samples the checkpoint a select block chose, but this "
                "experiment has no select block; add e.g. `select { metric = fid, samples = 1000 }` "
                "(and train.keep_every to keep its candidates), or use last or a step"
                + (
                    "; a released checkpoint (train.from) has nothing to select: use last" if released else ""
                ),
                notes,
            )
        train = comps.get("train", (None, {}))[1]
        every, ck = train.get("keep_every"), train.get("checkpoint_every")
        if isinstance(every, int) and isinstance(ck, int) and every % ck:
            pos, notes = entry("train", "keep_every")
            self.err(
                pos,
                f"train.keep_every = {every} is not a multiple of checkpoint_every = {ck}: no "
                "checkpoint is written at those steps",
                notes,
            )
        select = comps.get("select", (None, {}))[1]
        lo, hi = select.get("from"), select.get("to")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            pos, notes = entry("select", "from")
            self.err(
                pos, f"select.from = {lo} is after select.to = {hi}: no checkpoint to choose from", notes
            )

    def finite_on_ladder(self, comp: Component, name: str, v: Expr, sigmas: list[float], blk: RBlock) -> None:
        for i, sigma in enumerate(sigmas):
            try:
                x = v.evaluate(sigma=sigma)
                bad = "" if isinstance(x, (int, float)) and math.isfinite(x) else f"is {x}"
            except (ArithmeticError, ValueError) as exc:
                bad = f"cannot be computed ({exc})"
            if bad:
                e = blk.params.get(name)
                self.err(
                    e.pos if e else blk.pos,
                    f"{comp.kind} {comp.name}: '{name}' = {v.text()} {bad} at σ = {sigma:g} "
                    f"(level {i + 1} of {len(sigmas)}); it must be a finite number on every level",
                    e.notes() if e else (),
                )
                return

    def step_stability(self, comp: Component, params: dict[str, Any], st: Any, sigmas: list[float]) -> None:
        eps = params.get("step_size")
        why = unstable_step(eps, sigmas) if isinstance(eps, float) else ""
        if why:
            e = st.params.get("step_size")
            self.warn(
                e.pos if e else st.name_pos,
                f"stage {comp.name} will likely diverge: {why}",
                e.notes() if e else (),
            )

    def fixed(self, name: str, given: dict[str, Entry]) -> tuple[Component, dict[str, Any]]:
        comp = registry.lookup("block", name)
        return comp, self.params(comp, given, name)

    def children(self, kind: str, blk: RBlock) -> list[tuple[Component | None, dict[str, Any], Any]]:
        if not blk.stages:
            self.err(
                blk.pos, f"the {blk.kind} block has no {kind}; add e.g. `{kind} annealed_langevin {{ }}`"
            )
        out: list[tuple[Component | None, dict[str, Any], Any]] = []
        for st in blk.stages:
            try:
                comp = registry.lookup(kind, st.name)
            except ParamError as e:
                self.err(st.name_pos, str(e), (f"see `repro explain {kind}`",))
                out.append((None, {}, st))
                continue
            out.append((comp, self.params(comp, st.params, blk.kind), st))
        return out

    def missing(self, b: schema.BlockKind, other: str) -> tuple[Any, str]:
        """The error for block ``b`` present without the block ``other`` it needs."""
        r = self.res
        if schema.BY_NAME[other].holds and schema.BY_NAME[b.name].holds:
            return r.pos, f"experiment '{r.name}' has a {b.name} but no {other} block"
        return r.blocks[b.name].pos, f"{b.name} needs {other}: add a {other} block"

    def fill_autos(
        self,
        comp: Component,
        params: dict[str, Any],
        prefix: str,
        given: dict[str, Entry],
        lookup_resolved: Callable[[str, str], Any],
        data: Callable[[], Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        for p in comp.params:  # declaration order: a later auto may use an earlier one
            if params.get(p.name) is not AUTO:
                continue
            if not self.compute_auto:
                continue
            e = given.get(p.name)
            t0 = time.perf_counter()
            try:
                av = comp.auto(p.name)(
                    AutoContext(params=params, resolved=lookup_resolved, data=data, shape=shape)
                )
            except Exception as exc:  # a failing technique is the user's problem to see, with context
                self.err(e.pos if e else self.res.pos, f"cannot compute {prefix}{p.name} = auto: {exc}")
                return
            av = AutoValue(p.type.check(av.value), av.explanation, av.seconds or time.perf_counter() - t0)
            params[p.name] = av.value
            self.autos.append((prefix + p.name, av))

    def published(self) -> tuple[PublishedSpec, ...]:
        out = []
        for p in self.res.published:
            values = tuple((e.name, e.value, e.error) for e in p.entries)
            out.append(PublishedSpec(p.label, values, self.protocol(p)))
        return tuple(out)

    def protocol(self, p: Published) -> tuple[tuple[str, Any], ...]:
        """A published block's ``protocol { }``, checked against schema.PROTOCOL."""
        if p.protocol is None:
            return ()
        fields = {f.name: f for f in schema.PROTOCOL.fields}
        out: dict[str, Any] = {}
        for a in p.protocol.items:
            key = ".".join(a.path)
            f = fields.get(key)
            if f is None:
                self.err(
                    a.pos,
                    f"unknown protocol key '{key}'{did_you_mean(key, schema.PROTOCOL_KEYS)}",
                    (f"protocol keys are: {', '.join(schema.PROTOCOL_KEYS)}",),
                )
                continue
            if key in out:
                self.err(a.pos, f"duplicate protocol key '{key}'")
                continue
            try:
                out[key] = f.type.check(a.value.value)
            except ParamError as e:
                self.err(a.value.pos, f"protocol.{key}: {e}")
        return tuple(out.items())


def _sorted(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def check(
    resolved: Sequence[Resolved],
    *,
    compute_auto: bool = True,
    data_cache: dict[str, Any] | None = None,
    warnings: list[Diagnostic] | None = None,
) -> list[RunSpec]:
    """Check and lower every resolved experiment; raise all diagnostics together. Warnings
    (values that will likely fail at run time) are appended to ``warnings``. An experiment with
    errors does not stop the others: the raised :class:`DiagnosticError` carries the specs that
    compiled as ``.specs``."""
    diags: list[Diagnostic] = []
    specs: list[RunSpec] = []
    cache = {} if data_cache is None else data_cache
    seen: set[tuple[str, str]] = set()
    for res in resolved:
        c = _Checker(res, compute_auto, cache)
        spec = c.run()
        for d in c.diags + c.warnings:
            key = (str(d.pos), d.message)
            if key in seen:  # a sweep repeats the same mistake once per grid point
                continue
            seen.add(key)
            if d.severity == "warning":
                if warnings is not None:
                    warnings.append(d)
            else:
                diags.append(d)
        if spec is not None:
            specs.append(spec)
    if diags:
        err = DiagnosticError(diags)
        err.specs = specs
        raise err
    return specs
