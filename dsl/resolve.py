"""Resolve imports, `extends`, dotted overrides, `--set` and sweeps.

The result is one :class:`Resolved` per run (a sweep grid gives several): every value
still raw (unchecked) but carrying the position where it was written and, when it came
from elsewhere, a note saying where (``inherited from papers/x.exp:12``, ``set by --set``).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from dsl.ast import Assign, Block, Experiment, Module, Pos, Published, Stage, Sweep, Value
from dsl.errors import Diagnostic, DiagnosticError, register_source
from dsl.parser import fold_expr, number_too_large, parse_file, parse_value, unreadable
from ncsn_core import registry, schema
from ncsn_core.errors import ParamError
from ncsn_core.params import REQUIRED, did_you_mean
from ncsn_core.values import AUTO, Call, Expr, Ident, value_text

COMPONENT_BLOCKS = schema.COMPONENT_BLOCKS
FIXED_BLOCKS = schema.FIXED_BLOCKS
BLOCK_KINDS = schema.NAMES
EXPERIMENT_FIELDS = schema.FIELDS

MAX_IMPORT_DEPTH = 32  # files importing files
MAX_EXTENDS_DEPTH = 32  # experiments extending experiments
DEFAULT_MAX_RUNS = 1000  # runs a file's sweeps may expand to (repro ... --max-runs N)
MAX_REF_DEPTH = 32  # values referring to values referring to values ...


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


@attrs.define
class Program:
    """All experiments reachable from a root file (imports followed)."""

    root: str
    experiments: dict[str, tuple[Experiment, Module]]
    root_names: list[str]
    sources: dict[str, str]


# ----------------------------------------------------------------------------- loading
def load(path: str | Path) -> Program:
    diags: list[Diagnostic] = []
    experiments: dict[str, tuple[Experiment, Module]] = {}
    sources: dict[str, str] = {}
    loaded: set[Path] = set()

    def visit(p: Path, display: str, stack: list[Path], at: Pos | None) -> Module | None:
        problem = unreadable(p)
        if problem is not None:
            if at is None:
                raise DiagnosticError([Diagnostic(None, f"{display}: {problem}")])
            more = f" (looked for {p})" if problem == "no such file" else ""
            diags.append(Diagnostic(at, f"cannot import '{display}': {problem}{more}"))
            return None
        try:
            real = p.resolve()
        except (OSError, RuntimeError, ValueError) as e:
            if at is None:
                raise DiagnosticError([Diagnostic(None, f"{display}: cannot read: {e}")]) from None
            diags.append(Diagnostic(at, f"cannot import '{display}': {e}"))
            return None
        if real in stack:
            chain = " → ".join(str(s.name) for s in stack[stack.index(real) :] + [real])
            diags.append(Diagnostic(at, f"import cycle: {chain}"))
            return None
        if real in loaded:
            return None
        if len(stack) >= MAX_IMPORT_DEPTH:
            diags.append(
                Diagnostic(
                    at, f"imports nested too deeply: more than {MAX_IMPORT_DEPTH} files importing files"
                )
            )
            return None
        mod = parse_file(display if at is None else p)  # syntax errors stop at once
        loaded.add(real)
        sources[mod.file] = mod.source
        diags.extend(_large_numbers(mod))
        for imp in mod.imports:
            target = p.parent / imp.path
            visit(target, str(target), stack + [real], imp.pos)
        for exp in mod.experiments:
            if exp.name in experiments:
                first = experiments[exp.name][0].pos
                diags.append(
                    Diagnostic(
                        exp.pos, f"experiment '{exp.name}' is defined twice", (f"first defined at {first}",)
                    )
                )
                continue
            experiments[exp.name] = (exp, mod)
        return mod

    root = Path(path)
    mod = visit(root, str(path), [], None)
    if diags:
        raise DiagnosticError(diags)
    assert mod is not None
    return Program(str(path), experiments, [e.name for e in mod.experiments], sources)


def _large_numbers(mod: Module) -> list[Diagnostic]:
    """Constant expressions the parser left unfolded because their value is beyond a
    float64 (`9 ** 9 ** 9` is never computed): one error at each."""
    values: list[Value] = []
    for exp in mod.experiments:
        for item in exp.body:
            if isinstance(item, (Assign, Sweep)):
                values.append(item.value)
            elif isinstance(item, Block):
                for it in item.items:
                    values.extend([a.value for a in it.items] if isinstance(it, Stage) else [it.value])
    out = []
    for v in values:
        why = number_too_large(v.value)
        if why:
            out.append(Diagnostic(v.pos, f"number too large: {why}"))
    return out


# ----------------------------------------------------------------------------- resolving
class _Resolver:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.diags: list[Diagnostic] = []
        self.cache: dict[str, Resolved] = {}
        self.depth: dict[str, int] = {}  # length of the extends chain above an experiment

    def err(self, pos: Pos | None, msg: str, *notes: str) -> None:
        self.diags.append(Diagnostic(pos, msg, tuple(n for n in notes if n)))

    def resolve(self, name: str, chain: tuple[str, ...] = ()) -> Resolved | None:
        if name in self.cache:
            return copy.deepcopy(self.cache[name])
        exp, mod = self.program.experiments[name]
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
            parent = self.resolve(exp.extends, chain + (name,))
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
        self.apply_body(res, exp)
        self.cache[name] = copy.deepcopy(res)
        return res

    # ---- body
    def apply_body(self, res: Resolved, exp: Experiment) -> None:
        seen: dict[tuple[str, ...], Pos] = {}
        inherited = res.published
        if any(isinstance(i, Published) for i in exp.body):
            # An experiment that states published numbers states all of them: the parent's
            # numbers describe the parent's settings, not the child's.
            res.published = []
        for item in exp.body:
            if isinstance(item, Block):
                self.apply_block(res, item)
            elif isinstance(item, Assign):
                if item.path in seen:
                    self.err(
                        item.pos, f"duplicate key '{'.'.join(item.path)}'", f"first set at {seen[item.path]}"
                    )
                    continue
                seen[item.path] = item.pos
                self.apply_assign(res, item.path, _entry(item.value, item.pos), item.pos)
            elif isinstance(item, Sweep):
                self.apply_sweep(res, item)
            elif isinstance(item, Published):
                item = _with_protocol(item, inherited)
                res.published = [p for p in res.published if p.label != item.label] + [item]

    def apply_block(self, res: Resolved, b: Block) -> None:
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
            cur = RBlock(b.kind, b.name, b.name_pos or b.pos)
            res.blocks[b.kind] = cur
        else:
            cur.pos = b.name_pos or b.pos
            cur.origin = ""
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
                    params[a.path[0]] = _entry(a.value, a.pos)
                new_stages.append(RStage(it.name, it.name_pos, params))
                continue
            if it.path in seen:
                self.err(it.pos, f"duplicate key '{'.'.join(it.path)}'", f"first set at {seen[it.path]}")
                continue
            seen[it.path] = it.pos
            self.set_param(cur, it.path, _entry(it.value, it.pos), it.pos)
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

    def apply_sweep(self, res: Resolved, s: Sweep) -> None:
        items = s.value.items
        if not items:
            self.err(s.value.pos, "a sweep needs at least one value")
            return
        if any(p == s.path for p, _, _ in res.sweeps):
            self.err(s.pos, f"'{'.'.join(s.path)}' is swept twice")
            return
        res.sweeps.append((s.path, [_entry(v, s.pos) for v in items], s.pos))


def _entry(v: Value, key_pos: Pos) -> Entry:
    return Entry(v.value, v.text, v.pos, key_pos)


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
    res = copy.deepcopy(parent)
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


# ----------------------------------------------------------------------------- entry point
def parse_set(arg: str, index: int) -> tuple[tuple[str, ...], list[Value], Pos]:
    """``train.iterations=100`` → (path, [Value], key position) in a pseudo-file per argument.
    Commas outside brackets, parentheses and strings separate several values, a sweep:
    ``train.optimizer.lr=1e-4,2e-4`` → two Values; ``evaluate.metrics=[fid,kid]`` is one."""
    fname = f"<--set #{index + 1}>"
    register_source(fname, arg)
    if "=" not in arg:
        raise DiagnosticError([Diagnostic(Pos(fname, 1, 1, 1, len(arg) + 1), "--set needs key=value")])
    key, _, val = arg.partition("=")
    key_s = key.strip()
    path = tuple(key_s.split("."))
    kpos = Pos(fname, 1, 1, 1, len(key) + 1)
    if not all(p.isidentifier() for p in path):
        raise DiagnosticError(
            [Diagnostic(kpos, f"--set: '{key_s}' is not a dotted name like train.iterations")]
        )
    if not val.strip():
        raise DiagnosticError(
            [Diagnostic(Pos(fname, 1, len(key) + 2), f"--set {key_s}: missing value after '='")]
        )
    off = len(key) + 1
    values = []
    pieces = _split_top(val)
    for start, end in pieces:
        if not val[start:end].strip():
            at = Pos(fname, 1, off + start + 1, 1, off + start + 2)
            if len(pieces) > 1 and start == 0:
                what = "a comma with no value before it"
            elif end == len(val):
                what = "a comma with no value after it"
            else:
                what = "two commas with no value between them"
            raise DiagnosticError(
                [
                    Diagnostic(
                        at if start == 0 else attrs.evolve(at, col=at.col - 1, end_col=at.col),
                        f"--set {key_s}: {what}",
                        (
                            "several values (a sweep) are separated by single commas: --set "
                            f"{key_s}=1,2; a list is one value in brackets: [1, 2]",
                        ),
                    )
                ]
            )
        v = parse_value(val[start:end], fname, col_offset=off + start)
        why = number_too_large(v.value)
        if why:
            raise DiagnosticError([Diagnostic(v.pos, f"number too large: {why}")])
        values.append(v)
    return path, values, kpos


def _split_top(text: str) -> list[tuple[int, int]]:
    """(start, end) of each part of ``text`` between commas outside brackets, parentheses and
    strings (a string's backslash escapes included)."""
    parts = []
    depth, start, i, n = 0, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append((start, i))
            start = i + 1
        i += 1
    parts.append((start, n))
    return parts


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
    parsed_sets = []
    set_errors: list[Diagnostic] = []
    for i, s in enumerate(sets):
        try:
            parsed_sets.append((s, *parse_set(s, i)))
        except DiagnosticError as e:
            set_errors.extend(e.diagnostics)
    out: list[Resolved] = []
    for n in wanted:
        if n not in program.experiments:
            r.err(None, f"no experiment '{n}' in {program.root}{did_you_mean(n, program.experiments)}")
            continue
        res = r.resolve(n)
        if res is None:
            continue
        for raw, path, vs, kpos in parsed_sets:
            _apply_set(r, res, raw, path, vs, kpos)
        n_runs = math.prod(len(entries) for _, entries, _ in res.sweeps)
        if res.sweeps and len(out) + n_runs > limit:
            _too_many_runs(res, r, n_runs, len(out), limit)
            continue
        out.extend(_resolve_refs(p, r) for p in _expand(res, r))
    diags = set_errors + r.diags
    if diags:
        raise DiagnosticError(_dedupe(diags))
    return out


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
        point = copy.deepcopy(template)
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


# ----------------------------------------------------------------------------- references
def _resolve_refs(res: Resolved, r: _Resolver) -> Resolved:
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
    def __init__(self, res: Resolved, r: _Resolver) -> None:
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


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen = set()
    out = []
    for d in diags:
        key = (str(d.pos), d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
