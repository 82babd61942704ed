"""Resolve imports, `extends`, dotted overrides, `--set` and sweeps.

The result is one :class:`Resolved` per run (a sweep grid gives several): every value
still raw (unchecked) but carrying the position where it was written and, when it came
from elsewhere, a note saying where (``inherited from papers/x.exp:12``, ``set by --set``).

The pieces, one concern each: dsl/load.py (files and imports), dsl/sets.py (`--set`),
dsl/refs.py (references between values), dsl/resolved.py (the result's classes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import attrs

from dsl.ast import Assign, Block, Experiment, Group, Option, Pos, Published, Stage, Sweep, Use, Value
from dsl.errors import Diagnostic, DiagnosticError
from dsl.load import MAX_IMPORT_DEPTH, Program, load  # noqa: F401 - re-exported
from dsl.refs import MAX_REF_DEPTH, resolve_refs  # noqa: F401 - re-exported
from dsl.resolved import Entry, RBlock, Resolved, RStage  # noqa: F401 - re-exported
from dsl.sets import USE_PREFIX, parse_set, parse_use, split_uses  # noqa: F401 - re-exported
from ncsn_core import schema
from ncsn_core.params import did_you_mean
from ncsn_core.values import Call, Ident, value_text

COMPONENT_BLOCKS = schema.COMPONENT_BLOCKS
FIXED_BLOCKS = schema.FIXED_BLOCKS
BLOCK_KINDS = schema.NAMES
EXPERIMENT_FIELDS = schema.FIELDS

MAX_EXTENDS_DEPTH = 32  # experiments extending experiments
DEFAULT_MAX_RUNS = 1000  # runs a file's sweeps may expand to (repro ... --max-runs N)


# ----------------------------------------------------------------------------- resolving
class _Resolver:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.diags: list[Diagnostic] = []
        self.cache: dict[str, Resolved] = {}
        self.depth: dict[str, int] = {}  # length of the extends chain above an experiment
        # `--use GROUP=OPTION` now applied: group -> (option, origin note)
        self.forced: dict[str, tuple[str, str]] = {}

    def err(self, pos: Pos | None, msg: str, *notes: str) -> None:
        self.diags.append(Diagnostic(pos, msg, tuple(n for n in notes if n)))

    def resolve(
        self, name: str, chain: tuple[str, ...] = (), below: frozenset[str] = frozenset()
    ) -> Resolved | None:
        """``below``: the groups an experiment extending this one chooses with its own ``use``
        (this one's ``use`` of them is replaced by theirs, so it is skipped)."""
        key = f"{name}\0{sorted(below)}\0{sorted(self.forced.items())}" if below or self.forced else name
        if key in self.cache:
            return self.cache[key].clone()
        exp, mod = self.program.experiments[name]
        mine = frozenset(u.group for u in exp.body if isinstance(u, Use))
        if exp.extends is not None:
            if len(chain) >= MAX_EXTENDS_DEPTH:
                self.err(
                    exp.extends_pos,
                    f"'extends' chain too long: more than {MAX_EXTENDS_DEPTH} experiments extending experiments",
                )
                return None
            if exp.extends in chain + (name,):
                self.err(exp.extends_pos, f"'extends' cycle: {' → '.join(chain + (name, exp.extends))}")
                return None
            if exp.extends not in self.program.experiments:
                hint = did_you_mean(exp.extends, self.program.experiments)
                self.err(
                    exp.extends_pos,
                    f"unknown experiment '{exp.extends}'{hint}",
                    'import the file that defines it: import "path.exp"',
                )
                return None
            parent = self.resolve(exp.extends, chain + (name,), below | mine)
            if parent is None:
                return None
            self.depth[name] = self.depth.get(exp.extends, 0) + 1
            if self.depth[name] > MAX_EXTENDS_DEPTH:
                self.err(
                    exp.extends_pos,
                    f"'extends' chain too long: more than {MAX_EXTENDS_DEPTH} experiments extending experiments",
                )
                return None
            res = _inherit(parent, name, exp.pos, mod.file)
        else:
            res = Resolved(name, exp.pos, mod.file)
        self.apply_body(res, exp, below)
        self.cache[key] = res.clone()
        return res

    # ---- body
    def apply_body(self, res: Resolved, exp: Experiment, below: frozenset[str] = frozenset()) -> None:
        inherited = res.published
        if any(isinstance(i, Published) for i in exp.body):
            # An experiment that states published numbers states all of them: the parent's
            # numbers describe the parent's settings, not the child's.
            res.published = []
        used: dict[str, Pos] = {}
        items = []
        for item in exp.body:
            if isinstance(item, Use):
                if item.group in used:
                    self.err(
                        item.group_pos,
                        f"group '{item.group}' is used twice in experiment '{exp.name}'",
                        f"first used at {used[item.group]}",
                    )
                    continue
                used[item.group] = item.group_pos
            items.append(item)
        self.apply_items(res, items, inherited, below)

    def apply_items(
        self,
        res: Resolved,
        items: Sequence[Any],
        inherited: list[Published],
        below: frozenset[str] = frozenset(),
        origin: str = "",
    ) -> None:
        seen: dict[tuple[str, ...], Pos] = {}
        for item in items:
            if isinstance(item, Use):
                if item.group in below:  # an experiment extending this one chooses instead
                    self.find_option(item)  # (still checked)
                else:
                    self.apply_option(res, item, inherited)
            elif isinstance(item, Block):
                self.apply_block(res, item, origin)
            elif isinstance(item, Assign):
                if item.path in seen:
                    self.err(
                        item.pos, f"duplicate key '{'.'.join(item.path)}'", f"first set at {seen[item.path]}"
                    )
                    continue
                seen[item.path] = item.pos
                self.apply_assign(res, item.path, _entry(item.value, item.pos, origin), item.pos)
            elif isinstance(item, Sweep):
                self.apply_sweep(res, item, origin)
            elif isinstance(item, Published):
                item = _with_protocol(item, inherited)
                res.published = [p for p in res.published if p.label != item.label] + [item]

    def find_option(self, use: Use) -> tuple[Group, Option] | None:
        """The group and option a ``use`` names (``--use`` replacing the option), or None after
        reporting what is unknown."""
        grp = self.program.groups.get(use.group)
        if grp is None:
            self.err(
                use.group_pos,
                f"unknown group '{use.group}'{did_you_mean(use.group, self.program.groups)}",
                "groups are: "
                + (", ".join(self.program.groups) or "none (define one: group NAME { OPTION { ... } })"),
            )
            return None
        names = [o.name for o in grp.options]
        if use.option not in names:
            self.err(
                use.option_pos,
                f"group '{grp.name}' has no option '{use.option}'{did_you_mean(use.option, names)}",
                f"options of {grp.name} (defined at {grp.pos}): {', '.join(names) or 'none'}",
            )
            return None
        forced = self.forced.get(use.group)
        opt = forced[0] if forced else use.option
        return grp, next(o for o in grp.options if o.name == opt)

    def apply_option(self, res: Resolved, use: Use, inherited: list[Published]) -> None:
        """``use GROUP = OPTION``: the option's items, as if written at the ``use``."""
        found = self.find_option(use)
        if found is None:
            return
        grp, opt = found
        forced = self.forced.get(use.group)
        how = forced[1] if forced else f"used at {use.pos}"
        origin = f"from option {opt.name} of group {grp.name} ({opt.pos}), {how}"
        self.apply_items(res, opt.body, inherited, origin=origin)

    def apply_block(self, res: Resolved, b: Block, origin: str = "") -> None:
        if b.kind not in BLOCK_KINDS:
            hint = did_you_mean(b.kind, BLOCK_KINDS)
            self.err(b.pos, f"unknown block '{b.kind}'{hint}", f"blocks are: {', '.join(BLOCK_KINDS)}")
            return
        if b.kind in COMPONENT_BLOCKS and b.name is None:
            self.err(b.pos, f"a {b.kind} block needs a name, e.g. `{b.kind} {_example(b.kind)} {{ ... }}`")
            return
        if b.kind in FIXED_BLOCKS and b.name is not None:
            self.err(b.name_pos, f"the {b.kind} block takes no name; write `{b.kind} {{ ... }}`")
            return
        cur = res.blocks.get(b.kind)
        if cur is None or cur.name != b.name:
            cur = RBlock(b.kind, b.name, b.name_pos or b.pos, origin=origin)
            res.blocks[b.kind] = cur
        else:
            cur.pos = b.name_pos or b.pos
            cur.origin = origin
        seen: dict[tuple[str, ...], Pos] = {}
        new_stages: list[RStage] = []
        for it in b.items:
            if isinstance(it, Stage):
                if schema.BY_NAME[b.kind].child is None:
                    holder = next(k.name for k in schema.BLOCKS if k.child)
                    self.err(it.pos, f"'stage' belongs in the {holder} block, not in {b.kind}")
                    continue
                params: dict[str, Entry] = {}
                for a in it.items:
                    if len(a.path) != 1:
                        self.err(a.pos, f"stage parameters are plain names; got '{'.'.join(a.path)}'")
                        continue
                    if a.path[0] in params:
                        self.err(
                            a.pos, f"duplicate key '{a.path[0]}'", f"first set at {params[a.path[0]].key_pos}"
                        )
                        continue
                    params[a.path[0]] = _entry(a.value, a.pos, origin)
                new_stages.append(RStage(it.name, it.name_pos, params, origin))
                continue
            if it.path in seen:
                self.err(it.pos, f"duplicate key '{'.'.join(it.path)}'", f"first set at {seen[it.path]}")
                continue
            seen[it.path] = it.pos
            self.set_param(cur, it.path, _entry(it.value, it.pos, origin), it.pos)
        if new_stages:
            cur.stages = new_stages

    def set_param(self, blk: RBlock, path: tuple[str, ...], e: Entry, pos: Pos) -> None:
        if len(path) == 1:
            blk.params[path[0]] = e
            return
        if schema.BY_NAME[blk.kind].child is not None and len(path) == 2:
            st = self.find_stage(blk, path[0], pos)
            if st is not None:
                st.params[path[1]] = e
            return
        if len(path) == 2 and path[0] in blk.params:
            # `train.optimizer.lr = 1e-4`: change one argument of a call-valued parameter.
            cur = blk.params[path[0]].value
            if isinstance(cur, (Ident, Call)):
                name = cur.name
                kw = dict(cur.params) if isinstance(cur, Call) else {}
                kw[path[1]] = e.value
                blk.params[path[0]] = Entry(
                    Call(name, tuple(kw.items())),
                    _call_text(name, kw, path[1], e),
                    e.pos,
                    pos,
                    e.origin,
                )
                return
        self.err(pos, f"cannot set '{'.'.join((blk.kind,) + path)}': no such parameter path")

    def find_stage(self, blk: RBlock, key: str, pos: Pos) -> RStage | None:
        if key.isdigit() or (key.startswith("stage") and key[5:].isdigit()):
            i = int(key.lstrip("stage")) - 1
            if 0 <= i < len(blk.stages):
                return blk.stages[i]
            self.err(pos, f"sample has {len(blk.stages)} stage(s); there is no stage {i + 1}")
            return None
        hits = [s for s in blk.stages if s.name == key]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            names = [s.name for s in blk.stages]
            self.err(
                pos,
                f"no stage '{key}' in sample{did_you_mean(key, names)}",
                f"stages: {', '.join(names) or 'none'}",
            )
        else:
            self.err(
                pos, f"stage '{key}' appears {len(hits)} times; address it by position as sample.stage1, ..."
            )
        return None

    def apply_assign(self, res: Resolved, path: tuple[str, ...], e: Entry, pos: Pos) -> None:
        head = path[0]
        if len(path) == 1:
            if head in EXPERIMENT_FIELDS:
                res.fields[head] = e
                return
            if head in COMPONENT_BLOCKS and isinstance(e.value, (Ident, Call)):
                # `noise = linear` switches the component (its parameters start from defaults).
                name = e.value.name
                params = {
                    k: Entry(v, value_text(v), e.pos, pos, e.origin)
                    for k, v in getattr(e.value, "params", ())
                }
                res.blocks[head] = RBlock(head, name, e.pos, params, origin=e.origin)
                return
            if head in BLOCK_KINDS:
                self.err(pos, f"'{head}' is a block; set one of its parameters as {head}.<name> = value")
                return
            self.err(
                pos,
                f"unknown field '{head}'{did_you_mean(head, EXPERIMENT_FIELDS + BLOCK_KINDS)}",
                f"experiment fields are: {', '.join(EXPERIMENT_FIELDS)}",
            )
            return
        if head not in BLOCK_KINDS:
            self.err(pos, f"unknown block '{head}'{did_you_mean(head, BLOCK_KINDS)}")
            return
        blk = res.blocks.get(head)
        if blk is None:
            if head in COMPONENT_BLOCKS:
                self.err(pos, f"cannot set '{'.'.join(path)}': the experiment has no {head} block")
                return
            blk = res.blocks[head] = RBlock(head, None, pos)
        self.set_param(blk, path[1:], e, pos)

    def apply_sweep(self, res: Resolved, s: Sweep, origin: str = "") -> None:
        items = s.value.items
        if not items:
            self.err(s.value.pos, "a sweep needs at least one value")
            return
        if any(p == s.path for p, _, _ in res.sweeps):
            self.err(s.pos, f"'{'.'.join(s.path)}' is swept twice")
            return
        res.sweeps.append((s.path, [_entry(v, s.pos, origin) for v in items], s.pos))


def _entry(v: Value, key_pos: Pos, origin: str = "") -> Entry:
    return Entry(v.value, v.text, v.pos, key_pos, origin)


def _call_text(name: str, kw: dict[str, Any], key: str, e: Entry) -> str:
    parts = [f"{k} = {e.text if k == key else value_text(v)}" for k, v in kw.items()]
    return f"{name}(" + ", ".join(parts) + ")"


def _example(kind: str) -> str:
    b = schema.block(kind)
    return b.example if b is not None and b.example else "name"


def _with_protocol(p: Published, inherited: list[Published]) -> Published:
    """A published block without ``protocol { }`` takes its parent's: the one of the parent's
    block with the same label, else of the parent's last block that states one (the same
    paper's table, computed the same way)."""
    if p.protocol is not None or not inherited:
        return p
    same = [q for q in inherited if q.label == p.label and q.protocol is not None]
    stated = same or [q for q in inherited if q.protocol is not None]
    return attrs.evolve(p, protocol=stated[-1].protocol) if stated else p


def _inherit(parent: Resolved, name: str, pos: Pos, file: str) -> Resolved:
    res = parent.clone()
    res.name, res.pos, res.file, res.parent = name, pos, file, parent.name

    def mark(e: Entry) -> None:
        if not e.origin:
            e.origin = f"inherited from {e.key_pos} (experiment {parent.name})"

    for e in res.fields.values():
        mark(e)
    for b in res.blocks.values():
        if not b.origin:
            b.origin = f"inherited from {b.pos} (experiment {parent.name})"
        for e in b.params.values():
            mark(e)
        for s in b.stages:
            for e in s.params.values():
                mark(e)
    return res


def resolve(
    program: Program,
    names: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    max_runs: int | None = None,
) -> list[Resolved]:
    """Resolve the named experiments (default: those defined in the root file), apply
    ``--set`` overrides, and expand sweeps (at most ``max_runs`` runs in all; default
    :data:`DEFAULT_MAX_RUNS`). Raises
    :class:`DiagnosticError` with every problem found."""
    limit = DEFAULT_MAX_RUNS if max_runs is None else max_runs
    r = _Resolver(program)
    wanted = list(names) if names else list(program.root_names)
    if not wanted:
        raise DiagnosticError([Diagnostic(Pos(program.root, 1, 1, 1, 2), "the file defines no experiment")])
    uses, sets = split_uses(sets)
    parsed_sets = []
    set_errors: list[Diagnostic] = []
    for i, s in enumerate(sets):
        try:
            parsed_sets.append((s, *parse_set(s, i)))
        except DiagnosticError as e:
            set_errors.extend(e.diagnostics)
    parsed_uses = _parse_uses(program, uses, set_errors)
    out: list[Resolved] = []
    for n in wanted:
        if n not in program.experiments:
            r.err(None, f"no experiment '{n}' in {program.root}{did_you_mean(n, program.experiments)}")
            continue
        chain_uses = _chain_uses(program, n)
        missing = [(g, gpos) for g, gpos, _, _ in parsed_uses if g not in chain_uses]
        for g, gpos in missing:
            r.err(
                gpos,
                f"experiment {n} does not use group '{g}'; --use replaces the option of a `use {g} = ...`",
                f"add `use {g} = OPTION` to experiment {n}, or choose other experiments with --experiment",
            )
        if missing:
            continue
        axes = [[(g, o, raw) for o in opts] for g, _, opts, raw in parsed_uses]
        n_combos = math.prod(len(a) for a in axes)
        for combo in itertools.product(*axes):
            r.forced = {g: (o, f"chosen by --use {raw}") for g, o, raw in combo}
            res = r.resolve(n)
            r.forced = {}
            if res is None:
                break
            for (g, o, _), (_, _, opts, _) in zip(combo, parsed_uses):
                if len(opts) > 1:
                    res.sweep_point[g] = o
            for raw, path, vs, kpos in parsed_sets:
                _apply_set(r, res, raw, path, vs, kpos)
            n_runs = math.prod(len(entries) for _, entries, _ in res.sweeps)
            if (res.sweeps or n_combos > 1) and len(out) + n_runs > limit:
                _too_many_runs(res, r, n_runs, len(out), limit)
                break
            out.extend(resolve_refs(p, r) for p in _expand(res, r))
    diags = set_errors + r.diags
    if diags:
        raise DiagnosticError(_dedupe(diags))
    return out


def _parse_uses(
    program: Program, uses: Sequence[str], errors: list[Diagnostic]
) -> list[tuple[str, Pos, list[str], str]]:
    """Each ``--use GROUP=OPTION[,OPTION...]``: (group, its position, options, as typed),
    unknown groups and options reported in ``errors`` (did-you-mean, `<--use #N>` positions)."""
    out = []
    seen: dict[str, Pos] = {}
    for i, raw in enumerate(uses):
        try:
            group, gpos, options = parse_use(raw, i)
        except DiagnosticError as e:
            errors.extend(e.diagnostics)
            continue
        grp = program.groups.get(group)
        if grp is None:
            errors.append(
                Diagnostic(
                    gpos,
                    f"--use: unknown group '{group}'{did_you_mean(group, program.groups)}",
                    (
                        "groups are: "
                        + (", ".join(program.groups) or "none; define one: group NAME { OPTION { ... } }"),
                    ),
                )
            )
            continue
        if group in seen:
            errors.append(Diagnostic(gpos, f"--use {group} given twice", (f"first given at {seen[group]}",)))
            continue
        seen[group] = gpos
        names = [o.name for o in grp.options]
        bad = [(o, p) for o, p in options if o not in names]
        for o, p in bad:
            errors.append(
                Diagnostic(
                    p,
                    f"--use: group '{group}' has no option '{o}'{did_you_mean(o, names)}",
                    (f"options of {group} (defined at {grp.pos}): {', '.join(names) or 'none'}",),
                )
            )
        if not bad:
            out.append((group, gpos, [o for o, _ in options], raw.strip()))
    return out


def _chain_uses(program: Program, name: str) -> set[str]:
    """The groups an experiment or one it extends chooses with ``use`` (the resolver reports
    unknown parents and cycles)."""
    groups: set[str] = set()
    seen: set[str] = set()
    while name in program.experiments and name not in seen and len(seen) <= MAX_EXTENDS_DEPTH:
        seen.add(name)
        exp = program.experiments[name][0]
        groups |= {u.group for u in exp.body if isinstance(u, Use)}
        if exp.extends is None:
            break
        name = exp.extends
    return groups


def _too_many_runs(res: Resolved, r: _Resolver, n: int, before: int, limit: int) -> None:
    sizes = " × ".join(str(len(entries)) for _, entries, _ in res.sweeps)
    where = res.sweeps[0][2] if res.sweeps else res.pos
    total = f" ({before} before it in this file)" if before else ""
    r.err(
        where,
        f"the sweeps of experiment '{res.name}' make {n:,} runs ({sizes}){total}; the limit is {limit:,}",
        "raise it with --max-runs N (repro check/compile/run) if this many runs is meant",
    )


def _expand(res: Resolved, r: _Resolver) -> list[Resolved]:
    if not res.sweeps:
        return [res]
    axes = [[(path, e, spos) for e in entries] for path, entries, spos in res.sweeps]
    out = []
    template = attrs.evolve(res, sweeps=[])  # copy points without the sweep lists themselves
    for combo in itertools.product(*axes):
        point = template.clone()
        for path, e, spos in combo:
            e2 = attrs.evolve(e, origin=e.origin or f"swept at {spos}")
            r.apply_assign(point, path, e2, spos)
            point.sweep_point[".".join(path)] = e.text
        out.append(point)
    return out


def _apply_set(
    r: _Resolver, res: Resolved, raw: str, path: tuple[str, ...], vs: list[Value], kpos: Pos
) -> None:
    """One ``--set``: a value overrides (and replaces a sweep of the same key in the file);
    several values sweep, like ``sweep key = [...]`` written last in the experiment."""
    if path[0] == "sweep":
        r.err(kpos, "--set takes no 'sweep'; sweep with several values: --set key=v1,v2")
        return
    res.sweeps = [s for s in res.sweeps if s[0] != path]
    if len(vs) == 1:
        v = vs[0]
        r.apply_assign(res, path, Entry(v.value, v.text, v.pos, kpos, f"set by --set {raw}"), kpos)
        return
    entries = [Entry(v.value, v.text, v.pos, kpos, f"swept by --set {raw}") for v in vs]
    res.sweeps.append((path, entries, kpos))


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen = set()
    out = []
    for d in diags:
        key = (str(d.pos), d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
