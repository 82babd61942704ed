"""ANSN's samplers: Alg. 1 as the paper prints it (the default), and the project's
Ĉ-preconditioned annealed Langevin (a named construction; docs/ansn.md, "Readings")."""

from __future__ import annotations

import attrs
import torch

from ncsn_core.samplers import SampleContext, host_sigmas, sample_annealed_langevin


@attrs.define
class AnnealedLangevinAlg1:
    """ANSN's Alg. 1 exactly as printed (§3.2, Song & Ermon's sampler with the paper's line 6):

        α_i = ε·σ_i²/σ_L²;  x̃_t ← x̃_{t−1} + α_i/(2σ_i)·s_θ(x̃_{t−1}) + √α_i·z_t,  z_t ~ N(0, I),

    T steps per level. No Ĉ: z_t is isotropic. ``drive = output`` puts the network's output
    itself in s_θ's place (the paper's symbol: with Eq. 3.1's loss the network outputs
    Σ_i·score, ``output = sigma_score``); ``drive = score`` puts the score read off the output
    there (ŝ = Σ_i⁻¹s_θ). ``score_scaling = none`` drops the printed 1/σ_i (NCSN's α_i/2).
    ``final = before_last_step`` returns the state before the last update (the official NCSN
    code's last image)."""

    T: int
    eps: float
    scaling: str  # divide_sigma | none
    drive: str  # output | score
    record_every: int
    final: str = "after_last_step"

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        fn = ctx.output if (self.drive == "output" and ctx.output is not None) else ctx.score
        return sample_annealed_langevin(
            fn, x, host_sigmas(ctx), step_size=self.eps, steps_per_level=self.T,
            generator=ctx.generator,
            score_scale=(lambda i, sigma: 1.0 / sigma) if self.scaling == "divide_sigma" else None,
            record=ctx.record, record_every=self.record_every, name=ctx.stage_name or "ansn_langevin",
            before_last_step=self.final == "before_last_step",
        )  # fmt: skip

    def nfe(self, num_levels: int) -> int:
        return self.T * num_levels


@attrs.define
class PreconditionedLangevin:
    """The project's construction (not in the paper): annealed Langevin preconditioned by a
    fixed SPD Ĉ, the Ĉ the last training batch used:
    α_i = ε σ_i²/σ_L²;  x ← x + α_i/2·k_i·Ĉ s(x, σ_i) + √α_i·Ĉ^{1/2} z,  T steps per level.

    With k_i = 1 (``score_scaling = none``) every level is a Langevin chain whose stationary law
    is the perturbed density for any fixed SPD Ĉ (Ĉ = I is NCSN's Alg. 1). ``divide_sigma``
    uses k_i = 1/σ_i (Alg. 1's α_i/(2σ_i) carried over): the chain then tempers the density,
    its stationary law on a Gaussian N(m, S) being N(m, σ_i·S), a covariance error of
    (1 − σ_i)·S, about S itself for small σ_i (tests/test_sampler_loop.py measures it). With an
    isotropic noise (no ``precondition_sqrt``) Ĉ = I.
    """

    T: int  # steps per level
    eps: float  # ε
    scaling: str  # none | divide_sigma
    record_every: int

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        noise = ctx.noise
        score, precondition = ctx.score, noise.precondition  # Ĉ s
        if ctx.output is not None and hasattr(noise, "preconditioned_of"):  # Ĉs straight from the output
            out = ctx.output
            score, precondition = (lambda x_, i: noise.preconditioned_of(out(x_, i), i)), None
        return sample_annealed_langevin(
            score, x, host_sigmas(ctx), step_size=self.eps, steps_per_level=self.T,
            generator=ctx.generator, precondition=precondition,
            noise_transform=getattr(noise, "precondition_sqrt", None),  # Ĉ^{1/2} z (None: isotropic)
            score_scale=(lambda i, sigma: 1.0 / sigma) if self.scaling == "divide_sigma" else None,
            record=ctx.record, record_every=self.record_every, name=ctx.stage_name or "preconditioned_langevin",
        )  # fmt: skip

    def nfe(self, num_levels: int) -> int:
        return self.T * num_levels


def ansn_langevin(
    steps_per_level: int, step_size: float, score_scaling: str, drive: str, final: str, record_every: int
) -> AnnealedLangevinAlg1:
    return AnnealedLangevinAlg1(steps_per_level, step_size, score_scaling, drive, record_every, final)


def preconditioned_langevin(
    steps_per_level: int, step_size: float, score_scaling: str, record_every: int
) -> PreconditionedLangevin:
    return PreconditionedLangevin(steps_per_level, step_size, score_scaling, record_every)
