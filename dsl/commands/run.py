"""`repro run`: run every experiment of a file here, on several GPUs or processes, or on SLURM (repro.api.run_specs, ncsn_core.launch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.commands.common import (
    DEFAULT_MAX_RUNS,
    ExpOpt,
    File,
    MaxRunsOpt,
    MultirunOpt,
    SetOpt,
    UseOpt,
    as_args,
    guard,
    warn,
    with_uses,
)


@guard
def run(
    file: File,
    set_: SetOpt = None,
    use: UseOpt = None,
    multirun: MultirunOpt = False,
    experiment: ExpOpt = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = "",
    runs_dir: Annotated[Path, typer.Option("--runs", help="where runs are written")] = Path("runs"),
    until: Annotated[
        str,
        typer.Option(
            help="stop after this stage: train, select, sample or evaluate (the default: every stage, the interpolation figure included)"
        ),
    ] = "evaluate",
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="stop with an error when another process is computing a stage"),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            "-k",
            help="a run that fails (diverging loss, …) is reported and the next one starts; exit 1 at the end",
        ),
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
    deterministic: Annotated[
        Optional[bool],  # noqa: UP045 - typer needs Optional here
        typer.Option(
            "--deterministic/--no-deterministic",
            help="deterministic algorithms, cuDNN, cuBLAS workspace (default: on for the CPU, off for CUDA; "
            "docs/reproducibility.md)",
        ),
    ] = None,
    threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--threads", min=1, help="intra-op CPU threads (recorded in env.json)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="print the plan (memory, micro-batch, FLOPs; repro plan), run nothing"
        ),
    ] = False,
) -> None:
    """Train, sample and evaluate every run of FILE (resuming what exists)."""
    from ncsn_core import distributed as dist
    from ncsn_core import launch
    from repro import api

    api.check_until(until)
    set_ = with_uses(use, set_)
    warnings: list = []
    specs = api.compile(
        file,
        sets=set_ or (),
        experiments=experiment,
        max_runs=max_runs_,
        warnings=warnings,
        multirun=multirun,
    )
    warn(warnings)
    indexed = list(enumerate(specs))
    if only is not None:
        indexed = [(i, s) for i, s in indexed if i == only]
    if dry_run:  # the plan needs no data, weights or checkpoints
        return _dry_run(file, [s for _, s in indexed])
    api.preflight([s for _, s in indexed], until)  # every missing dataset, weight file, checkpoint: at once
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
    from dsl.source import read_source

    source = read_source(file)
    base = ["run", str(file), "--runs", str(runs_dir), "--until", until, "--max-runs", str(max_runs_)]
    base += as_args(set_)
    for v in experiment or ():
        base += ["--experiment", v]
    if no_wait:
        base.append("--no-wait")
    if deterministic is not None:  # spawned, parallel and SLURM workers inherit the settings
        base.append("--deterministic" if deterministic else "--no-deterministic")
    if threads is not None:
        base += ["--threads", str(threads)]
    if multirun:
        base.append("--multirun")
    memory_checked = bool(device) and device.startswith("cuda")
    if memory_checked:  # a batch that cannot fit: exit 2 before anything is written
        _check_memory([s for _, s in indexed], device)
    if only is None and dist.env_world() <= 1:  # runs/.invocations/<date-time>/: this command, by date
        _record_invocation(runs_dir, ["repro", *base], file, set_ or (), multirun, [s for _, s in indexed])

    def label(s) -> str:  # type: ignore[no-untyped-def]
        return api.run_label(s, set_ or ())

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
    if not memory_checked:  # a batch that cannot fit: exit 2 before the run
        _check_memory([s for _, s in indexed], device)
    failed: list[str] = []
    for s, out in api.iter_runs(
        [s for _, s in indexed],
        source_text=source,
        runs_dir=runs_dir,
        device=device or None,
        until=until,
        wait=not no_wait,
        sets=set_ or (),
        log=typer.echo,
        deterministic=deterministic,
        threads=threads,
        keep_going=keep_going,
    ):
        lab = api.point_label(s.experiment, s.sweep, set_ or ())
        if isinstance(out, Exception):
            failed.append(f"{lab} seed {s.seed}")
            typer.echo(f"{lab}: failed: {out}", err=True)
            continue
        typer.echo(f"{lab}: {out}")
    typer.echo(f"done in {time.time() - t0:.1f}s" + (f"; {len(failed)} failed" if failed else ""))
    if failed:
        raise launch.WorkerFailed(
            f"{len(failed)} of {len(indexed)} runs failed (each said why above): {'; '.join(failed)}"
        )


def _record_invocation(runs_dir: Path, argv: list, file: Path, sets, multirun: bool, specs: list) -> None:  # type: ignore[no-untyped-def]
    """runs/.invocations/<date-time>/: the command, its --set values, links to its run folders."""
    from ncsn_core import layout
    from repro import api, invocations

    runs = [
        {
            "label": api.point_label(s.experiment, s.sweep, sets),
            "experiment": s.experiment,
            "hash": s.hash(),
            "path": str(layout.run_dir(runs_dir, s.experiment, s.hash())),
        }
        for s in specs
    ]
    try:
        invocations.record(runs_dir, argv=argv, file=file, sets=sets, multirun=multirun, runs=runs)
    except OSError as e:  # a read-only runs folder fails later, with the runner's own message
        typer.echo(f"note: no invocation record under {runs_dir}: {e}", err=True)


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


def _dry_run(file: Path, specs: list) -> None:
    """`--dry-run`: the plan of every run (ncsn_core.plan, fake tensors) and the file's cost."""
    from ncsn_core.cost import file_cost, file_cost_lines
    from ncsn_core.plan import markdown, plan_specs

    result = plan_specs(specs, file=str(file))
    typer.echo(markdown(result))
    for line in file_cost_lines(file_cost(specs)):
        typer.echo(line)
    typer.echo(f"# dry run: {len(specs)} run(s) planned in {result.seconds:.1f} s, nothing run")


def _check_memory(specs: list, device: str) -> None:
    """On CUDA, plan each run (fake tensors, about a second) and refuse one whose step cannot fit
    the device's free memory (check_fits' UserError: exit 2, with the micro-batch that fits)."""
    import torch

    if not torch.cuda.is_available() or not (device or "cuda").startswith("cuda"):
        return
    from ncsn_core.plan import check_fits, plan_spec

    dev = torch.device(device or "cuda")
    free, _total = torch.cuda.mem_get_info(dev)
    for s in specs:
        if s.network is None or s.train is None or s.train.get("micro_batch") is not None:
            continue  # a declared micro-batch, or "auto" (the train stage plans it on the device)
        try:
            plan = plan_spec(s)
        except Exception:  # noqa: BLE001 - a plan failure is the run's to report, with its position
            continue
        check_fits(plan, free)


def register(app: typer.Typer) -> None:
    app.command()(run)
