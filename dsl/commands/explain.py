"""`repro explain`: the vocabulary of the language, from the registry and the schema."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dsl.commands.common import guard
from ncsn_core.errors import ReproError


@guard
def explain(
    kind: Annotated[Optional[str], typer.Argument(help="a component kind, e.g. noise")] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Argument(help="a component name, e.g. geometric")] = None,  # noqa: UP045
) -> None:
    """List the vocabulary of the language, with docs from the registry and the schema."""
    from tabulate import tabulate

    from dsl.docgen import KIND_TITLES, param_rows
    from ncsn_core import registry

    if kind is None:
        for k in registry.KINDS:
            names = registry.names(k)
            typer.echo(f"{k:<10} {', '.join(names)}")
        typer.echo("\nrepro explain KIND [NAME] for details")
        return
    if kind not in registry.KINDS:
        typer.echo(f"error: unknown kind '{kind}'{registry.did_you_mean(kind, registry.KINDS)}", err=True)
        raise typer.Exit(2)
    if name is None:
        typer.echo(KIND_TITLES.get(kind, kind))
        rows = [[c.name, c.doc] for c in registry.components(kind)]
        typer.echo(tabulate(rows, headers=["name", "what"], tablefmt="plain"))
        return
    try:
        c = registry.lookup(kind, name)
    except ReproError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{kind} {c.name}: {c.doc}")
    if c.params:
        typer.echo(
            tabulate(param_rows(c), headers=["parameter", "type", "default", "meaning"], tablefmt="simple")
        )


def register(app: typer.Typer) -> None:
    app.command()(explain)
