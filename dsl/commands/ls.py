"""`repro ls`: every run with its status, hashes, key settings and metrics (repro.api.ls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.commands.common import guard, note


@guard
def ls_(
    runs_dir: Annotated[Path, typer.Argument(help="runs directory")] = Path("runs"),
    file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--file", help="only the runs of this .exp file (and tell which are stale)"),
    ] = None,
    status: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--status", help="only runs with this status: done, running, failed, stale or damaged"),
    ] = None,
    papers: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="folder of .exp files a run's source.exp is looked up in (default: ./papers)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON list")] = False,
) -> None:
    """Every run: file, experiment, status (done / running / failed at a stage / stale / damaged), hashes,
    key settings, metrics, age."""
    from repro import api

    rows = api.ls(runs_dir, file=file, status=status, papers=papers, log=note)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"no runs under {runs_dir}" + (f" with status {status}" if status else ""))
        return
    typer.echo(_text(rows))


def _text(rows: list[dict]) -> str:
    """The rows as text, wrapped at 100 columns."""
    import textwrap

    from ncsn_core.layout import override_args
    from reports.runs import age_text, metric_text

    lines = []
    for r in rows:
        st = r["status"] if r["status"] == "done" else f"{r['status']}: {r['detail']}"
        lines.append(f"{r['label']}  [{r['hash']}]  {age_text(r['age_seconds'])} ago")
        lines.append(f"    status: {st}")
        sets = (" " + override_args(r["set"])) if r["set"] else ""
        if r["file"]:
            lines.append(f"    file: {r['file']}{sets}")
        elif sets:  # the file is unknown (not under --papers, no invocation record): the values still are
            lines.append(f"    made with{sets}")
        lines.append("    " + ", ".join(f"{k} {v}" for k, v in r["settings"].items()))
        lines.append(f"    metrics: {metric_text(r['metrics'])}")
    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out += textwrap.wrap(line, 100, subsequent_indent=indent, break_on_hyphens=False) or [""]
    return "\n".join(out)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls_)
