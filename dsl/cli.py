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

from dsl.errors import DiagnosticError
from ncsn_core.errors import ReproError

DEFAULT_MAX_RUNS = 1000  # dsl.resolve.DEFAULT_MAX_RUNS (not imported here: keeps startup light)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="repro: declarative experiments for score-based generative models (NCSN, NCSNv2, ANSN).",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: `repro --help` starts without importing rich
)

Files = Annotated[list[Path], typer.Argument(help=".exp files", show_default=False)]
File = Annotated[Path, typer.Argument(help="an .exp file", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--set",
        "-s",
        help="override a value: --set train.iterations=100 (repeatable); several values sweep: "
        "--set train.optimizer.lr=1e-4,2e-4 (commas outside [ ], ( ) and strings); a list is one "
        "value: --set evaluate.metrics=[fid,kid]",
    ),
]
MaxRunsOpt = Annotated[
    int,
    typer.Option("--max-runs", min=1, help="refuse files whose sweeps make more runs than this"),
]
ExpOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--experiment", "-e", help="only these experiments of the file (repeatable)"),
]


def _fail(e: BaseException, code: int) -> None:
    msg = e.render() if isinstance(e, DiagnosticError) else f"error: {e}"
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _guard(fn):  # type: ignore[no-untyped-def]
    """Turn every :class:`~ncsn_core.errors.ReproError` into its message and exit code (2: a
    mistake in the input, 1: a run failed), never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):  # type: ignore[no-untyped-def]
        try:
            return fn(*a, **k)
        except ReproError as e:
            _fail(e, e.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted: the last complete checkpoint is kept; run again to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@_guard
def check(
    files: Files, set_: SetOpt = None, experiment: ExpOpt = None, max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS
) -> None:
    """Validate .exp files (syntax, names, types, ranges) without running anything."""
    from dsl.compiler import compile_file

    diags = []
    warnings: list = []
    specs = []
    for f in files:
        try:
            specs += compile_file(
                f,
                experiments=experiment,
                sets=set_ or (),
                compute_auto=False,
                warnings=warnings,
                max_runs=max_runs_,
            )
        except DiagnosticError as e:
            diags.extend(e.diagnostics)
    _warn(warnings)
    if diags:
        raise DiagnosticError(diags)
    typer.echo(
        f"ok: {len(files)} file(s), {len(specs)} run(s)"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    _released_notes(specs)


def _warn(warnings: list) -> None:
    """Print warnings compiler-style on stderr (they never change the exit code)."""
    for w in warnings:
        typer.echo(w.render(), err=True)


def _released_notes(specs) -> None:  # type: ignore[no-untyped-def]
    """One 'note:' line per released checkpoint (`train.from`) that is not there yet: fine
    to check, needed to run."""
    from ncsn_core import released_files as released

    missing: dict[str, list[str]] = {}
    for spec in specs:
        w = spec.weights()
        if w is not None and released.file_sha256(released.file_path(w)) is None:
            missing.setdefault(str(w.kwargs()["path"]), []).append(spec.experiment)
    for path, exps in missing.items():
        typer.echo(
            f"note: released checkpoint not present: {path} ({', '.join(exps)}); `repro run` needs it, "
            "see docs/released.md",
            err=True,
        )


@app.command("compile")
@_guard
def compile_(
    file: File,
    set_: SetOpt = None,
    experiment: ExpOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print canonical JSON")] = False,
    no_auto: Annotated[
        bool,
        typer.Option("--no-auto", help="compute no auto values and no parameter counts (imports no torch)"),
    ] = False,
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
) -> None:
    """Print the resolved experiment(s): canonical values, hashes, what each `auto` became."""
    from dsl.compiler import compile_file

    warnings: list = []
    failed: DiagnosticError | None = None
    try:
        specs = compile_file(
            file,
            experiments=experiment,
            sets=set_ or (),
            compute_auto=not no_auto,
            warnings=warnings,
            max_runs=max_runs_,
        )
    except DiagnosticError as e:  # the experiments that compiled are still shown
        failed, specs = e, e.specs
    _warn(warnings)
    if as_json:
        typer.echo(json.dumps([s.canonical() for s in specs], indent=2, ensure_ascii=False))
    else:
        from dsl.show import show_spec

        sweep_cost: list[dict] = []
        for s in specs:
            notes = {} if no_auto or s.network is None else {"network": _parameter_note(s)}
            if s.weights() is not None:
                r = s.canonical()["released"]
                sha = r["sha256"] if r["sha256"] == "checkpoint not present" else "sha256 " + r["sha256"]
                notes["train"] = f"released checkpoint, {sha}"
            typer.echo(show_spec(s, notes))
            if not no_auto and s.network is not None:
                typer.echo(f"# cost: {_cost_note(s, sweep_cost)}")
                disk = _checkpoint_note(s)
                if disk:
                    typer.echo(f"# checkpoints: {disk}")
        if len(sweep_cost) > 1:
            from ncsn_core.cost import sweep_note

            typer.echo(f"# sweep cost ({len(sweep_cost)} runs): {sweep_note(sweep_cost)}")
    if failed is not None:
        raise failed


def _parameter_count(spec) -> int:  # type: ignore[no-untyped-def]
    from ncsn_core import registry
    from ncsn_core.networks import count_parameters

    shape = registry.lookup("data", spec.data.name).facts.shape(spec.data.kwargs())
    return count_parameters(spec.network.name, spec.network.kwargs(), shape, int(spec.noise.get("levels", 1)))


def _parameter_note(spec) -> str:  # type: ignore[no-untyped-def]
    """'30,117,635 parameters', counted on the meta device from the data's declared shape (no
    dataset read or downloaded), or why it is unknown."""
    try:
        return f"{_parameter_count(spec):,} parameters"
    except Exception as e:  # noqa: BLE001 - compile must still print the spec
        return f"parameters unknown ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"


# fp32 tensors per parameter an optimizer keeps in a checkpoint (Adam: both moments; AMSGrad:
# and the max of the second; RMSprop: the square average; SGD: the momentum buffer if any).
_OPTIMIZER_STATE = {"adam": 2, "rmsprop": 1, "sgd": 1}


def _checkpoint_note(spec) -> str:  # type: ignore[no-untyped-def]
    """The checkpoints a finished training keeps and their size: 'N kept × size = total', from
    the network's parameter count × 4 bytes × (model + optimizer state + EMA); '' without
    training (a released checkpoint)."""
    if not spec.trains or spec.weights() is not None:
        return ""
    from ncsn_core.checkpoint import retained_steps

    t = spec.train.kwargs()
    steps = retained_steps(t["iterations"], t["checkpoint_every"], t["keep_checkpoints"], t.get("keep_every"))
    try:
        n = _parameter_count(spec)
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
        return f"cost unknown ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"


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
                from ncsn_core import io as atomic

                atomic.write_text(f, new)
        else:
            typer.echo(new, nl=False)
    if bad:
        raise typer.Exit(1)


@app.command()
@_guard
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


@app.command()
@_guard
def run(
    file: File,
    set_: SetOpt = None,
    experiment: ExpOpt = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = "",
    runs_dir: Annotated[Path, typer.Option("--runs", help="where runs are written")] = Path("runs"),
    until: Annotated[
        str, typer.Option(help="stop after this stage: train, select, sample or evaluate")
    ] = "evaluate",
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="stop with an error when another process is computing a stage"),
    ] = False,
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
    gpus: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="GPUs to use: 0,1,2,3 | 0-7 | 8 (the first 8) | all (docs/scale.md)"),
    ] = None,
    nproc: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="processes per run, data-parallel (GPUs when present, else CPU/gloo)"),
    ] = None,
    parallel: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="runs of a sweep at once on the CPU (with --gpus: one per GPU)"),
    ] = None,
    launcher: Annotated[Optional[str], typer.Option(help="local or slurm (submitit)")] = None,  # noqa: UP045
    partition: Annotated[Optional[str], typer.Option(help="SLURM partition")] = None,  # noqa: UP045
    gpus_per_node: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="SLURM: GPUs (= processes) per node"),
    ] = None,
    nodes: Annotated[Optional[int], typer.Option(help="SLURM: nodes per run")] = None,  # noqa: UP045
    time_: Annotated[Optional[str], typer.Option("--time", help="SLURM time limit, HH:MM:SS")] = None,  # noqa: UP045
    slurm_cluster: Annotated[
        str, typer.Option(hidden=True, help="submitit cluster: slurm, debug, local")
    ] = "",
    only: Annotated[Optional[int], typer.Option(hidden=True, help="only the run with this index")] = None,  # noqa: UP045
) -> None:
    """Train, sample and evaluate every run of FILE (resuming what exists)."""
    from dsl.compiler import compile_file
    from ncsn_core import distributed as dist
    from ncsn_core import launch
    from ncsn_core.runner import run_spec

    if until not in ("train", "select", "sample", "evaluate"):
        from dsl.errors import error

        raise error(None, f"--until must be train, select, sample or evaluate, not '{until}'")
    warnings: list = []
    specs = compile_file(file, experiments=experiment, sets=set_ or (), warnings=warnings, max_runs=max_runs_)
    _warn(warnings)
    indexed = list(enumerate(specs))
    if only is not None:
        indexed = [(i, s) for i, s in indexed if i == only]
    if any(s.weights() is not None for _, s in indexed):  # missing released checkpoints: before any run
        from ncsn_core import released_files

        for _, s in indexed:
            released_files.preflight(s)
    # Launcher settings: an option given here, else the file's `launcher { }` block, else the
    # user's config (~/.config/repro/launcher.toml), else the defaults; never part of a hash.
    chosen = launch.settings(
        {
            "gpus": gpus,
            "nproc": nproc,
            "parallel": parallel,
            "launcher": launcher,
            "partition": partition,
            "gpus_per_node": gpus_per_node,
            "nodes": nodes,
            "time": time_,
        },
        [s for _, s in indexed],
    )
    gpus, nproc, parallel, launcher = chosen["gpus"], chosen["nproc"], chosen["parallel"], chosen["launcher"]
    partition, gpus_per_node, nodes, time_ = (
        chosen["partition"],
        chosen["gpus_per_node"],
        chosen["nodes"],
        chosen["time"],
    )
    from dsl.parser import read_source

    source = read_source(file)
    base = ["run", str(file), "--runs", str(runs_dir), "--until", until, "--max-runs", str(max_runs_)]
    for v in set_ or ():
        base += ["--set", v]
    for v in experiment or ():
        base += ["--experiment", v]
    if no_wait:
        base.append("--no-wait")

    def label(s) -> str:  # type: ignore[no-untyped-def]
        return f"{s.experiment} {dict(s.sweep) or ''} seed {s.seed}".replace("  ", " ")

    t0 = time.time()
    if launcher == "slurm" and dist.env_world() <= 1 and only is None:
        per_node = gpus_per_node or nproc
        jobs = [
            (label(s), [*base, "--only", str(i), "--device", device or ("cuda" if gpus_per_node else "cpu")])
            for i, s in indexed
        ]
        for _, s in indexed:
            _check_divisible(s, per_node * nodes)
        from ncsn_core import layout

        settings = {
            "partition": partition,
            "nodes": nodes,
            "gpus_per_node": gpus_per_node,
            "time": time_,
            "cluster": slurm_cluster or "slurm",
            "name": Path(file).stem,
        }
        submitted = launch.submit_slurm(jobs, settings, layout.cache_dir(runs_dir).parent / ".slurm")
        for (lab, _), job in zip(jobs, submitted, strict=True):
            typer.echo(f"{lab}: submitted job {job.job_id}")
        if slurm_cluster in ("debug", "local"):  # jobs on this machine: wait for them
            for (lab, _), job in zip(jobs, submitted, strict=True):
                try:
                    job.result()
                except Exception as e:  # noqa: BLE001 - the job's failure, in one line
                    raise launch.WorkerFailed(
                        f"{lab}: the job failed: {str(e).strip().splitlines()[-1]}"
                    ) from None
                typer.echo(f"{lab}: done")
        return

    gpu_ids = launch.parse_gpus(gpus) if gpus else None
    want_cuda = gpu_ids is not None or (device.startswith("cuda")) or (not device and launch.gpu_count() > 0)
    if dist.env_world() <= 1:  # not a worker: choose the devices, start workers or runs
        if nproc > 1 and gpu_ids is None and want_cuda:
            gpu_ids = launch.parse_gpus(str(nproc))
        per_run = nproc
        if gpu_ids is not None and parallel == 1 and len(indexed) > 1 and len(gpu_ids) >= 2 * nproc:
            parallel = len(gpu_ids) // nproc  # a sweep over GPUs: one run per device group
        if gpu_ids is not None and parallel == 1:
            per_run = len(gpu_ids)
        for _, s in indexed:
            _check_divisible(s, per_run)
        if parallel > 1 and len(indexed) > 1 and only is None:
            slots = launch.device_slots(gpu_ids, parallel, nproc)
            dev = "cuda" if gpu_ids is not None else (device or "cpu")
            extra = ["--device", dev] + (["--nproc", str(nproc)] if nproc > 1 else [])
            jobs = [(label(s), [*base, "--only", str(i), *extra]) for i, s in indexed]
            codes = launch.schedule(jobs, slots)
            failed = [jobs[k][0] for k, c in enumerate(codes) if c]
            typer.echo(f"done in {time.time() - t0:.1f}s" + (f"; {len(failed)} failed" if failed else ""))
            if failed:
                raise launch.WorkerFailed(f"{len(failed)} of {len(jobs)} runs failed: {'; '.join(failed)}")
            return
        if per_run > 1:
            dev = "cuda" if gpu_ids is not None else (device or "cpu")
            extra = ["--device", dev]
            if only is not None:
                extra += ["--only", str(only)]
            code = launch.spawn([*base, *extra], per_run, gpu_ids)
            if code:
                raise typer.Exit(code)
            return
        if gpu_ids is not None:  # one GPU chosen
            device = f"cuda:{gpu_ids[0]}"
    for k, (_i, s) in enumerate(indexed):
        if len(indexed) > 1:
            typer.echo(f"[{k + 1}/{len(indexed)}] {label(s)}")
        out = run_spec(
            s,
            runs_dir=runs_dir,
            device=device or None,
            until=until,
            source_text=source,
            wait=not no_wait,
            overrides=tuple(set_ or ()),
        )
        typer.echo(f"{s.experiment}: {out}")
    typer.echo(f"done in {time.time() - t0:.1f}s")


def _check_divisible(spec, world: int) -> None:  # type: ignore[no-untyped-def]
    """A global batch that does not split over ``world`` processes: an error before anything starts."""
    if world > 1 and spec.trains and spec.train is not None and spec.weights() is None:
        from ncsn_core.distributed import BatchNotDivisible

        bs = int(spec.train.kwargs()["batch_size"])
        if bs % world:
            ok = [k for k in range(1, min(bs, 64) + 1) if bs % k == 0]
            lo = bs - bs % world
            raise BatchNotDivisible(
                f"{spec.experiment}: train.batch_size = {bs} cannot be split over {world} processes: use a "
                f"multiple of {world} (e.g. {lo or lo + world} or {lo + world}) or a process count dividing {bs} "
                f"({', '.join(map(str, ok))}); the per-process batch is the global batch / processes"
            )


@app.command()
@_guard
def export(
    source: Annotated[Path, typer.Argument(help="a run folder (one train stage) or a repro checkpoint file")],
    format: Annotated[str, typer.Option("--format", "-f", help="ncsnv2 or ncsn")] = "ncsnv2",
    out: Annotated[Path, typer.Option("--out", "-o", help="the checkpoint file to write")] = Path(
        "checkpoint.pth"
    ),
) -> None:
    """Write a repro checkpoint in the official code's layout (docs/released.md)."""
    from ncsn_core.released import export as export_checkpoint

    typer.echo(export_checkpoint(source, format, out))


def _papers_specs(papers: Optional[Path]) -> list[dict]:  # noqa: UP045
    """The canonical specs of every .exp file in ``papers`` (default: ./papers when present)."""
    expected: list[dict] = []
    folder = papers if papers is not None else (Path("papers") if Path("papers").is_dir() else None)
    if folder is not None:
        from dsl.compiler import compile_file

        for f in sorted(folder.glob("*.exp")):
            try:  # a broken file elsewhere must not hide the report
                expected += [s.canonical() for s in compile_file(f, compute_auto=False)]
            except DiagnosticError as e:
                typer.echo(f"note: skipping {f} ({e.diagnostics[0].message})", err=True)
    return expected


REPORT_FORMATS = ("md", "html", "tex", "json", "text")


@app.command()
@_guard
def report(
    runs_dir: Annotated[Path, typer.Argument(help="runs directory")] = Path("runs"),
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="md, html, tex, json or text (default: from --out's suffix; text on a terminal; else md)",
        ),
    ] = "",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file")] = None,  # noqa: UP045
    papers: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="folder of .exp files whose published numbers are listed even if not run"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="relative tolerance of the verdict when a paper gives none")
    ] = 0.10,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON document (same as --format json)")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="show the rows of experiments not run in full (default: a list)")
    ] = False,
    width: Annotated[int, typer.Option(help="terminal width of --format text", min=40)] = 100,
) -> None:
    """Reproduced numbers beside the published ones: runs by paper and experiment, verdicts
    where the protocol matches, sweeps pivoted, ablations against their parent, methods compared."""
    from reports.reporter import report as render_report

    if as_json:
        format = "json"
    if not format:
        suffix = {".html": "html", ".htm": "html", ".tex": "tex", ".json": "json", ".txt": "text"}
        if out is not None:
            format = suffix.get(out.suffix, "md")
        else:
            format = "text" if sys.stdout.isatty() else "md"
    if format not in REPORT_FORMATS:
        from dsl.errors import error

        raise error(None, f"--format must be md, html, tex, json or text, not '{format}'")
    expected = _papers_specs(papers)
    text = render_report(runs_dir, format, out, expected, tolerance, show_all=show_all, width=width)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        typer.echo(f"wrote {out}")


def _compile_all(files: list[Path], sets: Optional[list[str]] = None):  # type: ignore[no-untyped-def]  # noqa: UP045
    """(resolved, canonical spec) pairs of every experiment of ``files``; auto values computed
    only for the experiments that use them (their hashes depend on them)."""
    from dsl.check import check
    from dsl.resolve import load, resolve

    out = []
    for f in files:
        res = resolve(load(f), None, sets or [])
        plain = check(res, compute_auto=False)
        for r, s in zip(res, plain):
            spec = s
            if any(True for _ in _autos(s)):
                spec = check([r], compute_auto=True)[0]
            out.append((f, r, spec.canonical()))
    return out


def _autos(spec):  # type: ignore[no-untyped-def]
    from ncsn_core.values import AUTO

    for field in ("data", "noise", "network", "loss", "train", "sample", "evaluate"):
        b = getattr(spec, field)
        if b is not None:
            yield from (k for k, v in b.params if v is AUTO)
    for st in spec.stages:
        yield from (k for k, v in st.params if v is AUTO)


@app.command("ls")
@_guard
def ls_(
    runs_dir: Annotated[Path, typer.Argument(help="runs directory")] = Path("runs"),
    file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--file", help="only the runs of this .exp file (and tell which are stale)"),
    ] = None,
    status: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--status", help="only runs with this status: done, running, failed or stale"),
    ] = None,
    papers: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="folder of .exp files a run's source.exp is looked up in (default: ./papers)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON list")] = False,
) -> None:
    """Every run: file, experiment, status (done / running / failed at a stage / stale), hashes,
    key settings, metrics, age."""
    from reports.reporter import collect
    from reports.runs import STATUSES, age_text, find_source, ls_rows, metric_text

    if status is not None and status not in STATUSES:
        from dsl.errors import error

        raise error(None, f"--status must be one of {', '.join(STATUSES)}, not '{status}'")
    if file is not None and not file.is_file():
        from dsl.errors import error

        raise error(None, f"--file {file}: no such file")
    folders = [file] if file is not None else [papers or Path("papers")]
    files: dict[str, str] = {}
    needed: set[tuple[Path, tuple[str, ...]]] = set()  # (file, the --set values of a run made from it)
    runs = collect(runs_dir)
    for r in runs:
        f = find_source(r, folders)
        if f is not None:
            files[str(r.path)] = str(f)
            needed.add((f, r.overrides))
    if file is not None:  # its runs may come from an earlier text of it: every run's --set values
        needed |= {(file, r.overrides) for r in runs} | {(file, ())}
    compiled: dict[object, list[dict]] = {}
    for f, sets in sorted(needed):
        try:
            for _, _, spec in _compile_all([f], list(sets)):
                key = (str(spec["experiment"]), sets) if sets else str(spec["experiment"])
                compiled.setdefault(key, []).append(spec)
        except DiagnosticError as e:
            with_sets = f" with --set {' '.join(sets)}" if sets else ""
            typer.echo(f"note: {f}{with_sets} does not compile now ({e.diagnostics[0].message})", err=True)
    rows = ls_rows(runs_dir, compiled, files)
    if file is not None:
        names = {n if isinstance(n, str) else n[0] for n, specs in compiled.items() if specs}
        rows = [r for r in rows if r["experiment"] in names]
        for r in rows:
            r["file"] = r["file"] or str(file)
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"no runs under {runs_dir}" + (f" with status {status}" if status else ""))
        return
    lines = []
    for r in rows:
        st = r["status"] if r["status"] == "done" else f"{r['status']}: {r['detail']}"
        lines.append(f"{r['label']}  [{r['hash']}]  {age_text(r['age_seconds'])} ago")
        lines.append(f"    status: {st}")
        if r["file"] or r["set"]:
            sets = "".join(f" --set {v}" for v in r["set"])
            lines.append(f"    file: {r['file'] or '?'}{sets}")
        lines.append("    " + ", ".join(f"{k} {v}" for k, v in r["settings"].items()))
        lines.append(f"    metrics: {metric_text(r['metrics'])}")
    import textwrap

    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out += textwrap.wrap(line, 100, subsequent_indent=indent, break_on_hyphens=False) or [""]
    typer.echo("\n".join(out))


@app.command("tb")
@_guard
def tb(
    runs_dir: Annotated[
        Path, typer.Argument(help="a runs folder, an experiment's folder or one run's folder")
    ] = Path("runs"),
) -> None:
    """Print the command that opens TensorBoard on the training logs (train/tb/) under a runs
    folder: every run's, each named <experiment>/<run-hash>/seed-<k>."""
    import shlex

    from ncsn_core import layout

    if not runs_dir.is_dir():
        from dsl.errors import error

        raise error(None, f"{runs_dir}: no such runs folder")
    found = sorted(
        p for p in runs_dir.rglob(layout.TENSORBOARD) if p.is_dir() and p.parent.name == layout.TRAIN
    )
    if not found:
        typer.echo(
            f"no TensorBoard logs under {runs_dir} (train.tensorboard is on by default and needs "
            "the tensorboard package: pip install 'repro[tensorboard]')",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"tensorboard --logdir {shlex.quote(str(runs_dir))}")
    typer.echo(f"# {len(found)} training log(s), e.g. {found[0].relative_to(runs_dir).as_posix()}", err=True)


def _diff_side(arg: str, runs_dir: Path, sets: list[str]):  # type: ignore[no-untyped-def]
    """A run folder (its spec.json), or FILE.exp[:experiment] compiled (with provenance)."""
    from reports.reporter import collect
    from reports.runs import find_run, provenance

    p = Path(arg)
    if p.is_dir():
        recs = [r for r in collect(p) if r.path == p] or collect(p)
        if len(recs) != 1 or not recs[0].spec:
            from dsl.errors import error

            raise error(None, f"{arg}: not a run folder (no spec.json)")
        return arg, recs[0].spec, None, recs[0]
    file, _, name = arg.partition(":")
    if not Path(file).is_file():
        from dsl.errors import error

        raise error(None, f"{arg}: neither a run folder nor FILE.exp[:experiment]")
    pairs = _compile_all([Path(file)], sets)
    if name:
        pairs = [x for x in pairs if x[2]["experiment"] == name]
    if not pairs:
        from dsl.errors import error

        raise error(None, f"{arg}: no experiment '{name}' in {file}")
    if len({x[2]["experiment"] for x in pairs}) > 1 or len(pairs) > 1:
        from dsl.errors import error

        names = ", ".join(dict.fromkeys(str(x[2]["experiment"]) for x in pairs))
        raise error(None, f"{arg}: {file} compiles to several runs ({names}); name one: {file}:NAME")
    _, res, spec = pairs[0]
    return arg, spec, provenance(res), find_run(runs_dir, spec)


@app.command()
@_guard
def diff(
    a: Annotated[str, typer.Argument(help="a run folder, or FILE.exp[:experiment]")],
    b: Annotated[str, typer.Argument(help="a run folder, or FILE.exp[:experiment]")],
    runs_dir: Annotated[
        Path, typer.Option("--runs", help="where the runs of compiled files are looked up")
    ] = Path("runs"),
    sets: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="override a value of both files")
    ] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """The settings that differ between two runs or experiments, where each value came from,
    and the metric deltas."""
    from reports.runs import diff_doc

    an, aspec, awhere, arun = _diff_side(a, runs_dir, sets or [])
    bn, bspec, bwhere, brun = _diff_side(b, runs_dir, sets or [])
    doc = diff_doc(an, aspec, bn, bspec, awhere, bwhere, arun, brun)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    lines = [
        f"A: {an} ({doc['a']['experiment']}, {doc['a']['hash']})",
        f"B: {bn} ({doc['b']['experiment']}, {doc['b']['hash']})",
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


@app.command()
@_guard
def bench(
    what: Annotated[str, typer.Argument(help="train, sample, all, or cli (start-up latency)")] = "all",
    device: Annotated[str, typer.Option(help="cpu or cuda (default: cuda when there is one)")] = "",
    size: Annotated[
        str, typer.Option(help="quick (small sizes) or paper (the papers' sizes and batches)")
    ] = "quick",
    quick: Annotated[bool, typer.Option("--quick", help="same as --size quick")] = False,
    network: Annotated[list[str] | None, typer.Option(help="only this network (repeatable)")] = None,
    precision: Annotated[str, typer.Option(help="fast path: train.precision (auto, fp32, bf16)")] = "auto",
    channels_last: Annotated[
        str, typer.Option(help="fast path: train.channels_last (auto, on, off)")
    ] = "auto",
    compile_net: Annotated[
        str, typer.Option("--compile", help="fast path: train.compile (auto, on, off)")
    ] = "auto",
    fused: Annotated[str, typer.Option(help="fast path: train.fused_optimizer (auto, on, off)")] = "auto",
    sample_precision: Annotated[str, typer.Option(help="fast path: sample.precision (fp32, bf16)")] = "fp32",
    sample_compile: Annotated[str, typer.Option(help="fast path: sample.compile (off, on, graphs)")] = "off",
    peak: Annotated[float, typer.Option(help="the device's peak TFLOP/s (unknown devices)")] = 0.0,
    repeats: Annotated[int, typer.Option(help="timed repeats per path (0: the size's default)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Time the real training step and sampler step, reference path and fast path interleaved."""
    if what == "cli":
        from dsl import clibench

        for line in clibench.run():
            typer.echo(line)
        return
    import json

    from ncsn_core.bench import run_bench

    result: dict = {}
    speed = {
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_net,
        "fused_optimizer": fused,
    }
    lines = run_bench(
        what,
        device or None,
        "quick" if quick else size,
        networks=tuple(network or ()),
        speed=speed,
        sample_speed={"precision": sample_precision, "compile": sample_compile},
        peak=peak or None,
        repeats=repeats or None,
        result=result,
    )
    for line in lines:
        if as_json:
            typer.echo(line, err=True)
        else:
            typer.echo(line)
    if as_json:
        typer.echo(json.dumps(result))


def main() -> None:  # console script entry point
    app(prog_name="repro")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
