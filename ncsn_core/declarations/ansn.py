"""ANSN (Shen): the adaptive-covariance noise, its loss and its samplers (implementations:
:mod:`ncsn_core.ansn`, :mod:`ncsn_core.ansn_sampling`; readings in docs/ansn.md).

Every default is the paper's reading; every departure is a named switch, its doc saying
"project's construction"."""

from __future__ import annotations

from ncsn_core.declarations.noise import ladder
from ncsn_core.params import Choice, Float, Int, Param, StageFacts, declare

_IMPL = "ncsn_core.ansn:"
_SAMPLING = "ncsn_core.ansn_sampling:"
FULL_MAX_DIM = 4096  # form = full keeps a D×D matrix and factorises it every batch
_FORMS = ("diagonal", "full", "lowrank")

_REC_ANSN = Param(
    "record_every", Int(min=0), 0, "record intermediate samples every this many steps (0 = off)"
)

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
            Param("s_d", Float(min=0.0), 0.0, "Haario's scaling s_d of Eq. 2.5 (0 = 2.4²/d, the paper's choice, §2.2)"),
            Param("eps", Float(min=0.0), 1e-5, "ε of Eq. 2.5: s_d·ε·I keeps Ĉ positive definite"),
            Param("c0", Choice(("identity", "data_diag")), "identity", "C₀ of Eq. 2.5: I, or the training set's per-coordinate variances (s_d(var + ε))"),
            Param("normalize", Choice(("none", "trace")), "none", "none: Eq. 2.5's s_d·cov + s_d·ε·I as is (the paper); trace (project's construction): rescale Ĉ to mean eigenvalue 1, so σ keeps NCSN's meaning and s_d cancels"),
            Param("estimate_on", Choice(("score", "data", "perturbed", "residual")), "score", "what X_0 … X_{t−1} of Eq. 2.5 are: score (the paper, §2.2 'empirical estimate of score variance'): the network's score estimates σ_i·ŝ(x̃) of each training batch (needs loss ansn_dsm); project's constructions: data (clean batches), perturbed (perturbed batches), residual (σ_i·(ŝ − target), needs loss ansn_dsm)"),
            Param("floor", Float(min=0.0, max=1.0), 0.0, "eigenvalue floor of Ĉ relative to its mean eigenvalue trace/D: eigenvalues below floor·mean are raised to it (full: clipped in Ĉ's eigenbasis; diagonal: entries; lowrank: the diagonal part, so λ_min ≥ floor·mean); 0 = Eq. 2.5 as is. Needed where data have constant pixels (MNIST's border), which make cov(·) singular"),
            Param("jitter", Float(min=0.0), 0.0, "added to Ĉ's diagonal after normalising and flooring (project's construction; 0 = the paper: s_d·ε·I alone keeps Ĉ positive definite)"),
            Param("warmup", Int(min=0), 0, "batches t ≤ warmup use C₀ (Eq. 2.5 uses it at t = 0 only)"),
            Param("output", Choice(("sigma_score", "score", "preconditioned")), "sigma_score", "what the network outputs: sigma_score (the paper): s_θ ≈ Σ_i∇log q_Σ = −E[x̃ − x | x̃], Eq. 3.1's minimiser (target −(x̃ − x)); project's constructions: score (s ≈ ∇log q_Σ, target −Σ⁻¹(x̃ − x)) and preconditioned (u ≈ Ĉ∇log q_Σ, target −(x̃ − x)/σ²). The score is read off the output (Σ_i⁻¹s_θ, s, Ĉ⁻¹u) wherever a stage needs it (docs/ansn.md)"),
        ],
        doc="ANSN's adaptive-covariance noise Σ_i = σ_i²·Ĉ, Ĉ from a running covariance (Eq. 2.5-2.8)",
        facts=ladder("geometric"),
    ),
    declare("loss", "ansn_dsm", _IMPL + "ansn_dsm",
        params=[
            Param("weighting", Choice(("eq31", "whitened", "sigma2")), "eq31", "eq31 (the paper): Eq. 3.1 as written, ½‖Σ⁻¹s_θ + Σ⁻¹(x̃ − x)‖², i.e. ½‖ŝ − t‖² for the score ŝ = Σ⁻¹s_θ (DSM with λ = 1); project's constructions: whitened, ½(ŝ − t)ᵀΣ(ŝ − t) (NCSN's λ = σ² generalised), and sigma2, ½σ²‖out − target‖² on the raw output")
        ],
        doc="ANSN's DSM (Eq. 3.1) with a covariance noise; with weighting = whitened or sigma2 it equals dsm for isotropic noise",
    ),
    declare("stage", "ansn_langevin", _SAMPLING + "ansn_langevin",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T, Langevin steps per noise level (the paper: 100)"),
            Param("step_size", Float(min=0.0, exclusive_min=True), 2e-5, "ε of Alg. 1 (α_i = ε σ_i²/σ_L²; the paper: 2e-5)"),
            Param("score_scaling", Choice(("divide_sigma", "none")), "divide_sigma", "divide_sigma: α_i/(2σ_i)·s_θ, Alg. 1 line 6 as printed; none: NCSN's α_i/2·s_θ"),
            Param("drive", Choice(("output", "score")), "output", "what stands for s_θ in line 6: output (as printed: the network's output, Σ_i·score under Eq. 3.1) or score (the score read off it)"),
            Param("final", Choice(("after_last_step", "before_last_step")), "after_last_step", "the returned state: after the last update, or before it (the official NCSN code's last image)"),
            _REC_ANSN,
        ],
        doc="ANSN's Alg. 1 as printed: x + α_i/(2σ_i)·s_θ(x) + √α_i·z, z ~ N(0, I) (no Ĉ)",
        facts=StageFacts(annealed=True),
    ),
    declare("stage", "preconditioned_langevin", _SAMPLING + "preconditioned_langevin",
        params=[
            Param("steps_per_level", Int(min=1), 100, "T, Langevin steps per noise level"),
            Param("step_size", Float(min=0.0, exclusive_min=True), 2e-5, "ε (α_i = ε σ_i²/σ_L²)"),
            Param("score_scaling", Choice(("none", "divide_sigma")), "none", "none: α_i/2·Ĉ s (NCSN; stationary law the perturbed density); divide_sigma: α_i/(2σ_i)·Ĉ s, Alg. 1's factor carried over, which tempers the density (stationary covariance σ_i·S on a Gaussian N(m, S): an error about S itself)"),
            _REC_ANSN,
        ],
        doc="the project's construction (not in the paper): annealed Langevin preconditioned by the last training batch's Ĉ, x + α_i/2·Ĉ s + √α_i·Ĉ^{1/2} z",
        facts=StageFacts(annealed=True),
    ),
)
# fmt: on
