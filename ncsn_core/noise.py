"""Noise schedules: the σ ladder and how a level perturbs data (NCSN §4.1, Eq. 5).

A level is an isotropic σᵢ here; ANSN (ncsn_core/ansn.py) subclasses the same interface
with a covariance Σᵢ = σᵢ²·Ĉ, so perturbation, the DSM target and the Langevin noise all go
through these methods and the losses and samplers never assume isotropy.
"""

from __future__ import annotations

from typing import Any

import torch

from ncsn_core.errors import ReproError


class NoiseSchedule:
    """Isotropic Gaussian noise levels σ₁ > σ₂ > … > σ_L (Alg. 1's order)."""

    def __init__(self, sigmas: torch.Tensor) -> None:
        self.sigmas = sigmas.to(torch.float32)
        # Decided once on the host, so the losses never synchronise per step to ask: noise
        # `none` (σ = 0) has no perturbation, and DSM's target −(x̃ − x)/σ² does not exist there.
        self.perturbs = bool((self.sigmas > 0).all())

    @property
    def num_levels(self) -> int:
        return int(self.sigmas.numel())

    def to(self, device: torch.device | str) -> NoiseSchedule:
        self.sigmas = self.sigmas.to(device)
        return self

    def scale(self, idx: torch.Tensor) -> torch.Tensor:
        """σ for each sample's level, shape [B]."""
        return self.sigmas.to(idx.device)[idx]

    def _bcast(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return s.view(-1, *([1] * (x.dim() - 1)))

    def perturb(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̃ = x + σ z and the DSM target ∇_x̃ log q_σ(x̃|x) = −(x̃ − x)/σ² (NCSN Eq. 5)."""
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        s = self._bcast(self.scale(idx), x)
        return x + s * z, -z / s

    def precondition(self, v: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉ·v for ANSN's preconditioned Langevin step; identity for isotropic noise."""
        return v

    def update(self, x: torch.Tensor) -> None:
        """Called with every training batch; isotropic noise learns nothing."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


# ----------------------------------------------------------------------------- builders
def ladder(kind: str, sigma_max: float, sigma_min: float, levels: int) -> list[float]:
    """σ₁ = sigma_max > … > σ_L = sigma_min; geometric (NCSN §4.1) or linear.

    One level gives [sigma_min]: the single-σ baseline of NCSN App. B.2 (σ = 0.01).
    Computed in float64, σᵢ = σ₁·(σ_L/σ₁)^{(i−1)/(L−1)}; the two ends are the given values exactly.
    """
    if kind not in ("geometric", "linear"):
        raise ValueError(f"unknown ladder kind {kind!r} (geometric or linear)")
    if levels < 1:
        raise ValueError(f"a ladder needs at least one level, got {levels}")
    if levels == 1:
        return [float(sigma_min)]
    if kind == "geometric":
        t = torch.linspace(0, 1, levels, dtype=torch.float64)
        out = (sigma_max * (sigma_min / sigma_max) ** t).tolist()
    else:
        out = torch.linspace(sigma_max, sigma_min, levels, dtype=torch.float64).tolist()
    out[0], out[-1] = float(sigma_max), float(sigma_min)
    return out


def _check_order(sigma_max: float, sigma_min: float, levels: int) -> None:
    if levels > 1 and sigma_max <= sigma_min:
        raise ReproError(f"noise: sigma_max ({sigma_max:g}) must be larger than sigma_min ({sigma_min:g})")


def geometric(
    sigma_max: float, sigma_min: float, levels: int, overlap: float, subsample: int, data: Any = None
) -> NoiseSchedule:
    _check_order(sigma_max, sigma_min, levels)
    return NoiseSchedule(torch.tensor(ladder("geometric", sigma_max, sigma_min, levels)))


def linear(sigma_max: float, sigma_min: float, levels: int, data: Any = None) -> NoiseSchedule:
    _check_order(sigma_max, sigma_min, levels)
    return NoiseSchedule(torch.tensor(ladder("linear", sigma_max, sigma_min, levels)))


def none(data: Any = None) -> NoiseSchedule:
    return NoNoise()


class NoNoise(NoiseSchedule):
    """One 'level' with σ = 0, for sliced score matching on the data itself (NCSN Fig. 1-2).

    ``perturbs`` is False: the SSM losses then use x as it is. ``perturb`` refuses rather than
    return x with a target −(x̃ − x)/σ² = 0/0, so no loss can silently train on NaN.
    """

    def __init__(self) -> None:
        super().__init__(torch.zeros(1))

    def perturb(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise ReproError(
            "noise none has no denoising target: use loss ssm (or ssm_vr), or a noise ladder with dsm"
        )
