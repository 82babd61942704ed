"""Check resolved experiments against the registry, compute `auto` values, lower to RunSpec.

Every problem of every experiment is collected before anything is raised, so a user sees
all the semantic errors of a file at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from dsl.errors import Diagnostic, DiagnosticError
from dsl.resolve import COMPONENT_BLOCKS, Entry, RBlock, Resolved
from ncsn_core import registry
from ncsn_core.registry import AutoContext, AutoValue, Component, ParamError
from ncsn_core.spec import ComponentSpec, PublishedSpec, RunSpec
from ncsn_core.values import AUTO


class _Checker:
    def __init__(self, res: Resolved, compute_auto: bool, data_cache: dict[str, Any]) -> None:
        self.res = res
        self.compute_auto = compute_auto
        self.diags: list[Diagnostic] = []
        self.autos: list[tuple[str, AutoValue]] = []
        self.data_cache = data_cache

    def err(self, pos: Any, msg: str, notes: tuple[str, ...] = ()) -> None:
        self.diags.append(Diagnostic(pos, msg, notes))

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
        exp_schema = registry.lookup("block", "experiment")
        fields = self.params(exp_schema, r.fields, "experiment")
        comps: dict[str, tuple[Component | None, dict[str, Any]]] = {}
        for kind in COMPONENT_BLOCKS:
            blk = r.blocks.get(kind)
            if blk is not None:
                comps[kind] = self.component(kind, blk)
        for kind in ("data", "noise"):
            if kind not in r.blocks:
                self.err(r.pos, f"experiment '{r.name}' has no {kind} block")
        has_net, has_loss = "network" in r.blocks, "loss" in r.blocks
        if has_net != has_loss:
            missing = "loss" if has_net else "network"
            self.err(
                r.pos,
                f"experiment '{r.name}' has a {'network' if has_net else 'loss'} but no {missing} block",
            )
        fixed: dict[str, dict[str, Any] | None] = {}
        for kind in ("train", "sample", "evaluate"):
            blk = r.blocks.get(kind)
            if blk is None:
                fixed[kind] = None
                continue
            fixed[kind] = self.params(registry.lookup("block", kind), blk.params, kind)
        if has_net and fixed["train"] is None:
            fixed["train"] = self.params(registry.lookup("block", "train"), {}, "train")
        stages: list[tuple[Component | None, dict[str, Any], Any]] = []
        sblk = r.blocks.get("sample")
        if sblk is not None:
            if not sblk.stages:
                self.err(sblk.pos, "the sample block has no stage; add e.g. `stage annealed_langevin { }`")
            for st in sblk.stages:
                try:
                    comp = registry.lookup("stage", st.name)
                except ParamError as e:
                    self.err(st.name_pos, str(e), ("see `repro explain stage`",))
                    stages.append((None, {}, st))
                    continue
                stages.append((comp, self.params(comp, st.params, "sample"), st))
        if fixed["evaluate"] is not None and sblk is None:
            self.err(r.blocks["evaluate"].pos, "evaluate needs samples: add a sample block")
        published = self.published()
        if self.diags:
            return None
        # ---- auto values, in dependency order: noise (σ_max, then L), then sampler stages
        resolved: dict[tuple[str, str], Any] = {}
        data_comp, data_params = comps["data"]
        assert data_comp is not None
        data_key = repr((data_comp.name, sorted(data_params.items(), key=lambda kv: kv[0])))

        def data() -> Any:
            if data_key not in self.data_cache:
                self.data_cache[data_key] = data_comp.builder(**data_params)
            return self.data_cache[data_key]

        def lookup_resolved(block: str, key: str) -> Any:
            return resolved[(block, key)]

        for kind in ("noise", "network", "loss"):
            comp, params = comps.get(kind, (None, {}))
            if comp is None:
                continue
            blk = r.blocks[kind]
            self.fill_autos(comp, params, f"{kind}.", blk.params, lookup_resolved, data)
            for k, v in params.items():
                resolved[(kind, k)] = v
        if self.diags:
            return None  # a failed noise auto would only cascade into the stages' autos
        for comp, params, st in stages:
            assert comp is not None
            self.fill_autos(comp, params, f"sample.{st.name}.", st.params, lookup_resolved, data)
        if self.diags:
            return None

        def spec(kind: str) -> ComponentSpec | None:
            comp, params = comps.get(kind, (None, None))
            if comp is None or params is None:
                return None
            return ComponentSpec(comp.name, _sorted(params))

        def fixed_spec(kind: str) -> ComponentSpec | None:
            p = fixed[kind]
            return None if p is None else ComponentSpec(kind, _sorted(p))

        return RunSpec(
            experiment=r.name,
            seed=fields["seed"],
            paper=fields["paper"],
            description=fields["description"],
            data=spec("data"),  # type: ignore[arg-type]
            noise=spec("noise"),  # type: ignore[arg-type]
            network=spec("network"),
            loss=spec("loss"),
            train=fixed_spec("train") if has_net else None,
            sample=fixed_spec("sample"),
            stages=tuple(ComponentSpec(c.name, _sorted(p)) for c, p, _ in stages if c is not None),
            evaluate=fixed_spec("evaluate"),
            published=published,
            sweep=tuple(sorted(r.sweep_point.items())),
            autos=tuple(self.autos),
            source=r.file,
        )

    def fill_autos(
        self,
        comp: Component,
        params: dict[str, Any],
        prefix: str,
        given: dict[str, Entry],
        lookup_resolved: Callable[[str, str], Any],
        data: Callable[[], Any],
    ) -> None:
        for p in comp.params:  # declaration order: a later auto may use an earlier one
            if params.get(p.name) is not AUTO:
                continue
            if not self.compute_auto:
                continue
            assert p.auto is not None
            e = given.get(p.name)
            t0 = time.perf_counter()
            try:
                av = p.auto(AutoContext(params=params, resolved=lookup_resolved, data=data))
            except Exception as exc:  # a failing technique is the user's problem to see, with context
                self.err(e.pos if e else self.res.pos, f"cannot compute {prefix}{p.name} = auto: {exc}")
                return
            av = AutoValue(p.type.check(av.value), av.explanation, av.seconds or time.perf_counter() - t0)
            params[p.name] = av.value
            self.autos.append((prefix + p.name, av))

    def published(self) -> tuple[PublishedSpec, ...]:
        out = []
        for p in self.res.published:
            out.append(PublishedSpec(p.label, tuple((e.name, e.value, e.error) for e in p.entries)))
        return tuple(out)


def _sorted(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def check(
    resolved: Sequence[Resolved], *, compute_auto: bool = True, data_cache: dict[str, Any] | None = None
) -> list[RunSpec]:
    """Check and lower every resolved experiment; raise all diagnostics together."""
    diags: list[Diagnostic] = []
    specs: list[RunSpec] = []
    cache = {} if data_cache is None else data_cache
    seen: set[tuple[str, str]] = set()
    for res in resolved:
        c = _Checker(res, compute_auto, cache)
        spec = c.run()
        for d in c.diags:
            key = (str(d.pos), d.message)
            if key not in seen:  # a sweep repeats the same mistake once per grid point
                seen.add(key)
                diags.append(d)
        if spec is not None:
            specs.append(spec)
    if diags:
        raise DiagnosticError(diags)
    return specs
