"""`repro bench`: time the training and sampler steps (ncsn_core.bench), or the CLI's start-up (dsl.clibench)."""

from __future__ import annotations

from typing import Annotated

import typer

from dsl.commands.common import guard


@guard
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


def register(app: typer.Typer) -> None:
    app.command()(bench)
