"""`repro doctor`: the CUDA tests, `repro bench`, compiled-graph sampling against eager, bf16
against fp32 sampling (FID(domain) of a short digits run) and the plan's memory error, each
guarded and time-boxed, written as JSON + markdown (ncsn_core/doctor.py, docs/performance.md).
Registered into the cli's app by ``register`` (the dsl/commands convention)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.commands.common import guard

PARTS = ("cuda_tests", "bench", "graphs", "bf16_fid", "plan_memory")


@guard
def doctor(
    out: Annotated[Path, typer.Option("--out", help="folder for doctor.json and doctor.md")] = Path("doctor"),
    gpu: Annotated[
        bool, typer.Option("--gpu", help="paper sizes on CUDA (about 8 minutes on one H100/H200)")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="small sizes (the default without CUDA; under a minute)")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available)")] = "",
    part: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--part", help=f"only these parts (repeatable): {', '.join(PARTS)}"),
    ] = None,
) -> None:
    """Check this machine's fast path: is it right, and how fast? Writes OUT/doctor.json and OUT/doctor.md."""
    from dsl.compiler import compile_file
    from ncsn_core.doctor import run_doctor
    from ncsn_core.errors import UserError

    if gpu and quick:
        raise UserError("--gpu and --quick: choose one (--gpu: paper sizes on CUDA; --quick: small sizes)")
    bad = [p for p in part or () if p not in PARTS]
    if bad:
        raise UserError(f"--part {bad[0]}: unknown part; use {', '.join(PARTS)}")
    if gpu:
        import torch

        if not torch.cuda.is_available():
            raise UserError("--gpu: no CUDA device here (torch.cuda.is_available() is False); use --quick")
    result = run_doctor(
        out,
        quick=True if quick else (False if gpu else None),
        device=device or None,
        compile=lambda path, experiments: compile_file(path, experiments=experiments, compute_auto=True),
        parts=tuple(part or PARTS),
        log=typer.echo,
    )
    typer.echo(f"wrote {out / 'doctor.json'} and {out / 'doctor.md'} ({result['seconds']:.0f} s)")
    if not result["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
