"""Sampler stages (inside `sample { }`) and initial samples (`sample { init = ... }`);
implementations: :mod:`ncsn_core.samplers` and :mod:`ncsn_core.exact`."""

from __future__ import annotations

from ncsn_core.params import Bool, Choice, Float, Int, Param, StageFacts, declare

_IMPL = "ncsn_core.samplers:"


def unstable_step(step_size: float, sigmas: list[float]) -> str:
    """Why Alg. 1 with ε = ``step_size`` diverges on this ladder, if its first step is unstable:
    α₁ = ε·σ₁²/σ_L² > 2σ₁² (ε > 2σ_L²), where the update x·(1 − α₁/(2σ₁²)) on a Gaussian of
    variance σ₁² stops contracting; "" otherwise. The checker warns with the same numbers."""
    s1, sl = sigmas[0], sigmas[-1]
    if step_size <= 2 * sl**2:
        return ""
    a1 = step_size * s1**2 / sl**2
    return (
        f"step_size ε = {step_size:g} > 2σ_L² = {2 * sl**2:g}, so the first level's step "
        f"α₁ = ε·σ₁²/σ_L² = {a1:g} exceeds 2σ₁² = {2 * s1**2:g}, the stability bound of Langevin dynamics "
        f"on a Gaussian of variance σ₁². Lower step_size below {2 * sl**2:g} or raise sigma_min."
    )


_EPS = Float(min=0.0, exclusive_min=True)
_REC = Param(
    "record_every", Int(min=0), 0, "record intermediate samples every this many steps (0 = off; Fig. 4)"
)
_EXACT = Param("use_exact", Bool(), False, "use the data's exact score (toy mixtures) instead of the network")

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("stage", "langevin", _IMPL + "langevin",
        params=[
            Param("steps", Int(min=1), 1000, "T"),
            Param("step_size", _EPS, 2e-5, "ε of Eq. 4"),
            Param("level", Int(), -1, "which noise level's score the network uses (0-based; -1 = the last, σ_L)"),
            _EXACT,
            _REC,
        ],
        doc="Langevin dynamics (NCSN Eq. 4) at one noise level; with use_exact, the data score itself",
    ),
    declare("stage", "annealed_langevin", _IMPL + "annealed_langevin",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T, Langevin steps per noise level"),
            Param("step_size", _EPS, 2e-5, "ε of Alg. 1 (official step_lr = ε/2); auto: NCSNv2 Technique 4", auto="ncsn_core.techniques:auto_step_size"),
            _EXACT,
            _REC,
            Param("final", Choice(("after_last_step", "before_last_step")), "after_last_step", "the returned state: after the last update (Alg. 1), or before it (the official NCSN code: anneal_runner.py keeps clamp(x) before each step, so its last image has L·T − 1 updates)"),
        ],
        doc="annealed Langevin dynamics (NCSN Alg. 1): α_i = ε σ_i²/σ_L², x + α_i/2·s + √α_i·z",
        facts=StageFacts(annealed=True),
    ),
    declare("stage", "inpainting", _IMPL + "inpainting",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T"),
            Param("step_size", _EPS, 2e-5, "ε of Alg. 2"),
            Param("mask", Choice(("right", "bottom", "center", "random", "half", "left")), "right", "the occluded part: right = the right columns (the official NCSN mask: the left half known), bottom = the bottom rows, center = a centred box, random = random pixels; older names: half = bottom, left = right"),
            Param("mask_fraction", Float(0.0, 1.0), 0.5, "fraction of pixels occluded"),
            Param("split", Choice(("test", "train")), "test", "reference images: the split's first images, in order, one per sample"),
            Param("at_level_start", Bool(), True, "also re-impose the known pixels y = x_ref + σ_i z̃ before each level's first step (the official code); false: only after each step (Alg. 2 as printed)"),
            Param("repeats", Int(min=1), 1, "completions per reference image: sample j completes image j // repeats (NCSN Fig. 6's rows: the official code draws 20 per image)"),
        ],
        doc="inpainting with annealed Langevin dynamics (NCSN Alg. 2); known pixels are kept",
        facts=StageFacts(annealed=True),
    ),
    declare("stage", "denoise", _IMPL + "denoise",
        doc="final denoising x + σ_L²·s(x, σ_L) (NCSNv2's 'w/ denoising')",
    ),
    declare("stage", "exact_sample", "ncsn_core.exact:exact_sample",
        doc="exact samples from a toy density (Fig. 3a's reference); no network",
    ),
    declare("init", "uniform", _IMPL + "uniform",
        params=[Param("low", Float(), 0.0, "lower bound"), Param("high", Float(), 1.0, "upper bound")],
        doc="U[low, high] initial samples (the papers: U[0, 1] for images, U[-8, 8]² for Fig. 3)",
    ),
    declare("init", "gaussian", _IMPL + "gaussian",
        params=[Param("mean", Float(), 0.0, "mean"), Param("std", Float(min=0.0), 1.0, "standard deviation")],
        doc="N(mean, std²) initial samples",
    ),
    declare("init", "data_noise", _IMPL + "data_noise",
        params=[Param("std", Float(min=0.0), 1.0, "noise added to the training images")],
        doc="training examples (random, augmented as in training) plus std·z",
    ),
)
# fmt: on
