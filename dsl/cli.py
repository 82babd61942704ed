"""The `repro` command line (typer): the app, and each command module of dsl/commands/ registered on it.

Exit codes: 0 success; 1 a run failed (diverged sampler, non-finite loss, missing data,
corrupt checkpoint...), with a one-paragraph message; 2 a mistake in the input (syntax,
names, types, --set), printed compiler-style.

Adding a command: write ``dsl/commands/NAME.py`` with ``register(app: typer.Typer) -> None``
(which calls ``app.command(...)`` on a function wrapped in ``dsl.commands.common.guard``),
and add NAME to ``COMMANDS`` below; the order of ``COMMANDS`` is the order of ``repro --help``.
A command module imports only typer and dsl.commands.common at its top (everything else
inside the command: `repro --help` must stay fast) and leaves the work to the library
(``repro.api``, ``dsl``, ``ncsn_core``, ``reports``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from dsl.commands.common import DEFAULT_MAX_RUNS  # noqa: F401 - dsl.resolve.DEFAULT_MAX_RUNS, for tests

# The command modules under dsl/commands/, in the order of `repro --help`; a module that does
# not exist (yet) is skipped.
COMMANDS = (
    "check",
    "compile",
    "fmt",
    "explain",
    "run",
    "export",
    "report",
    "ls",
    "tb",
    "diff",
    "bench",
    "plan",
    "doctor",
    "verify",
    "import_config",
)

app = typer.Typer(
    add_completion=True,  # repro --install-completion / --show-completion (bash, zsh, fish)
    no_args_is_help=True,
    help="repro: declarative experiments for score-based generative models (NCSN, NCSNv2, ANSN).",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: `repro --help` starts without importing rich
)


def _register(app: typer.Typer) -> None:
    for name in COMMANDS:
        module = f"dsl.commands.{name}"
        if importlib.util.find_spec(module) is None:
            continue
        importlib.import_module(module).register(app)


_register(app)


def main() -> None:  # console script entry point
    app(prog_name="repro")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
