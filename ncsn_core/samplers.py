"""Sampler stages and initial samples (NCSN Eq. 4, Alg. 1, Alg. 2; final denoising).

Filled in by the samplers' owner; :class:`SampleContext` is the shared contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from ncsn_core.noise import NoiseSchedule


class SamplerDiverged(RuntimeError):
    """Non-finite values appeared in a sampler (user-facing message names stage and level)."""


@attrs.define
class SampleContext:
    """What a sampler stage may use.

    ``score(x, i)`` evaluates the score model at level index ``i`` (an int; the stage
    passes the whole batch). ``exact_score(x, sigma)`` exists for toy data with a known
    density. ``record(name, x)`` stores intermediate samples when recording is on.
    """

    score: Callable[[torch.Tensor, int], torch.Tensor]
    noise: NoiseSchedule
    generator: torch.Generator | None = None
    record: Callable[[str, torch.Tensor], None] | None = None
    exact_score: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    data: Any = None
    stage_name: str = ""

    @property
    def sigmas(self) -> torch.Tensor:
        return self.noise.sigmas


# ----------------------------------------------------------------------------- helpers
def _check_finite(flag: torch.Tensor, stage: str, i: int, sigma: float) -> None:
    """One host sync per noise level: raise if any non-finite value appeared."""
    if bool(flag):
        raise SamplerDiverged(
            f"{stage} diverged at noise level {i + 1} (σ = {sigma:.4g}): non-finite values in the samples. "
            f"Lower step_size (or check the score model)."
        )


def _randn(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def _score(
    ctx: SampleContext, x: torch.Tensor, i: int, use_exact: bool, sigma: float | None = None
) -> torch.Tensor:
    if use_exact:
        if ctx.exact_score is None:
            from ncsn_core.errors import ReproError

            raise ReproError(
                f"{ctx.stage_name}: use_exact = true needs data with a known density (mixture2d)"
            )
        return ctx.exact_score(x, float(ctx.sigmas[i]) if sigma is None else sigma)
    return ctx.score(x, i)


# ----------------------------------------------------------------------------- stages
class Langevin:
    """Langevin dynamics, Eq. 4: x ← x + ε/2·s(x) + √ε·z, at one fixed noise level."""

    def __init__(self, steps: int, step_size: float, level: int, use_exact: bool, record_every: int) -> None:
        self.steps, self.eps, self.level, self.use_exact, self.record_every = (
            steps,
            step_size,
            level,
            use_exact,
            record_every,
        )

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        L = ctx.noise.num_levels
        i = self.level % L
        bad = torch.zeros((), dtype=torch.bool, device=x.device)
        for t in range(self.steps):
            # With the exact score, plain Langevin samples the data density itself (σ = 0, Fig. 3b).
            s = _score(ctx, x, 0, True, sigma=0.0) if self.use_exact else ctx.score(x, i)
            x = x + 0.5 * self.eps * s + self.eps**0.5 * _randn(x, ctx.generator)
            bad |= ~torch.isfinite(x).all()
            if self.record_every and ctx.record and (t + 1) % self.record_every == 0:
                ctx.record(f"{ctx.stage_name}:{t + 1}", x)
        _check_finite(bad, ctx.stage_name or "langevin", i, float(ctx.sigmas[i]))
        return x

    def nfe(self, num_levels: int) -> int:
        return 0 if self.use_exact else self.steps


class AnnealedLangevin:
    """Annealed Langevin dynamics, Alg. 1 exactly as written:
    α_i = ε·σ_i²/σ_L²;  x ← x + α_i/2·s(x, σ_i) + √α_i·z.
    The official code's step_lr equals ε/2: its update is x + step·s + √(2·step)·z with
    step = step_lr·(σ_i/σ_L)². So the paper's ε = 2e-5 is the official step_lr = 1e-5."""

    def __init__(self, steps_per_level: int, step_size: float, use_exact: bool, record_every: int) -> None:
        self.T, self.eps, self.use_exact, self.record_every = (
            steps_per_level,
            step_size,
            use_exact,
            record_every,
        )

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        sig = ctx.sigmas
        sL2 = float(sig[-1]) ** 2
        for i in range(ctx.noise.num_levels):
            alpha = self.eps * float(sig[i]) ** 2 / sL2
            bad = torch.zeros((), dtype=torch.bool, device=x.device)
            for _ in range(self.T):
                s = _score(ctx, x, i, self.use_exact)
                x = x + 0.5 * alpha * s + alpha**0.5 * _randn(x, ctx.generator)
                bad |= ~torch.isfinite(x).all()
            if self.record_every and ctx.record and ((i + 1) * self.T) % self.record_every == 0:
                ctx.record(f"{ctx.stage_name}:level{i + 1}", x)
            _check_finite(bad, ctx.stage_name or "annealed_langevin", i, float(sig[i]))
        return x

    def nfe(self, num_levels: int) -> int:
        return 0 if self.use_exact else self.T * num_levels


class Denoise:
    """Final denoising: x + σ_L²·s(x, σ_L) (Tweedie; NCSNv2, Jolicoeur-Martineau et al.)."""

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        L = ctx.noise.num_levels
        x = x + float(ctx.sigmas[-1]) ** 2 * ctx.score(x, L - 1)
        _check_finite(~torch.isfinite(x).all(), ctx.stage_name or "denoise", L - 1, float(ctx.sigmas[-1]))
        return x

    def nfe(self, num_levels: int) -> int:
        return 1


def make_mask(
    shape: tuple[int, ...], kind: str, fraction: float, gen: torch.Generator | None, device: Any
) -> torch.Tensor:
    """1 where pixels are known (Alg. 2's m)."""
    c, h, w = shape
    m = torch.zeros(shape, device=device)
    if kind == "half":  # the top rows are known (NCSN Fig. 6 occludes the bottom)
        m[:, : int(round(h * (1 - fraction))), :] = 1
    elif kind == "left":
        m[:, :, : int(round(w * (1 - fraction)))] = 1
    elif kind == "center":
        m[:] = 1
        ch, cw = int(round(h * fraction**0.5)), int(round(w * fraction**0.5))
        t, l_ = (h - ch) // 2, (w - cw) // 2
        m[:, t : t + ch, l_ : l_ + cw] = 0
    else:  # random pixels
        m = (torch.rand((1, h, w), generator=gen, device=device) >= fraction).float().expand(c, h, w).clone()
    return m


class Inpainting:
    """Alg. 2: annealed Langevin where the known pixels are replaced, after every step, by the
    reference image perturbed at the current level: x ← x ⊙ (1 − m) + (x_ref + σ_i z̃) ⊙ m."""

    def __init__(
        self, steps_per_level: int, step_size: float, mask: str, mask_fraction: float, split: str
    ) -> None:
        self.T, self.eps, self.mask, self.fraction, self.split = (
            steps_per_level,
            step_size,
            mask,
            mask_fraction,
            split,
        )

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        data = ctx.data
        ref_all = data.as_float(self.split)
        n = x.shape[0]
        ref = ref_all[torch.arange(n) % ref_all.shape[0]].to(x.device)
        m = make_mask(tuple(x.shape[1:]), self.mask, self.fraction, ctx.generator, x.device)
        self.last_mask, self.last_reference = m, ref
        if ctx.record:
            ctx.record(f"{ctx.stage_name}:occluded", ref * m)
        sig = ctx.sigmas
        sL2 = float(sig[-1]) ** 2
        for i in range(ctx.noise.num_levels):
            alpha = self.eps * float(sig[i]) ** 2 / sL2
            y = ref + float(sig[i]) * _randn(ref, ctx.generator)  # Alg. 2 lines 4-5
            bad = torch.zeros((), dtype=torch.bool, device=x.device)
            for _ in range(self.T):
                x = x + 0.5 * alpha * ctx.score(x, i) + alpha**0.5 * _randn(x, ctx.generator)
                x = x * (1 - m) + y * m
                bad |= ~torch.isfinite(x).all()
            _check_finite(bad, ctx.stage_name or "inpainting", i, float(sig[i]))
        return x

    def nfe(self, num_levels: int) -> int:
        return self.T * num_levels


def _register() -> None:
    from ncsn_core.registry import Bool, Choice, Float, Int, Param, register

    def auto_step(ctx: Any) -> Any:
        from ncsn_core.techniques import auto_step_size

        return auto_step_size(ctx)

    eps = Float(min=0.0, exclusive_min=True)
    rec = Param(
        "record_every", Int(min=0), 0, "record intermediate samples every this many steps (0 = off; Fig. 4)"
    )
    exact = Param(
        "use_exact", Bool(), False, "use the data's exact score (toy mixtures) instead of the network"
    )

    @register(
        "stage",
        "langevin",
        params=[
            Param("steps", Int(min=1), 1000, "T"),
            Param("step_size", eps, 2e-5, "ε of Eq. 4"),
            Param("level", Int(), -1, "which noise level's score the network uses (-1 = the last, σ_L)"),
            exact,
            rec,
        ],
        doc="Langevin dynamics (NCSN Eq. 4) at one noise level; with use_exact, the data score itself",
    )
    def langevin(steps: int, step_size: float, level: int, use_exact: bool, record_every: int) -> Langevin:
        return Langevin(steps, step_size, level, use_exact, record_every)

    @register(
        "stage",
        "annealed_langevin",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T, Langevin steps per noise level"),
            Param(
                "step_size",
                eps,
                2e-5,
                "ε of Alg. 1 (official step_lr = ε/2); auto: NCSNv2 Technique 4",
                auto=auto_step,
            ),
            exact,
            rec,
        ],
        doc="annealed Langevin dynamics (NCSN Alg. 1): α_i = ε σ_i²/σ_L², x + α_i/2·s + √α_i·z",
    )
    def annealed_langevin(
        steps_per_level: int, step_size: float, use_exact: bool, record_every: int
    ) -> AnnealedLangevin:
        return AnnealedLangevin(steps_per_level, step_size, use_exact, record_every)

    @register(
        "stage",
        "inpainting",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T"),
            Param("step_size", eps, 2e-5, "ε of Alg. 2"),
            Param("mask", Choice(("half", "left", "center", "random")), "half", "which pixels are occluded"),
            Param("mask_fraction", Float(0.0, 1.0), 0.5, "fraction of pixels occluded"),
            Param("split", Choice(("test", "train")), "test", "where the reference images come from"),
        ],
        doc="inpainting with annealed Langevin dynamics (NCSN Alg. 2); known pixels are kept",
    )
    def inpainting(
        steps_per_level: int, step_size: float, mask: str, mask_fraction: float, split: str
    ) -> Inpainting:
        return Inpainting(steps_per_level, step_size, mask, mask_fraction, split)

    @register("stage", "denoise", doc="final denoising x + σ_L²·s(x, σ_L) (NCSNv2's 'w/ denoising')")
    def denoise() -> Denoise:
        return Denoise()

    @register(
        "init",
        "uniform",
        params=[Param("low", Float(), 0.0, "lower bound"), Param("high", Float(), 1.0, "upper bound")],
        doc="U[low, high] initial samples (the papers: U[0, 1] for images, U[-8, 8]² for Fig. 3)",
    )
    def uniform(low: float, high: float) -> Any:
        def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
            return low + (high - low) * torch.rand((n, *shape), generator=gen, device=device)

        return init

    @register(
        "init",
        "gaussian",
        params=[Param("mean", Float(), 0.0, "mean"), Param("std", Float(min=0.0), 1.0, "standard deviation")],
        doc="N(mean, std²) initial samples",
    )
    def gaussian(mean: float, std: float) -> Any:
        def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
            return mean + std * torch.randn((n, *shape), generator=gen, device=device)

        return init

    @register(
        "init",
        "data_noise",
        params=[Param("std", Float(min=0.0), 1.0, "noise added to the training images")],
        doc="training data plus Gaussian noise",
    )
    def data_noise(std: float) -> Any:
        def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
            cpu = torch.Generator().manual_seed(
                int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device))
            )
            idx = torch.randint(0, len(data), (n,), generator=cpu)
            x = data.batch(idx, cpu).to(device)
            return x + std * torch.randn(x.shape, generator=gen, device=device)

        return init


_register()
