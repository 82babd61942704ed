"""The interpolate stage: NCSNv2's interpolation figure, drawn from the trained model.

What the official code does (ermongroup/ncsnv2, ``models/__init__.py``:
``anneal_Langevin_dynamics_interpolation``, called by ``runners/ncsn_runner.py``:
``NCSNRunner.sample`` when ``sampling.interpolation`` is true): ``batch_size`` initial states
(uniform, or data plus σ₁ noise with ``data_init``) are each repeated ``n_interpolations`` times,
so every sample of a row starts from the same state. At every Langevin step two standard normal
noises z_p, z_q are drawn per row, and the row's j-th sample takes the noise
cos θ_j·z_p + sin θ_j·z_q with θ_j = linspace(0, π/2, n_interpolations)[j] — a spherical
interpolation, so every sample's noise is still N(0, I) and the row's first and last samples are
two ordinary annealed Langevin chains from the same start driven by z_p and by z_q. The update
is the ordinary one (x + step·s + √(2·step)·z, step = step_lr·σ_i²/σ_L²; Alg. 1 with
ε = 2·step_lr), with no clamping and no final denoising, and the state after the last step is
kept (``final_only``). The grid is ``make_grid(samples, nrow=n_interpolations)``: one row per
initial state, ``n_interpolations`` columns.

Here the update is the project's one annealed Langevin loop
(:func:`~ncsn_core.samplers.sample_annealed_langevin`) with a ``noise_transform`` that makes
each row's noise the interpolation of two of the step's draws. The stage writes
interpolation.pt ([rows, columns, ...]), interpolation.png and results.json; its hash covers the
train stage's hash and the interpolate block (:meth:`~ncsn_core.spec.RunSpec.interpolate_hash`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ncsn_core import distributed as dist
from ncsn_core import progress
from ncsn_core.images import save_interpolation
from ncsn_core.samplers import on_level_end, sample_annealed_langevin
from ncsn_core.stages.base import Context, Done, Outputs, Stage, build
from ncsn_core.stages.sampling import load_model

KIND = "interpolate"  # the stage folder: interpolate-<hash>/
TENSOR = "interpolation.pt"
FIGURE = "interpolation.png"
RESULTS = "results.json"
INTERPOLATE_SEED_OFFSET = 3  # 0: samples, 1: extra evaluation samples, 2: checkpoint selection


def angles(columns: int) -> torch.Tensor:
    """θ_j = (π/2)·j/(columns − 1), j = 0 … columns − 1 (the official torch.linspace(0, π/2, n))."""
    return torch.linspace(0.0, math.pi / 2, columns, dtype=torch.float64)


def shared_noise(rows: int, columns: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The noise of a step for the [rows·columns, ...] batch laid out row by row: of the step's
    draw z, each row's first two samples' entries are z_p and z_q, and the row's j-th sample
    takes cos θ_j·z_p + sin θ_j·z_q (exactly z_p at j = 0; z_q at the last, up to cos(π/2) ≈ 6e-17)."""
    theta = angles(columns)

    def transform(z: torch.Tensor, i: int) -> torch.Tensor:
        zz = z.reshape(rows, columns, *z.shape[1:])
        shape = (1, columns) + (1,) * (z.dim() - 1)
        cos = torch.cos(theta).to(z.dtype).to(z.device).reshape(shape)
        sin = torch.sin(theta).to(z.dtype).to(z.device).reshape(shape)
        return (zz[:, :1] * cos + zz[:, 1:2] * sin).reshape(z.shape)

    return transform


def sample_interpolation(
    score: Callable[[torch.Tensor, int], torch.Tensor],
    x0: torch.Tensor,
    sigmas: list[float],
    *,
    columns: int,
    step_size: float,
    steps_per_level: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Alg. 1, α_i = ε·σ_i²/σ_L²) on ``columns`` copies of each of
    the ``rows`` initial states ``x0``, the copies of a row driven by the interpolated noise of
    :func:`shared_noise` (the official anneal_Langevin_dynamics_interpolation). Returns
    [rows, columns, ...]. Random draws, in order: one standard normal z of shape
    [rows·columns, ...] per step (its columns 0 and 1 are each row's z_p and z_q)."""
    rows = x0.shape[0]
    x = x0[:, None].expand(rows, columns, *x0.shape[1:]).reshape(rows * columns, *x0.shape[1:])
    out = sample_annealed_langevin(
        score,
        x.contiguous(),
        sigmas,
        step_size=step_size,
        steps_per_level=steps_per_level,
        generator=generator,
        noise_transform=shared_noise(rows, columns),
        name="interpolate",
    )
    return out.reshape(rows, columns, *x0.shape[1:])


class Interpolate(Stage):
    name = "interpolate"
    kind = KIND

    def applies(self, ctx: Context, done: Done) -> bool:
        return ctx.spec.interpolate is not None and done.get("train") is not None

    def hash(self, ctx: Context) -> str:
        return ctx.spec.interpolate_hash()

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        train_dir = done.get("train")
        assert train_dir is not None
        return {"train": ctx.record(train_dir)}

    def every_rank(self, ctx: Context) -> bool:
        return False  # one figure: rank 0 alone

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        assert ctx.spec.interpolate is not None
        b = ctx.spec.interpolate.kwargs()
        model, minfo = load_model(ctx, done.get("train"), b["use_ema"], b["checkpoint"])
        noise = ctx.noise()
        converts = bool(getattr(noise, "preconditioned_output", False))  # as the sample stage

        def score(x: torch.Tensor, i: int) -> torch.Tensor:
            idx = torch.full((x.shape[0],), int(i), device=x.device, dtype=torch.long)
            out = model(x, idx)
            return noise.score_of(out, i) if converts else out

        rows, columns = int(b["rows"]), int(b["columns"])
        gen = torch.Generator(device=ctx.device).manual_seed(
            dist.batch_seed(ctx.spec.seed, INTERPOLATE_SEED_OFFSET, 0)
        )
        sigmas = [float(s) for s in noise.sigmas.detach().cpu().tolist()]
        t0 = time.perf_counter()
        bar = progress.Bar("interpolate", len(sigmas), unit="levels")
        with (
            torch.inference_mode(),
            bar,
            on_level_end(lambda _s, i, n: bar.update(i + 1, f"level {i + 1}/{n}")),
        ):
            x0 = build("init", b["init"])(rows, tuple(ctx.data.shape), gen, ctx.device, ctx.data)
            x = sample_interpolation(
                score,
                x0,
                sigmas,
                columns=columns,
                step_size=float(b["step_size"]),
                steps_per_level=int(b["steps_per_level"]),
                generator=gen,
            ).cpu()
        info = {
            "rows": rows,
            "columns": columns,
            "angles": angles(columns).tolist(),
            "nfe_per_sample": int(b["steps_per_level"]) * len(sigmas),
            "seconds": round(time.perf_counter() - t0, 3),
            "device": str(ctx.device),
        }
        data = ctx.data
        files: dict[str, Any] = {
            TENSOR: x,
            FIGURE: lambda p: save_interpolation(x, data, p),
            RESULTS: {**info, **minfo},
        }
        note = f"interpolate: {rows}×{columns} samples in {info['seconds']}s → {folder / FIGURE}"
        return Outputs(files, note=note)


STAGE = Interpolate()
