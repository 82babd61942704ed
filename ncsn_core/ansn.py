"""ANSN (Shen): noise with an adaptively estimated covariance, Haario-style (Eq. 2.5-2.8).

Ĉ_0 = C_0;  Ĉ_t = s_d·cov(X_0, …, X_{t−1}) + s_d·ε·I  (Eq. 2.5), s_d = 2.4²/d by default.
Levels Σ_i = σ_i²·Ĉ (Ĉ normalised to mean eigenvalue 1 by default, so σ_i keeps NCSN's
meaning); x̃ = x + Σ_i^{1/2} z; DSM target −Σ_i⁻¹(x̃ − x). The running moments are float64
and merged per batch with Chan et al.'s parallel update, which equals the batch covariance
of every point seen (Eq. 2.8 in closed form). Readings of the loose parts are in docs/ansn.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ncsn_core.errors import ReproError
from ncsn_core.losses import DSM, SIGMA_SQUARED
from ncsn_core.noise import NoiseSchedule, ladder
from ncsn_core.registry import Choice, Float, Int, Param, register
from ncsn_core.samplers import SampleContext, _check_finite, _randn


class RunningCovariance:
    """Streaming mean/covariance of D-dim points (float64). Forms: full (D×D), diagonal, or
    lowrank: exact per-coordinate variances plus a rank-k frequent-directions sketch of the
    centred batches (Liberty 2013), bounded memory O(kD) and time O(k²D) per update."""

    def __init__(self, dim: int, form: str, rank: int = 16) -> None:
        self.dim, self.form, self.rank = dim, form, rank
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2_diag = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dim, dtype=torch.float64) if form == "full" else None
        self.sketch = torch.zeros(0, dim, dtype=torch.float64) if form == "lowrank" else None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)
        b = x.shape[0]
        mb = x.mean(0)
        dev = x - mb
        n_new = self.n + b
        delta = mb - self.mean
        w = self.n * b / n_new
        self.m2_diag += (dev**2).sum(0) + delta**2 * w
        if self.m2 is not None:
            self.m2 += dev.T @ dev + torch.outer(delta, delta) * w
        if self.sketch is not None:
            # Rows whose Gram matrix is the batch's scatter plus the between-means term.
            rows = torch.cat([dev, (delta * math.sqrt(w))[None]], 0)
            self._fd(rows)
        self.mean += delta * (b / n_new)
        self.n = n_new

    def _fd(self, rows: torch.Tensor) -> None:
        assert self.sketch is not None
        b = torch.cat([self.sketch, rows], 0)
        if b.shape[0] <= 2 * self.rank:
            self.sketch = b
            return
        _, s, vh = torch.linalg.svd(b, full_matrices=False)
        shrink = s[self.rank] ** 2 if s.numel() > self.rank else 0.0
        s2 = (s[: self.rank] ** 2 - shrink).clamp(min=0)
        self.sketch = s2.sqrt()[:, None] * vh[: self.rank]

    def covariance(self) -> torch.Tensor:
        """The unbiased covariance (full form only)."""
        assert self.m2 is not None
        return self.m2 / max(self.n - 1, 1)

    def variances(self) -> torch.Tensor:
        return self.m2_diag / max(self.n - 1, 1)

    def lowrank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U [D,k] orthonormal, S [k]) with U diag(S) Uᵀ ≈ the covariance's top-k part."""
        assert self.sketch is not None
        if self.sketch.shape[0] == 0:
            return torch.zeros(self.dim, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        _, s, vh = torch.linalg.svd(self.sketch, full_matrices=False)
        k = min(self.rank, s.numel())
        return vh[:k].T, s[:k] ** 2 / max(self.n - 1, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean.clone(), "m2_diag": self.m2_diag.clone(),
                "m2": None if self.m2 is None else self.m2.clone(),
                "sketch": None if self.sketch is None else self.sketch.clone()}  # fmt: skip

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.n = int(s["n"])
        self.mean = s["mean"].clone().to(torch.float64)
        self.m2_diag = s["m2_diag"].clone().to(torch.float64)
        self.m2 = None if s["m2"] is None else s["m2"].clone().to(torch.float64)
        self.sketch = None if s["sketch"] is None else s["sketch"].clone().to(torch.float64)


class Covariance:
    """A fixed SPD matrix Ĉ in one of three forms, with Ĉ^{1/2}z, Ĉv, Ĉ⁻¹v and vᵀĈv."""

    def __init__(self, form: str, diag: torch.Tensor, chol: torch.Tensor | None = None,
                 u: torch.Tensor | None = None, s: torch.Tensor | None = None) -> None:  # fmt: skip
        self.form, self.diag, self.chol, self.u, self.s = form, diag, chol, u, s

    @staticmethod
    def identity(dim: int) -> Covariance:
        return Covariance("diagonal", torch.ones(dim))

    def to(self, device: Any) -> Covariance:
        f = lambda t: None if t is None else t.to(device, torch.float32)  # noqa: E731
        return Covariance(self.form, f(self.diag), f(self.chol), f(self.u), f(self.s))  # type: ignore[arg-type]

    def sqrt_mul(self, z: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        """A draw with covariance Ĉ from standard normal z [B, D] (z2 [B, k] for lowrank)."""
        if self.form == "full":
            return z @ self.chol.T  # type: ignore[union-attr]
        out = z * self.diag.sqrt()
        if self.form == "lowrank" and self.u is not None and self.u.shape[1]:
            assert z2 is not None
            out = out + (z2 * self.s.sqrt()) @ self.u.T  # type: ignore[union-attr]
        return out

    def mul(self, v: torch.Tensor) -> torch.Tensor:
        if self.form == "full":
            return v @ (self.chol @ self.chol.T)  # type: ignore[union-attr]
        out = v * self.diag
        if self.form == "lowrank" and self.u is not None and self.u.shape[1]:
            out = out + ((v @ self.u) * self.s) @ self.u.T
        return out

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        if self.form == "full":
            return torch.cholesky_solve(v.T, self.chol).T  # type: ignore[arg-type]
        out = v / self.diag
        if self.form == "lowrank" and self.u is not None and self.u.shape[1]:
            # Woodbury: (D + USUᵀ)⁻¹ = D⁻¹ − D⁻¹U(S⁻¹ + UᵀD⁻¹U)⁻¹UᵀD⁻¹
            du = self.u / self.diag[:, None]
            inner = torch.diag(1 / self.s.clamp(min=1e-12)) + self.u.T @ du  # type: ignore[union-attr]
            out = out - (torch.linalg.solve(inner, (v @ du).T)).T @ du.T
        return out

    def extra_dim(self) -> int:
        return 0 if self.u is None else int(self.u.shape[1])


class AdaptiveNoise(NoiseSchedule):
    """Noise levels Σ_i = σ_i²·Ĉ with Ĉ estimated from the training batches seen so far."""

    def __init__(self, sigmas: torch.Tensor, dim: int, p: dict[str, Any]) -> None:
        super().__init__(sigmas)
        self.dim, self.p = dim, p
        self.s_d = p["s_d"] or 2.4**2 / dim
        self.stats = RunningCovariance(dim, p["form"], p["rank"])
        self.batches = 0
        self.cov = Covariance.identity(dim)
        self.device: Any = "cpu"

    def to(self, device: Any) -> AdaptiveNoise:
        super().to(device)
        self.device = device
        self.cov = self.cov.to(device)
        return self

    # ---- Eq. 2.5
    def _refresh(self) -> None:
        p, st = self.p, self.stats
        if self.batches <= p["warmup"] or st.n < 2:
            self.cov = Covariance.identity(self.dim).to(self.device)
            return
        eps = p["eps"]
        if p["form"] == "full":
            c = self.s_d * st.covariance() + self.s_d * eps * torch.eye(self.dim, dtype=torch.float64)
            scale = float(torch.trace(c)) / self.dim if p["normalize"] == "trace" else 1.0
            c = c / scale + p["jitter"] * torch.eye(self.dim, dtype=torch.float64)
            cov = Covariance("full", torch.diagonal(c).clone(), chol=torch.linalg.cholesky(c))
        elif p["form"] == "diagonal":
            d = self.s_d * st.variances() + self.s_d * eps
            scale = float(d.mean()) if p["normalize"] == "trace" else 1.0
            cov = Covariance("diagonal", d / scale + p["jitter"])
        else:
            u, s = st.lowrank()
            var = st.variances()
            # Diagonal part: what the top-k subspace does not explain, so diag(Ĉ) matches exactly.
            resid = (var - (u**2 * s).sum(1)).clamp(min=0)
            d = self.s_d * resid + self.s_d * eps
            s = self.s_d * s
            scale = float((d.sum() + s.sum()) / self.dim) if p["normalize"] == "trace" else 1.0
            cov = Covariance("lowrank", d / scale + p["jitter"], u=u, s=s / scale)
        self.cov = cov.to(self.device)

    def update(self, x: torch.Tensor) -> None:
        # Ĉ_t for this batch uses X_0..X_{t−1} (Eq. 2.5), then this batch joins the estimate.
        self._refresh()
        if self.p["estimate_on"] == "perturbed":
            idx = torch.randint(0, self.num_levels, (x.shape[0],), device=x.device)
            x = self.perturb(x, idx)[0]
        self.stats.update(x)
        self.batches += 1

    # ---- the NoiseSchedule interface
    def draw_preconditioned(
        self, shape: torch.Size, device: Any, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Ĉ^{1/2}z for fresh standard normal z, as [B, D] (lowrank draws D + k normals)."""
        z = torch.randn((shape[0], self.dim), generator=gen, device=device)
        z2 = torch.randn((shape[0], self.cov.extra_dim()), generator=gen, device=device)
        return self.cov.sqrt_mul(z, z2)

    def perturb(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sig = self.scale(idx)[:, None]
        noise = sig * self.draw_preconditioned(x.shape, x.device, generator)  # Σ_i^{1/2} z
        target = -self.cov.solve(noise) / sig**2  # −Σ_i⁻¹(x̃ − x)
        return x + noise.view_as(x), target.view_as(x)

    def quad(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """vᵀΣ_i v per sample."""
        vf = v.reshape(v.shape[0], -1)
        return self.scale(idx) ** 2 * (vf * self.cov.mul(vf)).sum(1)

    def precondition(self, v: torch.Tensor, i: int) -> torch.Tensor:
        return self.cov.mul(v.reshape(v.shape[0], -1)).view_as(v)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.stats.load_state_dict(state["stats"])
        self.batches = int(state["batches"])
        self._refresh()  # the covariance the model was last trained against


@register(
    "noise",
    "adaptive",
    params=[
        Param("sigma_max", Float(min=0.0, exclusive_min=True), 1.0, "largest noise scale σ₁"),
        Param("sigma_min", Float(min=0.0, exclusive_min=True), 0.01, "smallest noise scale σ_L"),
        Param("levels", Int(min=1), 10, "number of levels L (geometric)"),
        Param(
            "form",
            Choice(("diagonal", "full", "lowrank")),
            "diagonal",
            "form of Ĉ (full: D×D; lowrank: rank + diagonal)",
        ),
        Param("rank", Int(min=1), 16, "rank of the lowrank form"),
        Param("s_d", Float(min=0.0), 0.0, "Haario's scaling s_d (0 = 2.4²/d)"),
        Param("eps", Float(min=0.0), 1e-5, "ε of Eq. 2.5 (s_d·ε·I keeps Ĉ positive definite)"),
        Param(
            "normalize",
            Choice(("trace", "none")),
            "trace",
            "rescale Ĉ to mean eigenvalue 1 (σ keeps its meaning)",
        ),
        Param(
            "estimate_on",
            Choice(("data", "perturbed")),
            "data",
            "what 'previously seen data' is: clean or perturbed batches",
        ),
        Param("jitter", Float(min=0.0), 1e-6, "added to the diagonal before factorising"),
        Param("warmup", Int(min=0), 0, "batches that use C₀ = I before Ĉ takes over"),
    ],
    doc="ANSN's adaptive-covariance noise Σ_i = σ_i²·Ĉ, Ĉ from a running covariance (Eq. 2.5-2.8)",
)
def adaptive(data: Any = None, **p: Any) -> AdaptiveNoise:
    if p["levels"] > 1 and p["sigma_max"] <= p["sigma_min"]:
        raise ReproError(
            f"noise adaptive: sigma_max ({p['sigma_max']:g}) must exceed sigma_min ({p['sigma_min']:g})"
        )
    if data is None:
        raise ReproError("noise adaptive needs the data (its dimension)")
    dim = math.prod(data.shape)
    if p["form"] == "full" and dim > 4096:
        raise ReproError(
            f"noise adaptive: form = full needs a {dim}×{dim} matrix; use form = lowrank for D = {dim}"
        )
    sig = torch.tensor(ladder("geometric", p["sigma_max"], p["sigma_min"], p["levels"]))
    return AdaptiveNoise(sig, dim, p)


# ----------------------------------------------------------------------------- loss and sampler
class ANSNDSM(DSM):
    """DSM with a covariance target; weighting `whitened` is ½(s − t)ᵀΣ(s − t) (our reading of
    Eq. 3.1; σ²‖s − t‖²/2 for isotropic noise, i.e. NCSN's λ = σ²), `sigma2` is ½σ²‖s − t‖²."""

    def __init__(self, weighting: str) -> None:
        super().__init__(SIGMA_SQUARED)
        self.weighting = weighting

    def per_sample(self, r: torch.Tensor, idx: torch.Tensor, noise: NoiseSchedule) -> torch.Tensor:
        if self.weighting == "whitened" and hasattr(noise, "quad"):
            return 0.5 * noise.quad(r, idx)
        return super().per_sample(r, idx, noise)


@register(
    "loss",
    "ansn_dsm",
    params=[
        Param(
            "weighting",
            Choice(("whitened", "sigma2")),
            "whitened",
            "Eq. 3.1 read as ½(s−t)ᵀΣ(s−t), or λ = σ²",
        )
    ],
    doc="ANSN's DSM (Eq. 3.1) with a covariance noise; equals dsm for isotropic noise",
)
def ansn_dsm(weighting: str) -> ANSNDSM:
    return ANSNDSM(weighting)


class PreconditionedLangevin:
    """x ← x + α_i/2·Ĉ·s + √α_i·Ĉ^{1/2}·z, α_i = ε σ_i²/σ_L²: a valid Langevin chain for any
    fixed SPD Ĉ (its stationary law is still the target). score_scaling = divide_sigma uses
    the paper's Alg. 1 as written, α_i/(2σ_i)·s."""

    def __init__(self, steps_per_level: int, step_size: float, score_scaling: str) -> None:
        self.T, self.eps, self.scaling = steps_per_level, step_size, score_scaling

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        sig = ctx.sigmas
        sL2 = float(sig[-1]) ** 2
        for i in range(ctx.noise.num_levels):
            a = self.eps * float(sig[i]) ** 2 / sL2
            k = 1.0 / float(sig[i]) if self.scaling == "divide_sigma" else 1.0
            bad = torch.zeros((), dtype=torch.bool, device=x.device)
            for _ in range(self.T):
                s = ctx.score(x, i)
                draw = getattr(ctx.noise, "draw_preconditioned", None)  # isotropic noise: Ĉ = I
                z = (
                    _randn(x, ctx.generator)
                    if draw is None
                    else draw(x.shape, x.device, ctx.generator).view_as(x)
                )
                x = x + 0.5 * a * k * ctx.noise.precondition(s, i) + a**0.5 * z
                bad |= ~torch.isfinite(x).all()
            _check_finite(bad, ctx.stage_name or "preconditioned_langevin", i, float(sig[i]))
        return x

    def nfe(self, num_levels: int) -> int:
        return self.T * num_levels


@register(
    "stage",
    "preconditioned_langevin",
    params=[
        Param("steps_per_level", Int(min=1), 100, "T"),
        Param("step_size", Float(min=0.0, exclusive_min=True), 2e-5, "ε (α_i = ε σ_i²/σ_L²)"),
        Param(
            "score_scaling",
            Choice(("none", "divide_sigma")),
            "none",
            "divide_sigma: ANSN Alg. 1 as printed, α/(2σ_i)·s",
        ),
    ],
    doc="annealed Langevin preconditioned by ANSN's Ĉ: x + α/2·Ĉ s + √α·Ĉ^{1/2} z",
)
def preconditioned_langevin(
    steps_per_level: int, step_size: float, score_scaling: str
) -> PreconditionedLangevin:
    return PreconditionedLangevin(steps_per_level, step_size, score_scaling)
