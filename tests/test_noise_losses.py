"""Noise ladders and training losses against closed forms (NCSN §4.1, Eq. 3, 5, 6).

Every check compares with an analytic value: the conditional score of N(x, σ²I), a DSM loss
recomputed by hand from the same random draws, the DSM minimum for Gaussian data, and the
score matching objective of a linear score on Gaussian data, which SSM must estimate without
bias. Statistical checks use a fixed seed and a tolerance of several standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from ncsn_core import registry
from ncsn_core.errors import ReproError
from ncsn_core.losses import DSM, SIGMA_SQUARED, SSM, LossOut
from ncsn_core.noise import NoiseSchedule, NoNoise, ladder
from ncsn_core.values import Expr


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(kind: str, name: str, **given):  # type: ignore[no-untyped-def]
    comp = registry.lookup(kind, name)
    params, errors = comp.check_params(given)
    assert not errors, errors
    return comp.builder(**params) if kind != "noise" else comp.builder(**params, data=None)


# ----------------------------------------------------------------------------- ladders
def test_geometric_ladder_has_a_constant_ratio_and_exact_ends() -> None:
    s = ladder("geometric", 50.0, 0.01, 232)
    assert s[0] == 50.0 and s[-1] == 0.01 and len(s) == 232
    ratios = [a / b for a, b in zip(s[:-1], s[1:])]
    assert max(ratios) - min(ratios) < 1e-9 and min(ratios) > 1  # σ₁/σ₂ = … = σ_{L−1}/σ_L > 1 (§4.1)
    assert ratios[0] == pytest.approx((50.0 / 0.01) ** (1 / 231), rel=1e-12)


def test_linear_ladder_and_the_single_level_baseline() -> None:
    s = ladder("linear", 1.0, 0.01, 4)
    assert s == pytest.approx([1.0, 0.67, 0.34, 0.01], abs=1e-12)
    # One level is [σ_min]: the single-σ baseline of App. B.2 (σ = 0.01).
    assert ladder("geometric", 1.0, 0.01, 1) == [0.01] == ladder("linear", 1.0, 0.01, 1)
    with pytest.raises(ValueError, match="unknown ladder kind"):
        ladder("cosine", 1.0, 0.01, 3)


def test_registered_noise_schedules() -> None:
    g = build("noise", "geometric", sigma_max=1.0, sigma_min=0.01, levels=10)
    assert isinstance(g, NoiseSchedule) and g.num_levels == 10 and g.perturbs
    assert torch.allclose(g.sigmas, torch.tensor(ladder("geometric", 1.0, 0.01, 10), dtype=torch.float32))
    assert bool((g.sigmas[:-1] > g.sigmas[1:]).all())  # decreasing, σ₁ largest (Alg. 1's order)
    lin = build("noise", "linear", sigma_max=2.0, sigma_min=0.5, levels=4)
    assert lin.sigmas.tolist() == pytest.approx([2.0, 1.5, 1.0, 0.5])
    # `auto` is legal where NCSNv2's techniques compute the value (1 and 2), and only there.
    geo = registry.lookup("noise", "geometric")
    assert geo.param("sigma_max").auto is not None and geo.param("levels").auto is not None
    assert registry.lookup("noise", "linear").param("levels").auto is None
    assert registry.lookup("noise", "geometric").param("sigma_min").auto is None
    with pytest.raises(ReproError, match="sigma_max .* must be larger than sigma_min"):
        build("noise", "geometric", sigma_max=0.01, sigma_min=1.0, levels=10)
    _, errors = geo.check_params({"sigma_min": 0.0})
    assert errors and "must be > 0" in errors[0][1]


def test_noise_none_does_not_perturb_and_has_no_dsm_target() -> None:
    none = build("noise", "none")
    assert isinstance(none, NoNoise) and none.num_levels == 1 and not none.perturbs
    assert none.sigmas.tolist() == [0.0]
    with pytest.raises(ReproError, match="no denoising target"):
        none.perturb(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), gen(0))
    with pytest.raises(ReproError, match=r"loss dsm needs noise levels σ > 0.*ssm"):
        DSM(SIGMA_SQUARED)(torch.nn.Identity(), torch.zeros(4, 2), none, gen(0))


# ----------------------------------------------------------------------------- DSM
@pytest.mark.parametrize("shape", [(64, 3), (32, 2, 3, 3)])
def test_dsm_target_is_the_analytic_conditional_score(shape: tuple[int, ...]) -> None:
    noise = NoiseSchedule(torch.tensor([5.0, 0.7, 0.01]))
    x = torch.randn(shape, generator=gen(0))
    idx = torch.randint(0, 3, (shape[0],), generator=gen(1))
    xt, target = noise.perturb(x, idx, gen(2))
    sig = noise.scale(idx).view(-1, *([1] * (len(shape) - 1)))
    xt = xt.detach().requires_grad_(True)
    # log N(x̃; x, σ²I) with its normalising constant; the target is its gradient in x̃ (Eq. 5).
    d = x[0].numel()
    logq = (-((xt - x) ** 2) / (2 * sig**2)).flatten(1).sum(1) - d * torch.log(
        sig.flatten() * math.sqrt(2 * math.pi)
    )
    (grad,) = torch.autograd.grad(logq.sum(), xt)
    assert torch.allclose(target, grad, rtol=1e-5, atol=1e-3)
    assert torch.allclose(target, -(xt.detach() - x) / sig**2, rtol=1e-4, atol=1e-2)
    # x̃ − x ~ N(0, σ²I) for each sample's own σ.
    z = ((xt.detach() - x) / sig).flatten()
    assert abs(z.mean().item()) < 0.15 and z.std().item() == pytest.approx(1.0, abs=0.1)


class Affine(torch.nn.Module):
    """s(x̃, i) = a_i·x̃ + b: a level-conditional linear score with known loss."""

    def __init__(self, a: list[float], b: float = 0.0) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))
        self.b = b

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.a[idx].view(-1, *([1] * (x.dim() - 1))) * x + self.b


@pytest.mark.parametrize(
    "weight,lam",
    [
        (SIGMA_SQUARED, lambda s: s**2),
        (1.0, lambda s: torch.ones_like(s)),
        (Expr(("/", ("num", 1.0), ("call", "sqrt", ("sym", "sigma")))), lambda s: s**-0.5),
    ],
)
def test_dsm_loss_equals_a_hand_computation(weight, lam) -> None:  # type: ignore[no-untyped-def]
    sigmas = torch.tensor([3.0, 1.0, 0.1])
    noise = NoiseSchedule(sigmas)
    x = torch.randn(6, 1, 2, 2, generator=gen(3))
    model = Affine([0.5, -1.0, 2.0], b=0.25)
    out = DSM(weight)(model, x, noise, gen(7))
    assert isinstance(out, LossOut)
    # The loss draws, from the one generator: a level per sample, then z for x̃ = x + σz.
    g = gen(7)
    idx = torch.randint(0, 3, (6,), generator=g)
    z = torch.randn(x.shape, generator=g)
    sig = sigmas[idx].view(-1, 1, 1, 1)
    xt = x + sig * z
    s = model.a.detach()[idx].view(-1, 1, 1, 1) * xt + 0.25
    per = 0.5 * ((s + (xt - x) / sig**2) ** 2).flatten(1).sum(1) * lam(sigmas[idx])  # Eq. 5 × λ(σ)
    assert out.loss.item() == pytest.approx(per.mean().item(), rel=1e-5)
    assert out.per_level_count.tolist() == torch.bincount(idx, minlength=3).float().tolist()
    want = torch.zeros(3).index_add_(0, idx, per)
    assert torch.allclose(out.per_level_sum, want, rtol=1e-5)
    assert out.loss.requires_grad and not out.per_level_sum.requires_grad
    out.loss.backward()
    assert model.a.grad is not None and torch.isfinite(model.a.grad).all()


def test_dsm_with_the_true_score_of_gaussian_data_reaches_the_closed_form_minimum() -> None:
    # x ~ N(0, s²I), x̃ = x + σz: q_σ = N(0, (s² + σ²)I), true score −x̃/(s² + σ²). With λ = σ²,
    # σ·s + z = (s²z − σx)/(s² + σ²) per coordinate, so the loss is ½·D·s²/(s² + σ²) at each level;
    # Eq. 6 averages the levels. Any other score (here a_i scaled by 1.1) gives a larger loss.
    s, D, n = 1.5, 4, 100_000
    sigmas = torch.tensor([3.0, 0.7, 0.1])
    noise = NoiseSchedule(sigmas)
    x = s * torch.randn(n, 1, 2, 2, generator=gen(0))
    best = Affine((-1.0 / (s**2 + sigmas**2)).tolist())
    out = DSM(SIGMA_SQUARED)(best, x, noise, gen(1))
    exact = (0.5 * D * s**2 / (s**2 + sigmas**2)).mean().item()
    assert out.loss.item() == pytest.approx(exact, rel=0.01)
    per_level = out.per_level_sum / out.per_level_count
    assert torch.allclose(per_level, 0.5 * D * s**2 / (s**2 + sigmas**2), rtol=0.02)
    worse = DSM(SIGMA_SQUARED)(Affine((-1.1 / (s**2 + sigmas**2)).tolist()), x, noise, gen(1))
    assert worse.loss.item() > out.loss.item()


# ----------------------------------------------------------------------------- SSM
def _chunked(loss, model, x, noise, chunks: int = 16) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Mean and standard error of a loss over independent chunks of the data."""
    vals = torch.tensor(
        [loss(model, xc, noise, gen(100 + k)).loss.item() for k, xc in enumerate(x.chunk(chunks))]
    )
    return vals.mean().item(), vals.std().item() / math.sqrt(chunks)


@pytest.mark.parametrize("vr", [False, True])
@pytest.mark.parametrize("projection", ["gaussian", "rademacher", "sphere"])
def test_ssm_is_unbiased_for_the_score_matching_objective_of_a_linear_score(
    vr: bool, projection: str
) -> None:
    # s(x) = Ax + b on x ~ N(μ, Σ): the score matching objective (Eq. 1 up to a constant) is
    # E[tr ∇s + ½‖s‖²] = tr A + ½(tr AΣAᵀ + ‖Aμ + b‖²). SSM (Eq. 3) and SSM-VR estimate it unbiasedly.
    A = torch.tensor([[-1.0, 0.3, 0.0], [0.2, -0.5, 0.1], [0.0, 0.4, -2.0]])
    b = torch.tensor([0.1, -0.2, 0.3])
    mu = torch.tensor([1.0, 0.0, -1.0])
    Lc = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [0.0, -0.3, 0.6]])
    cov = Lc @ Lc.T

    class Lin(torch.nn.Module):
        def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return x @ A.T + b

    x = mu + torch.randn(64_000, 3, generator=gen(0)) @ Lc.T
    exact = (torch.trace(A) + 0.5 * (torch.trace(A @ cov @ A.T) + ((A @ mu + b) ** 2).sum())).item()
    mean, se = _chunked(SSM(2, projection, vr), Lin(), x, NoNoise())
    assert abs(mean - exact) < 4 * se + 1e-3, (mean, exact, se)
    assert se < 0.05


@pytest.mark.parametrize("vr", [False, True])
def test_noise_conditional_ssm_on_images_is_unbiased_and_weighted(vr: bool) -> None:
    # With a ladder the data are perturbed at a uniform level: x̃ ~ N(0, (s² + σ_i²)I); for
    # s(x̃, i) = a_i x̃ the objective at level i is D·a_i + ½a_i²·D·(s² + σ_i²), weighted by σ_i².
    s, D = 0.8, 4
    sigmas = torch.tensor([2.0, 0.5, 0.1])
    a = [-0.2, -0.9, 1.5]
    x = s * torch.randn(48_000, 1, 2, 2, generator=gen(1))
    per = torch.tensor([D * ai + 0.5 * ai**2 * D * (s**2 + si**2) for ai, si in zip(a, sigmas.tolist())])
    exact = (sigmas**2 * per).mean().item()
    mean, se = _chunked(SSM(1, "gaussian", vr), Affine(a), x, NoiseSchedule(sigmas))
    assert abs(mean - exact) < 4 * se + 1e-3, (mean, exact, se)
    # Per-level logging: each level's mean is its own weighted objective.
    out = SSM(1, "gaussian", True)(Affine(a), x, NoiseSchedule(sigmas), gen(5))
    assert torch.allclose(out.per_level_sum / out.per_level_count, sigmas**2 * per, rtol=0.05, atol=0.01)
    assert out.per_level_count.sum().item() == x.shape[0]
    # λ = 1 removes the weighting.
    mean1, se1 = _chunked(SSM(1, "gaussian", vr, weight=1.0), Affine(a), x, NoiseSchedule(sigmas))
    assert abs(mean1 - per.mean().item()) < 4 * se1 + 1e-3


def test_ssm_gradient_flows_through_the_jacobian_term() -> None:
    # s(x) = a·x on N(0, s²I) in D dims: E[loss] = D·a + ½a²·D·s², so ∂/∂a = D + a·D·s². The
    # D term comes only through vᵀ∇ₓs v, i.e. through the double backward pass.
    s, D, a0 = 1.3, 3, -0.4
    model = Affine([a0])
    x = s * torch.randn(60_000, D, generator=gen(2))
    out = SSM(1, "gaussian", True)(model, x, NoNoise(), gen(3))
    out.loss.backward()
    assert model.a.grad.item() == pytest.approx(D + a0 * D * s**2, abs=0.05)


def test_ssm_particles_average_projections() -> None:
    # More particles per point cannot change the mean, only reduce the variance of the estimate.
    A = torch.tensor([[-1.0, 0.5], [0.5, -1.0]])

    class Lin(torch.nn.Module):
        def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return x @ A.T

    x = torch.randn(16_000, 2, generator=gen(4))
    exact = (torch.trace(A) + 0.5 * (A**2).sum()).item()
    m1, se1 = _chunked(SSM(1, "gaussian", False), Lin(), x, NoNoise())
    m8, se8 = _chunked(SSM(8, "gaussian", False), Lin(), x, NoNoise())
    assert abs(m8 - exact) < 4 * se8 + 1e-3 and abs(m1 - exact) < 4 * se1 + 1e-3
    assert se8 < se1


def test_registered_losses_build_with_their_defaults() -> None:
    dsm = build("loss", "dsm")
    assert isinstance(dsm, DSM) and dsm.weight == SIGMA_SQUARED
    ssm, ssm_vr = build("loss", "ssm"), build("loss", "ssm_vr", n_particles=3)
    assert isinstance(ssm, SSM) and not ssm.vr and ssm.n == 1
    assert isinstance(ssm_vr, SSM) and ssm_vr.vr and ssm_vr.n == 3
    # Plain ssm: the official sliced_score_estimation's unit-length v by default; ssm_vr: Gaussian.
    assert ssm.projection == "unit" and ssm_vr.projection == "gaussian"
    v = ssm._v(torch.Size((5, 1, 4, 4)), torch.zeros(1), torch.Generator().manual_seed(0))
    assert torch.allclose(v.reshape(5, -1).norm(dim=1), torch.ones(5))
    g = build("loss", "ssm", projection="gaussian")._v(torch.Size((5, 16)), torch.zeros(1), None)
    assert not torch.allclose(g.norm(dim=1), torch.ones(5))  # the Gaussian option stays
    _, errors = registry.lookup("loss", "dsm").check_params({"weight": Expr(("sym", "tau"))})
    assert errors and "unknown symbol 'tau'" in errors[0][1]
