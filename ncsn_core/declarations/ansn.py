"""ANSN (Shen): the adaptive-covariance noise, its loss and its preconditioned sampler
(implementations: :mod:`ncsn_core.ansn`; readings in docs/ansn.md)."""

from __future__ import annotations

from ncsn_core.declarations.noise import ladder
from ncsn_core.params import Choice, Float, Int, Param, StageFacts, declare

_IMPL = "ncsn_core.ansn:"
FULL_MAX_DIM = 4096  # form = full keeps a D×D matrix and factorises it every batch
_FORMS = ("diagonal", "full", "lowrank")

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("noise", "adaptive", _IMPL + "adaptive",
        params=[
            Param("sigma_max", Float(min=0.0, exclusive_min=True), 1.0, "largest noise scale σ₁"),
            Param("sigma_min", Float(min=0.0, exclusive_min=True), 0.01, "smallest noise scale σ_L"),
            Param("levels", Int(min=1), 10, "number of levels L (geometric ladder)"),
            Param("form", Choice(_FORMS), "diagonal", f"form of Ĉ: diagonal, full (D×D, D ≤ {FULL_MAX_DIM}) or lowrank (rank + diagonal)"),
            Param("rank", Int(min=1), 16, "k of the lowrank form (frequent-directions sketch of 2k rows)"),
            Param("s_d", Float(min=0.0), 0.0, "Haario's scaling s_d of Eq. 2.5 (0 = 2.4²/d)"),
            Param("eps", Float(min=0.0), 1e-5, "ε of Eq. 2.5: s_d·ε·I keeps Ĉ positive definite"),
            Param("c0", Choice(("identity", "data_diag")), "identity", "C₀ of Eq. 2.5: I, or the training set's per-coordinate variances (s_d(var + ε))"),
            Param("normalize", Choice(("trace", "none")), "trace", "trace: rescale Ĉ to mean eigenvalue 1 (σ keeps NCSN's meaning); none: s_d·cov as is"),
            Param("estimate_on", Choice(("data", "perturbed", "residual")), "data", "what 'previously seen data' is: clean batches, perturbed batches, or σ·(s − target) residuals (needs loss ansn_dsm)"),
            Param("floor", Float(min=0.0, max=1.0), 0.0, "eigenvalue floor of Ĉ relative to its mean eigenvalue trace/D: eigenvalues below floor·mean are raised to it (full: clipped in Ĉ's eigenbasis; diagonal: entries; lowrank: the diagonal part, so λ_min ≥ floor·mean); 0 = Eq. 2.5 as is. Needed where data have constant pixels (MNIST's border), which make cov(·) singular"),
            Param("jitter", Float(min=0.0), 1e-6, "added to Ĉ's diagonal after normalising and flooring"),
            Param("warmup", Int(min=0), 0, "batches t ≤ warmup use C₀ (Eq. 2.5 uses it at t = 0 only)"),
            Param("output", Choice(("score", "preconditioned")), "score", "what the network outputs: score: s ≈ ∇log q_Σ, whose DSM target −Σ⁻¹(x̃ − x) applies a dense Ĉ⁻¹ to the noise; preconditioned: u ≈ Ĉ∇log q_Σ, target −(x̃ − x)/σ² (NCSN's, a local denoising map), the score being Ĉ⁻¹u: Eq. 3.1's 1/Σ outside the network (docs/ansn.md)"),
        ],
        doc="ANSN's adaptive-covariance noise Σ_i = σ_i²·Ĉ, Ĉ from a running covariance (Eq. 2.5-2.8)",
        facts=ladder("geometric"),
    ),
    declare("loss", "ansn_dsm", _IMPL + "ansn_dsm",
        params=[
            Param("weighting", Choice(("whitened", "sigma2")), "whitened", "whitened: Eq. 3.1 read as ½(s − t)ᵀΣ(s − t); sigma2: NCSN's λ = σ², ½σ²‖s − t‖²")
        ],
        doc="ANSN's DSM (Eq. 3.1) with a covariance noise; equals dsm for isotropic noise",
    ),
    declare("stage", "preconditioned_langevin", _IMPL + "preconditioned_langevin",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T, Langevin steps per noise level"),
            Param("step_size", Float(min=0.0, exclusive_min=True), 2e-5, "ε (α_i = ε σ_i²/σ_L²)"),
            Param("score_scaling", Choice(("none", "divide_sigma")), "none", "none: α_i/2·Ĉ s (NCSN); divide_sigma: α_i/(2σ_i)·Ĉ s, ANSN's Alg. 1 as printed"),
            Param("record_every", Int(min=0), 0, "record intermediate samples every this many steps (0 = off)"),
        ],
        doc="annealed Langevin preconditioned by ANSN's final Ĉ: x + α_i/2·Ĉ s + √α_i·Ĉ^{1/2} z",
        facts=StageFacts(annealed=True),
    ),
)
# fmt: on
