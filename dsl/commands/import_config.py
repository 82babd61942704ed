"""`repro import-config FILE.yml --from ncsn|ncsnv2`: an official config as an `.exp` file
(dsl/importconfig.py; docs/import-config.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("import-config")
    def import_config_(
        file: Annotated[Path, typer.Argument(help="an official configs/*.yml", show_default=False)],
        from_: Annotated[
            str,
            typer.Option(
                "--from", help="the repository the config is from: ncsn or ncsnv2", show_default=False
            ),
        ],
        out: Annotated[
            Optional[Path],  # noqa: UP045 - typer needs Optional here
            typer.Option("--out", "-o", help="write the .exp file here (default: standard output)"),
        ] = None,
        name: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option("--name", help="the experiment's name (default: <from>_<file stem>)"),
        ] = None,
        runner: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(
                "--runner",
                help="--from ncsn: the runner the config is for: anneal | baseline | scorenet | toy "
                "(default: the file's name when it is one of them, else anneal, main.py's default)",
            ),
        ] = None,
        checkpoint: Annotated[
            str,
            typer.Option(
                "--checkpoint",
                help="--from ncsnv2: fast_fid = select the best FID over the fast_fid range (as the "
                "published numbers); ckpt_id = sample sampling.ckpt_id",
            ),
        ] = "fast_fid",
        network: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option("--network", help="override the network the official code would build"),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
    ) -> None:
        """Turn an official NCSN/NCSNv2 YAML config into an .exp file, each setting commented with its key."""
        from dsl.errors import DiagnosticError
        from dsl.importconfig import import_config
        from ncsn_core.errors import ReproError, UserError

        try:
            text = import_config(
                file, from_, name=name, runner=runner, checkpoint=checkpoint, network=network
            )
            if out is None:
                typer.echo(text, nl=False)
                return
            if out.exists() and not force:
                raise UserError(f"{out}: exists; pass --force to overwrite it")
            try:
                out.write_text(text, encoding="utf-8")
            except OSError as e:
                raise UserError(f"{out}: cannot write: {e.strerror or e}") from None
            typer.echo(f"wrote {out}", err=True)
        except ReproError as e:
            msg = e.render() if isinstance(e, DiagnosticError) else f"error: {e}"
            typer.echo(msg, err=True)
            raise typer.Exit(e.exit_code) from None
