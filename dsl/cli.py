"""The `repro` command line (typer).

Exit codes: 0 success; 1 a run failed (diverged sampler, non-finite loss, missing data,
corrupt checkpoint...), with a one-paragraph message; 2 a mistake in the input (syntax,
names, types, --set), printed compiler-style.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from tabulate import tabulate

from dsl.errors import DiagnosticError

DEFAULT_MAX_RUNS = 1000  # dsl.resolve.DEFAULT_MAX_RUNS (not imported here: keeps startup light)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="repro: declarative experiments for score-based generative models (NCSN, NCSNv2, ANSN).",
    pretty_exceptions_enable=False,
)

Files = Annotated[list[Path], typer.Argument(help=".exp files", show_default=False)]
File = Annotated[Path, typer.Argument(help="an .exp file", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", "-s", help="override a value: --set train.iterations=100 (repeatable)"),
]
MaxRunsOpt = Annotated[
    int,
    typer.Option("--max-runs", min=1, help="refuse files whose sweeps make more runs than this"),
]
ExpOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--experiment", "-e", help="only these experiments of the file (repeatable)"),
]


def max_runs(n: int):  # type: ignore[no-untyped-def]
    from dsl.resolve import max_runs as limit

    return limit(n)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ncsn_core.errors import user_error_types

    return user_error_types()


def _fail(e: BaseException, code: int) -> None:
    msg = e.render() if isinstance(e, DiagnosticError) else f"error: {e}"
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _guard(fn):  # type: ignore[no-untyped-def]
    """Turn user mistakes into messages and exit codes, never tracebacks."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):  # type: ignore[no-untyped-def]
        try:
            return fn(*a, **k)
        except DiagnosticError as e:
            _fail(e, 2)
        except KeyboardInterrupt:
            typer.echo("interrupted: the last complete checkpoint is kept; run again to resume", err=True)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001
            if isinstance(e, _user_error_types()):
                _fail(e, 1)
            raise

    return wrapper


@app.command()
@_guard
def check(
    files: Files, set_: SetOpt = None, experiment: ExpOpt = None, max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS
) -> None:
    """Validate .exp files (syntax, names, types, ranges) without running anything."""
    from dsl.compiler import compile_file

    diags = []
    n = 0
    for f in files:
        try:
            with max_runs(max_runs_):
                n += len(compile_file(f, experiments=experiment, sets=set_ or (), compute_auto=False))
        except DiagnosticError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise DiagnosticError(diags)
    typer.echo(f"ok: {len(files)} file(s), {n} run(s)")


@app.command("compile")
@_guard
def compile_(
    file: File,
    set_: SetOpt = None,
    experiment: ExpOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print canonical JSON")] = False,
    no_auto: Annotated[bool, typer.Option("--no-auto", help="do not compute auto values")] = False,
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
) -> None:
    """Print the resolved experiment(s): canonical values, hashes, what each `auto` became."""
    from dsl.compiler import compile_file

    with max_runs(max_runs_):
        specs = compile_file(file, experiments=experiment, sets=set_ or (), compute_auto=not no_auto)
    if as_json:
        typer.echo(json.dumps([s.canonical() for s in specs], indent=2, ensure_ascii=False))
        return
    from dsl.show import show_spec

    for s in specs:
        typer.echo(show_spec(s))


@app.command()
@_guard
def fmt(
    files: Files,
    write: Annotated[bool, typer.Option("--write", "-w", help="rewrite the files in place")] = False,
    check_only: Annotated[bool, typer.Option("--check", help="exit 1 if a file is not formatted")] = False,
) -> None:
    """Print (or rewrite) the canonical formatting of .exp files."""
    from dsl.fmt import format_text

    bad = 0
    for f in files:
        from dsl.parser import read_source, unreadable

        problem = unreadable(f)
        if problem is not None:
            from dsl.errors import error

            raise error(None, f"{f}: {problem}")
        text = read_source(f)
        new = format_text(text, str(f))
        if check_only:
            if new != text:
                typer.echo(f"{f}: not formatted", err=True)
                bad += 1
        elif write:
            if new != text:
                tmp = f.with_suffix(f.suffix + ".tmp")
                tmp.write_text(new, encoding="utf-8")
                tmp.replace(f)
        else:
            typer.echo(new, nl=False)
    if bad:
        raise typer.Exit(1)


@app.command()
def explain(
    kind: Annotated[Optional[str], typer.Argument(help="a component kind, e.g. noise")] = None,  # noqa: UP045
    name: Annotated[Optional[str], typer.Argument(help="a component name, e.g. geometric")] = None,  # noqa: UP045
) -> None:
    """List the vocabulary of the language, with docs from the registry."""
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
    except registry.ParamError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{kind} {c.name}: {c.doc}")
    if not c.implemented:
        typer.echo("(validated by the checker; running it says it is not implemented yet)")
    if c.params:
        typer.echo(
            tabulate(param_rows(c), headers=["parameter", "type", "default", "meaning"], tablefmt="simple")
        )


@app.command()
@_guard
def run(
    file: File,
    set_: SetOpt = None,
    experiment: ExpOpt = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = "",
    runs_dir: Annotated[Path, typer.Option("--runs", help="where runs are written")] = Path("runs"),
    until: Annotated[str, typer.Option(help="stop after this stage: train, sample or evaluate")] = "evaluate",
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
) -> None:
    """Train, sample and evaluate every run of FILE (resuming what exists)."""
    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    if until not in ("train", "sample", "evaluate"):
        from dsl.errors import error

        raise error(None, f"--until must be train, sample or evaluate, not '{until}'")
    with max_runs(max_runs_):
        specs = compile_file(file, experiments=experiment, sets=set_ or ())
    from dsl.parser import read_source

    source = read_source(file)
    t0 = time.time()
    for i, s in enumerate(specs):
        if len(specs) > 1:
            typer.echo(f"[{i + 1}/{len(specs)}] {s.experiment} {dict(s.sweep) or ''} seed {s.seed}")
        out = run_spec(s, runs_dir=runs_dir, device=device or None, until=until, source_text=source)
        typer.echo(f"{s.experiment}: {out}")
    typer.echo(f"done in {time.time() - t0:.1f}s")


@app.command()
@_guard
def report(
    runs_dir: Annotated[Path, typer.Argument(help="runs directory")] = Path("runs"),
    format: Annotated[str, typer.Option("--format", "-f", help="md, html or tex")] = "md",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file")] = None,  # noqa: UP045
    papers: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="folder of .exp files whose published numbers are listed even if not run"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="relative tolerance of the verdict when a paper gives none")
    ] = 0.10,
) -> None:
    """Tables of reproduced numbers beside the published ones."""
    from reports.reporter import report as render_report

    if format not in ("md", "html", "tex"):
        from dsl.errors import error

        raise error(None, f"--format must be md, html or tex, not '{format}'")
    expected = []
    folder = papers if papers is not None else (Path("papers") if Path("papers").is_dir() else None)
    if folder is not None:
        from dsl.compiler import compile_file

        for f in sorted(folder.glob("*.exp")):
            try:  # a broken file elsewhere must not hide the report
                expected += [s.canonical() for s in compile_file(f, compute_auto=False)]
            except DiagnosticError as e:
                typer.echo(f"note: skipping {f} ({e.diagnostics[0].message})", err=True)
    text = render_report(runs_dir, format, out, expected, tolerance)
    if out is None:
        typer.echo(text)
    else:
        typer.echo(f"wrote {out}")


@app.command()
@_guard
def bench(
    what: Annotated[str, typer.Argument(help="train, sample or all")] = "all",
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "",
    size: Annotated[str, typer.Option(help="tiny (CI), cifar10 (paper network)")] = "tiny",
) -> None:
    """Speed benchmarks: training steps/s and sampler network evaluations/s."""
    from ncsn_core.bench import run_bench

    for line in run_bench(what, device or None, size):
        typer.echo(line)


def main() -> None:  # console script entry point
    app(prog_name="repro")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
