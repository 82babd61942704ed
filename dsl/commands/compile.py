"""`repro compile`: the resolved experiments with canonical values, hashes, `auto` values and cost notes (repro.api.compile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dsl.commands.common import (
    DEFAULT_MAX_RUNS,
    ExpOpt,
    File,
    MaxRunsOpt,
    MultirunOpt,
    SetOpt,
    UseOpt,
    guard,
    warn,
    with_uses,
)
from dsl.errors import DiagnosticError

# fp32 tensors per parameter an optimizer keeps in a checkpoint (Adam: both moments; AMSGrad:
# and the max of the second; RMSprop: the square average; SGD: the momentum buffer if any).
_OPTIMIZER_STATE = {"adam": 2, "rmsprop": 1, "sgd": 1}


@guard
def compile_(
    file: File,
    set_: SetOpt = None,
    use: UseOpt = None,
    multirun: MultirunOpt = False,
    experiment: ExpOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print canonical JSON")] = False,
    no_auto: Annotated[
        bool,
        typer.Option("--no-auto", help="compute no auto values and no parameter counts (imports no torch)"),
    ] = False,
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
    runs_dir: Annotated[
        Path, typer.Option("--runs", help="the runs folder whose complete stages the cost counts as reused")
    ] = Path("runs"),
) -> None:
    """Print the resolved experiment(s): canonical values, hashes, what each `auto` became."""
    from repro import api

    set_ = with_uses(use, set_)
    warnings: list = []
    failed: DiagnosticError | None = None
    try:
        specs = api.compile(
            file,
            sets=set_ or (),
            experiments=experiment,
            compute_auto=not no_auto,
            max_runs=max_runs_,
            warnings=warnings,
            multirun=multirun,
        )
    except DiagnosticError as e:  # the experiments that compiled are still shown
        failed, specs = e, e.specs
    warn(warnings)
    if as_json:
        typer.echo(json.dumps([s.canonical() for s in specs], indent=2, ensure_ascii=False))
    else:
        _show(specs, no_auto, set_ or (), runs_dir)
    if failed is not None:
        raise failed


def _show(specs: list, no_auto: bool, sets=(), runs_dir: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    from dsl.show import show_head, show_spec
    from repro.api import point_label

    sweep_cost: list[dict] = []
    for s in specs:
        # The first line (name, run hash, seed) does not depend on the notes: printed before the
        # parameter count imports torch (the first line of output within half a second).
        head = f"experiment {s.experiment}"
        first = show_head(s)  # the sweep point's label: name[key=value,…]
        typer.echo(f"experiment {point_label(s.experiment, s.sweep, sets)}" + first[len(head) :])
        notes = {} if no_auto or s.network is None else {"network": _parameter_note(s)}
        if s.weights() is not None:
            r = s.canonical()["released"]
            sha = r["sha256"] if r["sha256"] == "checkpoint not present" else "sha256 " + r["sha256"]
            notes["train"] = f"released checkpoint, {sha}"
        rest = show_spec(s, notes).split("\n", 1)
        if len(rest) > 1:
            typer.echo(rest[1])
        if not no_auto and s.network is not None:
            typer.echo(f"# cost: {_cost_note(s, sweep_cost)}")
            disk = _checkpoint_note(s)
            if disk:
                typer.echo(f"# checkpoints: {disk}")
    if not no_auto and sweep_cost:
        _file_cost(specs, runs_dir)


def _file_cost(specs: list, runs_dir: Path | None) -> None:
    """What `repro run` would compute for the whole file: each stage once per hash, the select
    stage included, those complete in the runs folder reused (ncsn_core.cost.file_cost)."""
    try:
        from ncsn_core.cost import file_cost, file_cost_lines

        lines = file_cost_lines(file_cost(specs, runs_dir))
    except Exception as e:  # noqa: BLE001 - compile must still print the specs
        typer.echo(f"# file cost unknown ({_why(e)})")
        return
    typer.echo(f"# file cost ({len(specs)} run(s), every stage once per hash):")
    for line in lines:
        typer.echo(line)


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _parameter_note(spec) -> str:  # type: ignore[no-untyped-def]
    """'30,117,635 parameters', counted on the meta device from the data's declared shape (no
    dataset read or downloaded), or why it is unknown."""
    from repro.api import parameter_count

    try:
        return f"{parameter_count(spec):,} parameters"
    except Exception as e:  # noqa: BLE001 - compile must still print the spec
        return f"parameters unknown ({_why(e)})"


def _checkpoint_note(spec) -> str:  # type: ignore[no-untyped-def]
    """The checkpoints a finished training keeps and their size: 'N kept × size = total', from
    the network's parameter count × 4 bytes × (model + optimizer state + EMA); '' without
    training (a released checkpoint)."""
    if not spec.trains or spec.weights() is not None:
        return ""
    from ncsn_core.checkpoint import retained_steps
    from repro.api import parameter_count

    t = spec.train.kwargs()
    steps = retained_steps(t["iterations"], t["checkpoint_every"], t["keep_checkpoints"], t.get("keep_every"))
    try:
        n = parameter_count(spec)
    except Exception:  # noqa: BLE001 - the parameter note already says why
        return f"{len(steps)} kept (size unknown)"
    opt = t["optimizer"]
    state = _OPTIMIZER_STATE.get(opt.name, 2)
    if opt.name == "adam" and dict(opt.params).get("amsgrad"):
        state += 1
    if opt.name == "sgd" and not dict(opt.params).get("momentum", 0.0):
        state = 0
    copies = 1 + state + (1 if t.get("ema", 0.0) > 0 else 0)
    each = n * 4 * copies
    return f"{len(steps)} kept × {_bytes(each)} = {_bytes(each * len(steps))}"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _cost_note(spec, acc: list) -> str:  # type: ignore[no-untyped-def]
    """FLOPs per step / per sample, totals and ideal H100-hours (ncsn_core/cost.py, counted on
    the meta device), or why they are unknown; the cost is appended to ``acc`` (a sweep's sum)."""
    try:
        from ncsn_core.cost import cost_note, run_cost

        c = run_cost(spec)
        acc.append(c)
        return cost_note(spec, c)
    except Exception as e:  # noqa: BLE001 - compile must still print the spec
        return f"cost unknown ({_why(e)})"


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_)
