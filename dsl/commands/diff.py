"""`repro diff`: the settings that differ between two runs or experiments, and the metric deltas (repro.api.diff)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.commands.common import UseOpt, guard, with_uses


@guard
def diff(
    a: Annotated[str, typer.Argument(help="a run folder, or FILE.exp[:experiment]")],
    b: Annotated[str, typer.Argument(help="a run folder, or FILE.exp[:experiment]")],
    runs_dir: Annotated[
        Path, typer.Option("--runs", help="where the runs of compiled files are looked up")
    ] = Path("runs"),
    sets: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="override a value of both files")
    ] = None,  # noqa: UP045
    use: UseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """The settings that differ between two runs or experiments, where each value came from,
    and the metric deltas."""
    from repro import api

    runs: list = []
    doc = api.diff(a, b, runs_dir=runs_dir, sets=with_uses(use, sets), runs=runs)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    arun, brun = runs
    lines = [
        f"A: {a} ({doc['a']['label']}, {doc['a']['hash']})",
        f"B: {b} ({doc['b']['label']}, {doc['b']['hash']})",
    ]
    if not doc["settings"]:
        lines.append("No setting differs" + (" (same hash)." if doc["same_hash"] else "."))
    for c in doc["settings"]:
        lines.append(f"  {c['key']}: {c['a']} → {c['b']}")
        lines.append(f"      A: {c['a_from']}")
        lines.append(f"      B: {c['b_from']}")
    if doc["metrics"]:
        lines.append("Metrics (B − A):")
        for m in doc["metrics"]:
            lines.append(
                f"  {m['metric']}: {m['a']['text']} → {m['b']['text']} (Δ {m['delta_text']}, {m['significance']})"
            )
    elif arun is None or brun is None:
        lines.append(
            "Metrics: " + ("A" if arun is None else "B") + " has no run folder (repro run it, or pass --runs)"
        )
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command()(diff)
