"""ANSN's covariance machinery: the running moments of the points Ĉ is estimated from
(Eq. 2.5-2.8), a fixed SPD Ĉ with batch-major products, and the eigenvalue floor (a project
switch, not the paper's). Used by :mod:`ncsn_core.ansn`."""

from __future__ import annotations

import math
from typing import Any

import torch

from ncsn_core.errors import ReproError


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
