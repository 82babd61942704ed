"""Loading a program: the root file and every file it imports (cycles, depth and duplicate experiments reported)."""

from __future__ import annotations

from pathlib import Path

import attrs

from dsl.ast import Assign, Block, Experiment, Group, Module, Pos, Stage, Sweep, Value
from dsl.errors import Diagnostic, DiagnosticError
from dsl.numbers import number_too_large
from dsl.parser import parse_file
from dsl.source import unreadable
from dsl.suggest import missing_file_hint

MAX_IMPORT_DEPTH = 32  # files importing files


@attrs.define
class Program:
    """All experiments reachable from a root file (imports followed)."""

    root: str
    experiments: dict[str, tuple[Experiment, Module]]
    root_names: list[str]
    sources: dict[str, str]
    groups: dict[str, Group] = attrs.Factory(dict)  # config groups, visible across imports


# ----------------------------------------------------------------------------- loading
def load(path: str | Path) -> Program:
    diags: list[Diagnostic] = []
    experiments: dict[str, tuple[Experiment, Module]] = {}
    sources: dict[str, str] = {}
    loaded: set[Path] = set()
    groups: dict[str, Group] = {}

    def visit(p: Path, display: str, stack: list[Path], at: Pos | None) -> Module | None:
        problem = unreadable(p)
        if problem is not None:
            if at is None:
                raise DiagnosticError([Diagnostic(None, f"{display}: {problem}")])
            more = f" (looked for {p}){missing_file_hint(p)}" if problem == "no such file" else ""
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
        for grp in mod.groups:
            if grp.name in groups:
                diags.append(
                    Diagnostic(
                        grp.pos,
                        f"group '{grp.name}' is defined twice",
                        (f"first defined at {groups[grp.name].pos}",),
                    )
                )
                continue
            groups[grp.name] = grp
        return mod

    root = Path(path)
    mod = visit(root, str(path), [], None)
    if diags:
        raise DiagnosticError(diags)
    assert mod is not None
    return Program(str(path), experiments, [e.name for e in mod.experiments], sources, groups)


def _large_numbers(mod: Module) -> list[Diagnostic]:
    """Constant expressions the parser left unfolded because their value is beyond a
    float64 (`9 ** 9 ** 9` is never computed): one error at each."""
    values: list[Value] = []
    bodies = [exp.body for exp in mod.experiments] + [o.body for g in mod.groups for o in g.options]
    for body in bodies:
        for item in body:
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
