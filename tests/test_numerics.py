"""Closed-form checks of the NCSN components: mixture scores, the DSM target and weighting,
sliced score matching, Langevin dynamics, inpainting, denoising, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn_core import registry
from ncsn_core.data import GaussianMixture
from ncsn_core.losses import DSM, SIGMA_SQUARED, SSM
from ncsn_core.noise import NoiseSchedule, ladder
from ncsn_core.samplers import AnnealedLangevin, Denoise, Inpainting, Langevin, SampleContext, SamplerDiverged
from ncsn_core.values import Expr


def mixture(stds: torch.Tensor | None = None) -> GaussianMixture:
    means = torch.tensor([[-5.0, -5.0], [5.0, 5.0]])
    return GaussianMixture(torch.tensor([0.2, 0.8]), means, stds if stds is not None else torch.ones(2, 2))


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("aniso", [False, True])
def test_mixture_score_is_the_gradient_of_log_density(sigma: float, aniso: bool) -> None:
    mix = mixture(torch.tensor([[3.0, 0.3], [0.5, 2.0]]) if aniso else None)
    x = (torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 6).requires_grad_(True)
    (g,) = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
    assert torch.allclose(mix.score(x.detach(), sigma), g, atol=1e-5, rtol=1e-4)


def test_geometric_ladder() -> None:
    s = ladder("geometric", 1.0, 0.01, 10)
    assert s[0] == pytest.approx(1.0) and s[-1] == pytest.approx(0.01)
    ratios = [a / b for a, b in zip(s[:-1], s[1:])]
    assert max(ratios) - min(ratios) < 1e-9  # σ₁/σ₂ = … = σ_{L-1}/σ_L (§4.1)
    assert ladder("geometric", 0.01, 0.01, 1) == [0.01]


def test_dsm_target_is_the_conditional_score() -> None:
    noise = NoiseSchedule(torch.tensor([2.0, 0.5]))
    x = torch.randn(16, 3)
    idx = torch.tensor([0, 1] * 8)
    xt, target = noise.perturb(x, idx, torch.Generator().manual_seed(1))
    xt = xt.detach().requires_grad_(True)
    sig = noise.scale(idx)[:, None]
    logq = (-((xt - x) ** 2) / (2 * sig**2)).sum()  # log N(x̃; x, σ²I) up to a constant
    (g,) = torch.autograd.grad(logq, xt)
    assert torch.allclose(target, g, atol=1e-5)


class _Const(torch.nn.Module):
    """s(x̃, i) = c for every input: the DSM loss then has a closed form."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.c)


def test_dsm_weighting_matches_hand_computation() -> None:
    noise = NoiseSchedule(torch.tensor([3.0, 1.0, 0.1]))
    x = torch.zeros(5, 4)
    g = torch.Generator().manual_seed(7)
    out = DSM(SIGMA_SQUARED)(_Const(0.0), x, noise, g)
    # Re-draw the same levels and noise: loss = mean_b ½ σ_b² ‖z_b/σ_b‖² = mean_b ½‖z_b‖².
    g2 = torch.Generator().manual_seed(7)
    idx = torch.randint(0, 3, (5,), generator=g2)
    z = torch.randn(5, 4, generator=g2)
    assert out.loss.item() == pytest.approx(0.5 * (z**2).sum(1).mean().item(), rel=1e-5)
    assert out.per_level_count.tolist() == torch.bincount(idx, minlength=3).float().tolist()
    # λ = 1 instead of σ²: each sample's loss is divided by σ².
    out1 = DSM(1.0)(_Const(0.0), x, noise, torch.Generator().manual_seed(7))
    sig = noise.sigmas[idx]
    assert out1.loss.item() == pytest.approx((0.5 * (z**2).sum(1) / sig**2).mean().item(), rel=1e-5)
    assert DSM(Expr(("sym", "sigma"))).lam(torch.tensor([2.0])).item() == 2.0


def test_dsm_minimum_with_the_true_score_of_a_gaussian() -> None:
    # Data N(0, s²I), perturbed at σ: q = N(0, (s²+σ²)I), true score −x̃/(s²+σ²). The DSM loss
    # at the optimum equals ½E‖σ·target − σ·score‖² = ½·D·σ²/(s²+σ²)·(σ²/σ²)·... closed form:
    # E‖z/σ − x̃/(s²+σ²)‖²·σ²/2 = D/2 · s²/(s²+σ²).
    s, sig, D = 1.5, 0.7, 3
    noise = NoiseSchedule(torch.tensor([sig]))

    class True_(torch.nn.Module):
        def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return -x / (s**2 + sig**2)

    x = s * torch.randn(200_000, D, generator=torch.Generator().manual_seed(0))
    out = DSM(SIGMA_SQUARED)(True_(), x, noise, torch.Generator().manual_seed(1))
    assert out.loss.item() == pytest.approx(D / 2 * s**2 / (s**2 + sig**2), rel=0.01)


@pytest.mark.parametrize("vr", [False, True])
def test_ssm_is_unbiased_for_a_linear_score(vr: bool) -> None:
    # s(x) = A x on data N(0, I): the score matching objective is tr(A) + ½E‖Ax‖² = tr(A) + ½‖A‖_F².
    A = torch.tensor([[-1.0, 0.3], [0.2, -0.5]])

    class Lin(torch.nn.Module):
        def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return x @ A.T

    x = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0))
    out = SSM(1, "gaussian", vr)(Lin(), x, NoiseSchedule(torch.zeros(1)), torch.Generator().manual_seed(2))
    exact = torch.trace(A) + 0.5 * (A**2).sum()
    assert out.loss.item() == pytest.approx(exact.item(), abs=0.03)


def _ctx(score, noise: NoiseSchedule, seed: int = 0, **kw) -> SampleContext:  # type: ignore[no-untyped-def]
    return SampleContext(score=score, noise=noise, generator=torch.Generator().manual_seed(seed), **kw)


def test_langevin_reaches_a_gaussian_target() -> None:
    m, s = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    noise = NoiseSchedule(torch.tensor([0.01]))
    ctx = _ctx(lambda x, i: -(x - m) / s**2, noise)
    x = torch.zeros(4000, 2)
    x = Langevin(steps=3000, step_size=0.05, level=-1, use_exact=False, record_every=0).run(x, ctx)
    assert torch.allclose(x.mean(0), m, atol=0.08)
    # Eq. 4 with a finite step samples N(m, s²/(1 − ε/(4s²))): the discretisation bias is tiny here.
    assert torch.allclose(x.std(0), s, rtol=0.05)


def test_annealed_langevin_with_exact_scores_recovers_mode_weights() -> None:
    mix = mixture()
    noise = NoiseSchedule(torch.tensor(ladder("geometric", 20.0, 1.0, 10)))
    ctx = _ctx(None, noise, exact_score=mix.score)
    x = 16 * torch.rand(2000, 2, generator=torch.Generator().manual_seed(3)) - 8
    x = AnnealedLangevin(100, 0.1, use_exact=True, record_every=0).run(x, ctx)
    frac = (x.sum(1) < 0).float().mean().item()
    assert abs(frac - 0.2) < 0.03


def test_inpainting_keeps_known_pixels() -> None:
    class D:
        def as_float(self, split: str) -> torch.Tensor:
            return torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(5))

    noise = NoiseSchedule(torch.tensor([0.5, 0.1, 0.01]))
    ctx = _ctx(lambda x, i: -x, noise, data=D())
    stage = Inpainting(steps_per_level=3, step_size=1e-3, mask="half", mask_fraction=0.5, split="test")
    x = stage.run(torch.rand(4, 1, 6, 6), ctx)
    m = stage.last_mask.bool().expand_as(x)
    # Known pixels equal the reference plus the last level's noise (Alg. 2, lines 4-5 and 9).
    assert ((x - stage.last_reference)[m].abs() < 0.06).all()
    assert m.float().mean().item() == pytest.approx(0.5)


def test_denoise_is_tweedie_step() -> None:
    noise = NoiseSchedule(torch.tensor([1.0, 0.1]))
    ctx = _ctx(lambda x, i: torch.full_like(x, float(i + 1)), noise)
    x = torch.zeros(3, 2)
    assert torch.allclose(Denoise().run(x, ctx), torch.full((3, 2), 0.01 * 2))


def test_divergence_names_stage_and_level() -> None:
    noise = NoiseSchedule(torch.tensor([1.0, 0.1]))
    ctx = _ctx(lambda x, i: x * 1e30, noise)
    ctx.stage_name = "annealed_langevin"
    with pytest.raises(SamplerDiverged, match=r"annealed_langevin diverged at noise level 1 \(σ = 1\)"):
        AnnealedLangevin(50, 1.0, use_exact=False, record_every=0).run(torch.ones(2, 2), ctx)


def test_samplers_are_reproducible() -> None:
    noise = NoiseSchedule(torch.tensor([1.0, 0.1]))
    runs = []
    for _ in range(2):
        ctx = _ctx(lambda x, i: -x, noise, seed=11)
        runs.append(AnnealedLangevin(5, 1e-3, False, 0).run(torch.zeros(3, 2), ctx))
    assert torch.equal(runs[0], runs[1])


def test_step_size_convention_official_step_lr_is_half_epsilon() -> None:
    # Official: x + step·s + √(2·step)·z with step = step_lr·(σ_i/σ_L)². Ours: α/2·s + √α·z with
    # α = ε σ_i²/σ_L². With ε = 2·step_lr both are the same update; check one step numerically.
    noise = NoiseSchedule(torch.tensor([1.0, 0.1]))
    step_lr = 1e-5
    ctx = _ctx(lambda x, i: torch.ones_like(x), noise, seed=4)
    ours = AnnealedLangevin(1, 2 * step_lr, False, 0).run(torch.zeros(1, 1), ctx)
    g = torch.Generator().manual_seed(4)
    off = torch.zeros(1, 1)
    for s in [1.0, 0.1]:
        step = step_lr * (s / 0.1) ** 2
        off = off + step * 1.0 + math.sqrt(2 * step) * torch.randn(off.shape, generator=g)
    assert torch.allclose(ours, off, atol=1e-6)


def test_registry_builds_every_stage_and_init() -> None:
    for name in registry.names("init"):
        comp = registry.lookup("init", name)
        params, errors = comp.check_params({})
        assert not errors
        assert callable(comp.builder(**params))


def test_ema_update_formula() -> None:
    from ncsn_core.training import EMA

    net = torch.nn.Linear(2, 1)
    ema = EMA(net, 0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    # θ̄ ← μ θ̄ + (1 − μ) θ (NCSNv2 Technique 5)
    assert torch.allclose(ema.shadow["weight"], 0.9 * start["weight"] + 0.1 * net.weight)
    assert torch.allclose(ema.shadow["bias"], start["bias"])
