"""`repro plan FILE`: memory, micro-batches, FLOPs and hours of every experiment at the paper's
size, without data and without a GPU (ncsn_core/plan.py, docs/scale.md). Registered into the
cli's app by ``register`` (the dsl/commands convention)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dsl.commands.common import UseOpt, with_uses


def _positions(path: Path) -> dict[str, object]:
    """experiment name -> its position in the file (the line a plan error names)."""
    from dsl.parser import parse_file

    return {e.name: e.pos for e in parse_file(path).experiments}


def plan_command(
    file: Annotated[Path, typer.Argument(help="the .exp file")],
    memory: Annotated[
        str | None, typer.Option("--memory", help="also a device of this size, e.g. 24GB")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    experiment: Annotated[list[str] | None, typer.Option("--experiment", "-e")] = None,
    use: UseOpt = None,
) -> None:
    """Plan every experiment at its declared size on fake tensors: parameters, peak memory per
    device, the micro-batch that fits 80/40/24 GB, FLOPs and hours."""
    from dsl.compiler import compile_file
    from dsl.errors import Diagnostic, DiagnosticError
    from ncsn_core.errors import ReproError
    from ncsn_core.plan import markdown, parse_memory, plan_specs

    try:
        mem = parse_memory(memory) if memory else None
        specs = compile_file(file, experiments=experiment, sets=with_uses(use, None), compute_auto=True)
        result = plan_specs(specs, mem, file=str(file))
        if result.errors:
            pos = _positions(file)
            raise DiagnosticError(
                Diagnostic(
                    pos.get(e.experiment),  # type: ignore[arg-type]
                    f"experiment {e.experiment} cannot take one training step at its declared size: {e.error}",
                )
                for e in result.errors
            )
    except ReproError as e:
        typer.echo(e.render() if hasattr(e, "render") else str(e), err=True)
        raise typer.Exit(getattr(e, "exit_code", 2)) from None
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(markdown(result))
        typer.echo(
            f"# planned {len(result.experiments)} experiment(s) in {result.seconds:.1f} s (fake tensors)"
        )


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
