"""ANSN (Shen, "Adaptive Noise Score Networks"): noise with an adaptively estimated covariance.

Haario-style running covariance (ANSN Eq. 2.5-2.8):
    Ĉ_0 = C_0,  Ĉ_t = s_d·cov(X_0, …, X_{t−1}) + s_d·ε·I  (t ≥ 1),  s_d = 2.4²/d by default,
t counting training batches. Noise levels Σ_i = σ_i²·Ĉ (Ĉ normalised to mean eigenvalue 1 by
default, so σ_i keeps its NCSN meaning); x̃ = x + Σ_i^{1/2}z; DSM target −Σ_i⁻¹(x̃ − x)
(§3.1). Sampling: NCSN's annealed Langevin, or Langevin preconditioned by the final Ĉ.

The running moments are float64 and merged per batch with Chan, Golub & LeVeque's pairwise
update, which equals the covariance of every point seen (Eq. 2.8 in closed form; for batches
of one point it is Haario et al.'s recursion). Readings of the loose parts: docs/ansn.md.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from ncsn_core.declarations.ansn import FULL_MAX_DIM
from ncsn_core.errors import ReproError, TrainingError
from ncsn_core.losses import DSM, SIGMA_SQUARED
from ncsn_core.noise import NoiseSchedule
from ncsn_core.samplers import SampleContext, host_sigmas, sample_annealed_langevin


def geometric_ladder(sigma_max: float, sigma_min: float, levels: int) -> torch.Tensor:
    """σ_i = σ_max·(σ_min/σ_max)^{(i−1)/(L−1)}, i = 1 … L (NCSN §4.1), computed in float64 with
    exact ends; one level gives [σ_min] (NCSN's single-σ baseline)."""
    if levels == 1:
        return torch.tensor([float(sigma_min)])
    t = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    s = sigma_max * (sigma_min / sigma_max) ** t
    s[0], s[-1] = sigma_max, sigma_min
    return s.to(torch.float32)


# ----------------------------------------------------------------------------- running moments
class RunningCovariance:
    """Streaming mean and scatter M2 = Σ(x − x̄)(x − x̄)ᵀ of D-dim points, float64.

    Forms: ``full`` keeps M2 (D×D); ``diagonal`` keeps its diagonal only; ``lowrank`` keeps the
    diagonal exactly plus a frequent-directions sketch B (ℓ = 2·rank rows, Liberty 2013;
    Ghashami et al. 2016) of the centred points, with 0 ⪯ M2 − BᵀB and
    ‖M2 − BᵀB‖₂ ≤ ‖A − A_k‖²_F/(ℓ − k) for the centred data A. Memory O(ℓD); time per
    batch of b points O((ℓ + b)²D).
    """

    def __init__(self, dim: int, form: str, rank: int = 16, device: Any = "cpu") -> None:
        self.dim, self.form, self.rank, self.device = dim, form, rank, device
        self.n = 0
        f64 = dict(dtype=torch.float64, device=device)
        self.mean = torch.zeros(dim, **f64)  # type: ignore[arg-type]
        self.m2_diag = torch.zeros(dim, **f64)  # type: ignore[arg-type]
        self.m2 = torch.zeros(dim, dim, **f64) if form == "full" else None  # type: ignore[arg-type]
        self.sketch = torch.zeros(0, dim, **f64) if form == "lowrank" else None  # type: ignore[arg-type]

    @property
    def sketch_rows(self) -> int:
        return 2 * self.rank

    def to(self, device: Any) -> RunningCovariance:
        self.device = device
        for k in ("mean", "m2_diag", "m2", "sketch"):
            t = getattr(self, k)
            if t is not None:
                setattr(self, k, t.to(device))
        return self

    def update(self, x: torch.Tensor) -> None:
        """Merge a batch [B, ...] (Chan et al. 1979): with δ = x̄_B − x̄ and w = n·B/(n + B),
        M2 ← M2 + Σ_B(x − x̄_B)(x − x̄_B)ᵀ + w·δδᵀ and x̄ ← x̄ + δ·B/(n + B)."""
        x = x.detach().reshape(x.shape[0], -1).to(self.device, torch.float64)
        b = x.shape[0]
        if b == 0:
            return
        mb = x.mean(0)
        dev = x - mb
        n_new = self.n + b
        delta = mb - self.mean
        w = self.n * b / n_new
        self.m2_diag += (dev * dev).sum(0) + delta * delta * w
        if self.m2 is not None:
            self.m2 += dev.T @ dev + torch.outer(delta, delta) * w
        if self.sketch is not None:
            # Rows whose Gram matrix is this batch's scatter plus the between-means term.
            self._fd(torch.cat([dev, (delta * math.sqrt(w))[None]], 0) if w > 0 else dev)
        self.mean += delta * (b / n_new)
        self.n = n_new

    def _fd(self, rows: torch.Tensor) -> None:
        """One frequent-directions step: B ← shrink_ℓ([B; rows]). The eigenpairs of the small
        Gram matrix GGᵀ give G's singular values and right vectors (10× faster than an SVD of
        the (ℓ + b)×D matrix here); the kept rows are √(λ_j − λ_{ℓ+1})·v_j, largest first."""
        assert self.sketch is not None
        g = torch.cat([self.sketch, rows], 0)
        lam, vec = torch.linalg.eigh(g @ g.T)  # ascending
        lam, vec = lam.flip(0), vec.flip(1)
        ell = self.sketch_rows
        shrink = lam[ell] if lam.numel() > ell else lam.new_zeros(())
        # Directions with (numerically) nothing left are dropped: their v_j = Gᵀu_j/√λ_j is noise.
        keep = min(ell, int((lam > shrink + 1e-12 * lam[0].clamp(min=1e-300)).sum()))
        lam, vec = lam[:keep], vec[:, :keep]
        v = (vec.T @ g) / lam.sqrt()[:, None]  # right singular vectors of g
        self.sketch = (lam - shrink).sqrt()[:, None] * v

    def covariance(self) -> torch.Tensor:
        """cov(X_0, …, X_{n−1}) with Eq. 2.6's normaliser read as Haario's 1/(n − 1) (full form)."""
        assert self.m2 is not None
        return self.m2 / max(self.n - 1, 1)

    def variances(self) -> torch.Tensor:
        return self.m2_diag / max(self.n - 1, 1)

    def lowrank_factor(self) -> torch.Tensor:
        """W [D, ≤k] with WWᵀ the sketch's top-k part of the covariance (lowrank form)."""
        assert self.sketch is not None
        return self.sketch[: self.rank].T / math.sqrt(max(self.n - 1, 1))

    def state_dict(self) -> dict[str, Any]:
        c = lambda t: None if t is None else t.detach().to("cpu").clone()  # noqa: E731
        return {"n": self.n, "mean": c(self.mean), "m2_diag": c(self.m2_diag), "m2": c(self.m2),
                "sketch": c(self.sketch)}  # fmt: skip

    def load_state_dict(self, s: dict[str, Any]) -> None:
        f = lambda t: None if t is None else t.to(self.device, torch.float64).clone()  # noqa: E731
        self.n = int(s["n"])
        self.mean, self.m2_diag, self.m2, self.sketch = (
            f(s["mean"]),
            f(s["m2_diag"]),
            f(s["m2"]),
            f(s["sketch"]),
        )


# ----------------------------------------------------------------------------- a fixed Ĉ
class Covariance:
    """A fixed SPD matrix Ĉ = MMᵀ with batch-major operations on [B, D] rows.

    ``diagonal``: Ĉ = diag(d), M = diag(√d). ``full``: Ĉ = c, M = L (Cholesky).
    ``lowrank``: Ĉ = D^{1/2}(I + PΛPᵀ)D^{1/2} with D = diag(d), P [D, k] orthonormal, Λ ≥ 0,
    and M = D^{1/2}(I + PΛPᵀ)^{1/2}, whose powers are I + P·f(Λ)·Pᵀ: O(Dk) per vector, no
    inverse of Λ (a zero Λ is fine).
    """

    def __init__(self, form: str, tensors: dict[str, torch.Tensor]) -> None:
        self.form, self.t = form, tensors

    @staticmethod
    def identity(dim: int, device: Any = "cpu") -> Covariance:
        return Covariance("diagonal", {"d": torch.ones(dim, device=device)})

    @staticmethod
    def diagonal(d: torch.Tensor) -> Covariance:
        return Covariance("diagonal", {"d": d.to(torch.float32)})

    @staticmethod
    def full(c: torch.Tensor) -> Covariance:
        """From a float64 SPD matrix; factorised in float64."""
        c = (c + c.T) / 2
        try:
            chol = torch.linalg.cholesky(c)
        except RuntimeError as e:  # torch.linalg.LinAlgError
            raise ReproError(
                f"noise adaptive: Ĉ is not positive definite ({e}); raise eps or jitter"
            ) from None
        return Covariance("full", {"c": c.to(torch.float32), "chol": chol.to(torch.float32)})

    @staticmethod
    def lowrank(d: torch.Tensor, w: torch.Tensor) -> Covariance:
        """Ĉ = diag(d) + WWᵀ (float64 inputs, d > 0, W [D, k])."""
        sd = d.sqrt()
        if w.shape[1] == 0:
            p, lam = w.new_zeros(d.shape[0], 0), w.new_zeros(0)
        else:
            p, s, _ = torch.linalg.svd(w / sd[:, None], full_matrices=False)  # D^{-1/2}W = P S Vᵀ
            lam = s * s
        return Covariance("lowrank", {"d": d.float(), "p": p.float(), "lam": lam.float()})

    def to(self, device: Any) -> Covariance:
        return Covariance(self.form, {k: v.to(device) for k, v in self.t.items()})

    def state_dict(self) -> dict[str, Any]:
        return {"form": self.form, **{k: v.detach().to("cpu").clone() for k, v in self.t.items()}}

    @staticmethod
    def from_state(s: dict[str, Any], device: Any) -> Covariance:
        return Covariance(s["form"], {k: v.to(device, torch.float32) for k, v in s.items() if k != "form"})

    # ---- lowrank helper: v ↦ (I + P·f(Λ)·Pᵀ)v
    def _mid(self, v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        p = self.t["p"]
        return v if p.shape[1] == 0 else v + ((v @ p) * f) @ p.T

    def mul(self, v: torch.Tensor) -> torch.Tensor:
        """Ĉ v."""
        if self.form == "full":
            return v @ self.t["c"]
        d = self.t["d"]
        if self.form == "diagonal":
            return v * d
        sd = d.sqrt()
        return sd * self._mid(sd * v, self.t["lam"])

    def sqrt_mul(self, z: torch.Tensor) -> torch.Tensor:
        """M z: standard normal z gives a draw with covariance Ĉ."""
        if self.form == "full":
            return z @ self.t["chol"].T
        sd = self.t["d"].sqrt()
        if self.form == "diagonal":
            return z * sd
        lam = self.t["lam"]
        return sd * self._mid(z, (1 + lam).sqrt() - 1)

    def sqrt_t_mul(self, v: torch.Tensor) -> torch.Tensor:
        """Mᵀ v ("whitening" by Ĉ^{1/2}: ‖Mᵀv‖² = vᵀĈv)."""
        if self.form == "full":
            return v @ self.t["chol"]
        sd = self.t["d"].sqrt()
        if self.form == "diagonal":
            return v * sd
        return self._mid(sd * v, (1 + self.t["lam"]).sqrt() - 1)

    def inv_sqrt_t_mul(self, z: torch.Tensor) -> torch.Tensor:
        """M^{−T} z, so that Ĉ⁻¹(Mz) = M^{−T}z without forming Ĉ⁻¹."""
        if self.form == "full":
            return torch.linalg.solve_triangular(self.t["chol"], z, upper=False, left=False)  # y L = z
        sd = self.t["d"].sqrt()
        if self.form == "diagonal":
            return z / sd
        return self._mid(z, (1 + self.t["lam"]).rsqrt() - 1) / sd

    def inv_sqrt_mul(self, v: torch.Tensor) -> torch.Tensor:
        """M⁻¹ v (‖M⁻¹v‖² = vᵀĈ⁻¹v), without forming Ĉ⁻¹."""
        if self.form == "full":
            return torch.linalg.solve_triangular(self.t["chol"].T, v, upper=True, left=False)  # y Lᵀ = v
        sd = self.t["d"].sqrt()
        if self.form == "diagonal":
            return v / sd
        return self._mid(v / sd, (1 + self.t["lam"]).rsqrt() - 1)

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """Ĉ⁻¹ v."""
        if self.form == "full":
            return torch.cholesky_solve(v.T, self.t["chol"]).T
        d = self.t["d"]
        if self.form == "diagonal":
            return v / d
        sd = d.sqrt()
        lam = self.t["lam"]
        return self._mid(v / sd, -lam / (1 + lam)) / sd

    def dense(self) -> torch.Tensor:
        """Ĉ as a D×D matrix (for tests and small D)."""
        d = next(iter(self.t.values())).shape[0]
        return self.mul(torch.eye(d, device=next(iter(self.t.values())).device))


# ----------------------------------------------------------------------------- the eigenvalue floor
# Ĉ's eigenvalues below floor·(mean eigenvalue) are raised to that value; the mean eigenvalue
# is trace(Ĉ)/D (1 with normalize = trace). Constant coordinates (MNIST's border pixels) have
# zero variance, so without it Ĉ keeps only s_d·ε there (relative 1e-4 for MNIST) and Ĉ⁻¹ in
# the DSM target and the sampler's Ĉ^{1/2} are dominated by those directions.
def floor_diagonal(d: torch.Tensor, floor: float) -> torch.Tensor:
    """diag(d) with its entries (the eigenvalues) floored at floor·mean(d)."""
    return d if floor <= 0 else torch.maximum(d, floor * d.mean())  # on d's device: no host sync


def floor_full(m: torch.Tensor, floor: float) -> torch.Tensor:
    """A symmetric D×D matrix with its eigenvalues clipped at floor·trace/D (in its eigenbasis)."""
    if floor <= 0:
        return m
    lam, vec = torch.linalg.eigh((m + m.T) / 2)
    lam = torch.maximum(lam, floor * lam.mean())  # on the device: no host sync
    return (vec * lam) @ vec.T


def floor_lowrank(d: torch.Tensor, w: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """diag(d) + WWᵀ with d floored at floor·trace/D: since WWᵀ ⪰ 0, every eigenvalue is then
    ≥ floor·(mean eigenvalue). O(D·k), no D×D matrix."""
    if floor <= 0:
        return d, w
    mean = (d.sum() + (w * w).sum()) / d.shape[0]
    return torch.maximum(d, floor * mean), w


# ----------------------------------------------------------------------------- the noise
@attrs.frozen
class AdaptiveConfig:
    form: str = "diagonal"
    rank: int = 16
    s_d: float = 0.0  # 0: Haario's 2.4²/d
    eps: float = 1e-5
    c0: str = "identity"
    normalize: str = "trace"
    estimate_on: str = "data"
    jitter: float = 1e-6
    warmup: int = 0
    floor: float = 0.0  # eigenvalues of Ĉ below floor·(mean eigenvalue) raised to it (0 = off)
    output: str = "score"  # score: the network gives s; preconditioned: it gives u = Ĉs


class AdaptiveNoise(NoiseSchedule):
    """Noise levels Σ_i = σ_i²·Ĉ_t with Ĉ_t estimated from the training batches before batch t.

    The trainer calls ``update(x)`` with every clean batch before perturbing it: Ĉ_t is built
    from batches 0 … t−1 (Eq. 2.5) and then batch t joins the estimate. ``cov`` is the Ĉ the
    current batch is perturbed with; after training it is the one the last batch used, and it
    is what the preconditioned sampler uses.
    """

    def __init__(
        self, sigmas: torch.Tensor, dim: int, config: AdaptiveConfig, c0: Covariance | None = None
    ) -> None:
        super().__init__(sigmas)
        self.dim, self.cfg = dim, config
        self.s_d = config.s_d or 2.4**2 / dim  # Haario's s_d = 2.4²/d (Eq. 2.5)
        self.device: Any = "cpu"
        self.stats = RunningCovariance(dim, config.form, config.rank)
        self.c0 = c0 if c0 is not None else Covariance.identity(dim)
        self.cov = self.c0
        self.batches = 0  # t: clean batches seen
        self.residual_batches = 0
        self._gen: torch.Generator | None = None  # estimate_on = perturbed: its own, checkpointed stream
        # Ĉ (with its Cholesky factor for form = full) from the running moments of n points: the
        # factorisation runs once per covariance update, on the noise's device, and is reused
        # until new points join (a refresh without new points costs nothing).
        self._estimated: tuple[int, Covariance] | None = None

    def to(self, device: Any) -> AdaptiveNoise:
        super().to(device)
        self.device = device
        self.stats.to(device)
        self.c0, self.cov = self.c0.to(device), self.cov.to(device)
        return self

    # ---- Eq. 2.5
    def _normalised(self, total: torch.Tensor) -> torch.Tensor:
        """The divisor making Ĉ's mean eigenvalue trace(Ĉ)/D equal 1 (normalize = trace)."""
        return total / self.dim if self.cfg.normalize == "trace" else torch.ones_like(total)

    def estimate(self) -> Covariance:
        """Ĉ = s_d·cov(points so far) + s_d·ε·I, normalised, plus jitter on the diagonal."""
        c, st, sd = self.cfg, self.stats, self.s_d
        if c.form == "full":
            m = sd * st.covariance() + sd * c.eps * torch.eye(self.dim, dtype=torch.float64, device=st.device)
            m = floor_full(m / self._normalised(torch.trace(m)), c.floor)
            return Covariance.full(m + c.jitter * torch.eye(self.dim, dtype=torch.float64, device=st.device))
        var = st.variances()
        if c.form == "diagonal":
            d = sd * var + sd * c.eps
            return Covariance.diagonal(floor_diagonal(d / self._normalised(d.sum()), c.floor) + c.jitter)
        w = st.lowrank_factor()
        # The diagonal part is what the rank-k part leaves of the exact variances, so diag(Ĉ) is exact.
        d = sd * (var - (w * w).sum(1)).clamp(min=0) + sd * c.eps
        w = math.sqrt(sd) * w
        scale = self._normalised(d.sum() + (w * w).sum())
        d, w = floor_lowrank(d / scale, w / scale.sqrt(), c.floor)
        return Covariance.lowrank(d + c.jitter, w)

    def _refresh(self) -> None:
        # Ĉ_t = C_0 for t ≤ warmup (Eq. 2.5's t = 0 case, extended) and while cov(·) is undefined.
        if self.batches <= self.cfg.warmup or self.stats.n < 2:
            self.cov = self.c0
        else:
            if self._estimated is None or self._estimated[0] != self.stats.n:
                self._estimated = (self.stats.n, self.estimate().to(self.device))
            self.cov = self._estimated[1]

    def update(self, x: torch.Tensor) -> None:
        """Called with clean batch t before it is perturbed: Ĉ_t from batches 0 … t−1, then
        batch t (clean or perturbed with Ĉ_t, per ``estimate_on``) joins the estimate."""
        on = self.cfg.estimate_on
        if on == "residual" and self.batches >= 1 and self.residual_batches == 0:
            raise ReproError(
                "noise adaptive: estimate_on = residual needs the model's residuals, which loss ansn_dsm "
                "reports (update_residual); use loss ansn_dsm, or estimate_on = data"
            )
        self._refresh()
        if on == "data":
            self._guarded_update(x, "training batch", self.batches + 1)
        elif on == "perturbed":
            if self._gen is None:
                self._gen = torch.Generator(device=x.device).manual_seed(0x5EED)
            idx = torch.randint(0, self.num_levels, (x.shape[0],), device=x.device, generator=self._gen)
            self._guarded_update(
                x + self.sample_noise(x, idx, self._gen), "perturbed batch", self.batches + 1
            )
        self.batches += 1

    def _guarded_update(self, x: torch.Tensor, what: str, step: int) -> None:
        """Merge a batch into the running covariance unless it holds a NaN or an infinity: then
        the estimate is left as it was and training stops, naming the step (one host sync per
        batch, ANSN only)."""
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = x[~finite]
            raise TrainingError(
                f"noise adaptive: the {what} of step {step} holds {int(bad.numel())} non-finite "
                f"value(s) (e.g. {float(bad[0])}); the running covariance was not updated with it. "
                f"Stopping; the last good checkpoint is kept."
            )
        self.stats.update(x)

    def update_residual(self, r: torch.Tensor, idx: torch.Tensor | None = None) -> None:
        """Optional hook (loss ansn_dsm calls it after perturbing batch t): with
        estimate_on = residual, the score residuals r = s − target join the estimate, scaled to
        σ_i·r when ``idx`` is given (NCSN's level-free scale). A no-op otherwise."""
        if self.cfg.estimate_on != "residual":
            return
        r = r.detach().reshape(r.shape[0], -1)
        if self.preconditioned_output:  # the output's residual Ĉ(s − t): the score's is Ĉ⁻¹ of it
            r = self.cov.solve(r)
        if idx is not None:
            r = r * self.scale(idx).to(r.dtype)[:, None]
        self._guarded_update(r, "score residual", self.batches)
        self.residual_batches += 1

    # ---- the NoiseSchedule interface
    def sample_noise(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Σ_i^{1/2} z = σ_i·M z, shaped like x (D standard normals per sample, as isotropic noise)."""
        z = torch.randn((x.shape[0], self.dim), generator=generator, device=x.device, dtype=x.dtype)
        return (self.scale(idx)[:, None] * self.cov.sqrt_mul(z)).view_as(x)

    def perturb(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̃ = x + σ_i M z and the DSM target ∇_x̃ log N(x̃; x, Σ_i) = −Σ_i⁻¹(x̃ − x) = −M^{−T}z/σ_i
        (§3.1), computed from z without forming Σ_i⁻¹. With ``output = preconditioned`` the
        target of the network's output u = Ĉs: Ĉ·(−Σ_i⁻¹(x̃ − x)) = −(x̃ − x)/σ_i² = −Mz/σ_i."""
        z = torch.randn((x.shape[0], self.dim), generator=generator, device=x.device, dtype=x.dtype)
        sig = self.scale(idx)[:, None]
        m_z = self.cov.sqrt_mul(z)
        noise = sig * m_z
        target = -m_z / sig if self.preconditioned_output else -self.cov.inv_sqrt_t_mul(z) / sig
        return x + noise.view_as(x), target.view_as(x)

    @property
    def preconditioned_output(self) -> bool:
        return self.cfg.output == "preconditioned"

    def score_of(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """The score from the network's output: s = out, or Ĉ⁻¹u (``output = preconditioned``)."""
        if not self.preconditioned_output:
            return out
        return self.cov.solve(out.reshape(out.shape[0], -1)).view_as(out)

    def preconditioned_of(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉs from the network's output: Ĉ·out, or u itself (``output = preconditioned``: no solve)."""
        return out if self.preconditioned_output else self.precondition(out, i)

    def quad(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """vᵀΣ_i v per sample, for a score residual v = s − t. With ``output = preconditioned``
        v is the output's residual Ĉ(s − t), and the same quantity is σ_i²·vᵀĈ⁻¹v."""
        flat = v.reshape(v.shape[0], -1)
        w = self.cov.inv_sqrt_mul(flat) if self.preconditioned_output else self.cov.sqrt_t_mul(flat)
        return self.scale(idx) ** 2 * (w * w).sum(1)

    def whiten(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Σ_i^{T/2} v = σ_i·Mᵀv (so ‖whiten(v)‖² = vᵀΣ_i v), shaped like v."""
        return (self.scale(idx)[:, None] * self.cov.sqrt_t_mul(v.reshape(v.shape[0], -1))).view_as(v)

    def precondition(self, v: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉ v (the same Ĉ for every level)."""
        return self.cov.mul(v.reshape(v.shape[0], -1)).view_as(v)

    def precondition_sqrt(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉ^{1/2} z (= M z, so a standard normal z gives covariance Ĉ)."""
        return self.cov.sqrt_mul(z.reshape(z.shape[0], -1)).view_as(z)

    def draw_preconditioned(
        self, shape: torch.Size | tuple[int, ...], device: Any, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Ĉ^{1/2}z for fresh standard normal z, shaped ``shape``."""
        z = torch.randn(tuple(shape), generator=gen, device=device)
        return self.precondition_sqrt(z, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "stats": self.stats.state_dict(),
            "batches": self.batches,
            "residual_batches": self.residual_batches,
            "cov": self.cov.state_dict(),  # the Ĉ the last batch used (not recomputable from stats)
            "c0": self.c0.state_dict(),
            "gen": None if self._gen is None else self._gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.stats.load_state_dict(state["stats"])
        self._estimated = None
        self.batches = int(state["batches"])
        self.residual_batches = int(state.get("residual_batches", 0))
        if "c0" in state:
            self.c0 = Covariance.from_state(state["c0"], self.device)
        if "cov" in state:
            self.cov = Covariance.from_state(state["cov"], self.device)
        else:  # an older checkpoint: the estimate from every batch seen
            self.cov = self.c0 if self.stats.n < 2 else self.estimate().to(self.device)
        if state.get("gen") is not None:
            self._gen = torch.Generator(device=self.device)
            self._gen.set_state(state["gen"].to("cpu"))


def data_diagonal(
    data: Any, dim: int, s_d: float, eps: float, normalize: str, jitter: float, floor: float = 0.0
) -> Covariance:
    """C_0 = s_d·(diag(var of the training set) + ε·I), normalised as Ĉ: Eq. 2.5's form with the
    whole training set's per-coordinate variances (no augmentation), read in chunks."""
    st = RunningCovariance(dim, "diagonal")
    raw = data.train
    for k in range(0, int(raw.shape[0]), 4096):
        chunk = raw[k : k + 4096]
        st.update(chunk.double() / 255.0 if chunk.dtype == torch.uint8 else chunk.double())
    d = s_d * st.variances() + s_d * eps
    if normalize == "trace":
        d = d / d.mean()
    return Covariance.diagonal(floor_diagonal(d, floor) + jitter)


def adaptive(
    sigma_max: float,
    sigma_min: float,
    levels: int,
    form: str,
    rank: int,
    s_d: float,
    eps: float,
    c0: str,
    normalize: str,
    estimate_on: str,
    jitter: float,
    warmup: int,
    floor: float = 0.0,
    output: str = "score",
    data: Any = None,
) -> AdaptiveNoise:
    if levels > 1 and sigma_max <= sigma_min:
        raise ReproError(f"noise adaptive: sigma_max ({sigma_max:g}) must exceed sigma_min ({sigma_min:g})")
    if data is None:
        raise ReproError("noise adaptive needs the data (its dimension)")
    dim = math.prod(data.shape)
    if form == "full" and dim > FULL_MAX_DIM:
        raise ReproError(
            f"noise adaptive: form = full needs a {dim}×{dim} matrix factorised every batch; "
            f"use form = lowrank (or diagonal) for D = {dim}"
        )
    cfg = AdaptiveConfig(form, rank, s_d, eps, c0, normalize, estimate_on, jitter, warmup, floor, output)
    noise = AdaptiveNoise(geometric_ladder(sigma_max, sigma_min, levels), dim, cfg)
    if c0 == "data_diag":
        noise.c0 = noise.cov = data_diagonal(data, dim, noise.s_d, eps, normalize, jitter, floor)
    return noise


# ----------------------------------------------------------------------------- the loss
class ANSNDSM(DSM):
    """DSM with a covariance noise (§3.1). ``whitened``: ½(s − t)ᵀΣ_i(s − t) = ½‖Mᵀ(σ_i s) + z‖²,
    our reading of Eq. 3.1 (½σ²‖s − t‖², NCSN's λ = σ², for isotropic noise); ``sigma2``:
    ½σ_i²‖out − target‖² on the network's output whatever Ĉ is (the score, or u = Ĉs with
    ``noise adaptive { output = preconditioned }``, where ``whitened`` is the same value as for
    the score: ½σ_i²·rᵀĈ⁻¹r of the output's residual r). Reports the residuals to the noise
    (update_residual)."""

    def __init__(self, weighting: str) -> None:
        super().__init__(SIGMA_SQUARED)
        self.weighting = weighting

    def per_sample(self, r: torch.Tensor, idx: torch.Tensor, noise: NoiseSchedule) -> torch.Tensor:
        report = getattr(noise, "update_residual", None)
        if report is not None:  # estimate_on = residual: batch t's residuals join Ĉ_{t+1}
            report(r, idx)
        quad = getattr(noise, "quad", None)
        if self.weighting == "whitened" and quad is not None:
            return 0.5 * quad(r, idx)
        return super().per_sample(r, idx, noise)  # isotropic noise: Σ = σ²I, the same value


def ansn_dsm(weighting: str) -> ANSNDSM:
    return ANSNDSM(weighting)


# ----------------------------------------------------------------------------- the sampler
@attrs.define
class PreconditionedLangevin:
    """Annealed Langevin preconditioned by a fixed SPD Ĉ (the final Ĉ of training):
    α_i = ε σ_i²/σ_L²;  x ← x + α_i/2·k_i·Ĉ s(x, σ_i) + √α_i·Ĉ^{1/2} z,  T steps per level.

    With k_i = 1 (``score_scaling = none``) every level is a Langevin chain whose stationary law
    is the perturbed density for any fixed SPD Ĉ (Ĉ = I is NCSN's Alg. 1). ``divide_sigma``
    uses k_i = 1/σ_i, ANSN's Alg. 1 line 6 as printed (α_i/(2σ_i)); see docs/ansn.md. With an
    isotropic noise (no ``precondition_sqrt``) Ĉ = I.
    """

    T: int  # steps per level
    eps: float  # ε
    scaling: str  # none | divide_sigma
    record_every: int

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        noise = ctx.noise
        score, precondition = ctx.score, noise.precondition  # Ĉ s
        if ctx.output is not None and hasattr(noise, "preconditioned_of"):  # the network gives Ĉs itself
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


def preconditioned_langevin(
    steps_per_level: int, step_size: float, score_scaling: str, record_every: int
) -> PreconditionedLangevin:
    return PreconditionedLangevin(steps_per_level, step_size, score_scaling, record_every)
