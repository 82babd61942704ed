"""Training objectives: denoising score matching over noise levels (NCSN Eq. 5-6) and sliced
score matching, plain (ssm) and variance-reduced (ssm_vr, NCSN Eq. 3).

Every loss goes through the NoiseSchedule (perturb → x̃ and ∇log q(x̃|x); scale → σ), so a
covariance noise (ANSN) works unchanged. Per-level sums are kept on the device for logging.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from ncsn_core.declarations.losses import SIGMA_SQUARED
from ncsn_core.errors import ReproError
from ncsn_core.noise import NoiseSchedule
from ncsn_core.values import Expr


@attrs.frozen
class LossOut:
    """What a loss returns: ``loss`` (mean over the batch of λ(σ_b)·per-sample loss, the value to
    backpropagate) and, for logging without a host sync, the detached per-level sums of the same
    per-sample values and the number of samples that drew each level."""

    loss: torch.Tensor  # scalar, differentiable
    per_level_sum: torch.Tensor  # [L] detached sums of per-sample losses by level
    per_level_count: torch.Tensor  # [L] number of samples per level


def _levels(x: torch.Tensor, noise: NoiseSchedule, generator: torch.Generator | None) -> torch.Tensor:
    """One uniformly random level per sample (as the official anneal_dsm_score_estimation)."""
    return torch.randint(0, noise.num_levels, (x.shape[0],), device=x.device, generator=generator)


def _per_level(per_sample: torch.Tensor, idx: torch.Tensor, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.zeros(L, device=per_sample.device).index_add_(0, idx, per_sample.detach().float())
    c = torch.zeros(L, device=per_sample.device).index_add_(
        0, idx, torch.ones_like(per_sample, dtype=torch.float)
    )
    return s, c


def _flat(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1)


def _lam(weight: Any, sigma: torch.Tensor) -> torch.Tensor:
    """λ(σ) of Eq. 6 for a number or an expression in ``sigma``, as a tensor like ``sigma``."""
    if isinstance(weight, Expr):
        value = weight.evaluate(sigma=sigma)
        return torch.as_tensor(value, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    return torch.full_like(sigma, float(weight))


Net = torch.nn.Module
Tensor = torch.Tensor
Gen = torch.Generator | None
Part = slice | None


class Loss:
    """The loss contract (docs/architecture.md): ``loss(model, x, noise, generator, part=None)``
    → :class:`LossOut`. One level per sample is drawn here, uniformly, for the whole (global)
    batch ``x``; a subclass's :meth:`loss` draws the rest (noise, projections) and evaluates
    the model, on this rank's rows ``part`` only in a data-parallel run (docs/scale.md)."""

    def __call__(
        self, model: Net, x: Tensor, noise: NoiseSchedule, generator: Gen, part: Part = None
    ) -> LossOut:
        return self.loss(model, x, _levels(x, noise, generator), noise, generator, part)

    def loss(self, model: Net, x: Tensor, idx: Tensor, noise: NoiseSchedule, gen: Gen, part: Part) -> LossOut:
        raise NotImplementedError


class DSM(Loss):
    """ℓ(θ; σ) = ½ E‖s_θ(x̃, σ) − ∇log q_σ(x̃|x)‖² (Eq. 5), weighted by λ(σ) and averaged over
    levels drawn uniformly (Eq. 6). With λ = σ² this is ½E‖σ s + (x̃ − x)/σ‖².

    Reduction as the official anneal_dsm_score_estimation: per sample ½‖s − target‖² summed
    over all dimensions, times λ(σ) of that sample's level, then the mean over the batch (one
    level drawn uniformly per sample, so this is an unbiased estimate of Eq. 6).
    """

    def __init__(self, weight: Any) -> None:
        self.weight = weight

    def lam(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ(σ) per sample (Eq. 6)."""
        return _lam(self.weight, sigma)

    def loss(self, model: Net, x: Tensor, idx: Tensor, noise: NoiseSchedule, gen: Gen, part: Part) -> LossOut:
        """``part``: this rank's rows of the global batch ``x`` (data-parallel runs,
        docs/scale.md): the levels and the noise are drawn for the whole batch, the model sees
        only the rank's rows, so every example's draws are those of a one-process run."""
        if not getattr(noise, "perturbs", True):
            raise ReproError(
                "loss dsm needs noise levels σ > 0 (noise none has no denoising target): "
                "use loss ssm or ssm_vr with noise none, or a noise ladder such as geometric with dsm"
            )
        x_t, target = noise.perturb(x, idx, gen)
        if part is not None:
            x_t, target, idx = x_t[part], target[part], idx[part]
        per = self.per_sample(model(x_t, idx) - target, idx, noise)
        ps, pc = _per_level(per, idx, noise.num_levels)
        return LossOut(per.mean(), ps, pc)

    def per_sample(self, r: torch.Tensor, idx: torch.Tensor, noise: NoiseSchedule) -> torch.Tensor:
        """λ(σ)·½‖s − target‖² for each sample, from the residual r = s − target."""
        return 0.5 * _flat(r).pow(2).sum(1) * self.lam(noise.scale(idx))


def dsm(weight: Any) -> DSM:
    return DSM(weight)


class SSM(Loss):
    """Sliced score matching (Song et al. 2019) in its two forms:

    * ``ssm`` (plain SSM): E_v E_x [vᵀ∇ₓs v + ½(vᵀs)²], the ½‖s‖² term estimated through the
      projection too;
    * ``ssm_vr`` (variance-reduced, SSM-VR): E_v E_x [vᵀ∇ₓs v + ½‖s‖²], the ½‖s‖² term
      computed exactly (E_v[(vᵀs)²] = ‖s‖² for any p_v with E[vvᵀ] = I). This is NCSN's
      Eq. 3 and what the official code trains with (sliced_score_estimation_vr in the toy
      runner, anneal_sliced_score_estimation_vr for NCSNs).

    Both equal, in expectation, Hyvärinen's objective E[tr ∇ₓs + ½‖s‖²] (Eq. 1 up to a constant).

    With a noise ladder the data are perturbed at a uniformly drawn level first and s(x̃, i) is
    trained on the perturbed data ("sliced score matching can train NCSNs", §4.2), each
    sample's loss weighted by λ(σ_i) as in Eq. 6 (σ² by default, as the official
    anneal_sliced_score_estimation_vr). With noise none (σ = 0) the data are used as they are
    and no weight applies (NCSN Fig. 1-2).
    """

    def __init__(
        self, n_particles: int, projection: str, variance_reduced: bool, weight: Any = SIGMA_SQUARED
    ) -> None:
        self.n = n_particles
        self.projection = projection
        self.vr = variance_reduced
        self.weight = weight

    def _v(self, shape: torch.Size, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Projections: E[vvᵀ] = I (Gaussian, Rademacher, or uniform on the √D-sphere), or
        ``unit`` (a Gaussian normalised to length 1, E[vvᵀ] = I/D: the official plain SSM)."""
        v = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.projection == "rademacher":
            v = torch.where(v >= 0, 1.0, -1.0).to(x.dtype)
        elif self.projection in ("sphere", "unit"):
            f = _flat(v)
            radius = f.shape[1] ** 0.5 if self.projection == "sphere" else 1.0
            v = (f / f.norm(dim=1, keepdim=True) * radius).view(shape)
        return v

    def loss(self, model: Net, x: Tensor, idx: Tensor, noise: NoiseSchedule, gen: Gen, part: Part) -> LossOut:
        """``part`` as for :class:`DSM`: levels, noise and projections are drawn for the whole
        global batch, the model sees this rank's rows."""
        perturbs = getattr(noise, "perturbs", True)
        if perturbs:
            x, _ = noise.perturb(x, idx, gen)
        # n particles per data point, particle-major: row k·B + b is data point b.
        rep = (self.n, *([1] * (x.dim() - 1)))
        if part is None:
            xr = x.detach().repeat(*rep).requires_grad_(True)
            ir = idx.repeat(self.n)
            v = self._v(xr.shape, xr, gen)
        else:
            v = self._v(torch.Size((self.n * x.shape[0], *x.shape[1:])), x, gen)
            v = v.view(self.n, x.shape[0], *x.shape[1:])[:, part].reshape(-1, *x.shape[1:])
            x, idx = x[part], idx[part]
            xr = x.detach().repeat(*rep).requires_grad_(True)
            ir = idx.repeat(self.n)
        s = model(xr, ir)
        sv = (_flat(s) * _flat(v)).sum(1)
        # vᵀ(∇ₓs)v = vᵀ∇ₓ(vᵀs) by one more backward pass through the graph (double backprop).
        (grad,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)
        vjv = (_flat(grad) * _flat(v)).sum(1)
        quad = 0.5 * _flat(s).pow(2).sum(1) if self.vr else 0.5 * sv.pow(2)
        per = (vjv + quad).view(self.n, -1).mean(0)
        if perturbs:
            per = per * _lam(self.weight, noise.scale(idx).to(per.dtype))
        ps, pc = _per_level(per, idx, noise.num_levels)
        return LossOut(per.mean(), ps, pc)


def ssm(n_particles: int, projection: str, weight: Any) -> SSM:
    return SSM(n_particles, projection, variance_reduced=False, weight=weight)


def ssm_vr(n_particles: int, projection: str, weight: Any) -> SSM:
    return SSM(n_particles, projection, variance_reduced=True, weight=weight)
