"""ANSN: the running covariance (Eq. 2.5-2.8), covariance noise and its DSM target (§3.1), the
ansn_dsm loss, preconditioned Langevin, and checkpointing of the covariance state."""

from __future__ import annotations

import io
import time

import pytest
import torch

from ncsn_core import registry
from ncsn_core.ansn import (
    AdaptiveConfig,
    AdaptiveNoise,
    Covariance,
    PreconditionedLangevin,
    RunningCovariance,
)
from ncsn_core.errors import ReproError
from ncsn_core.noise import NoiseSchedule
from ncsn_core.samplers import SampleContext, SamplerDiverged

RAW = dict(normalize="none", jitter=0.0)  # Ĉ exactly s_d·cov + s_d·ε·I


def data(n: int, d: int, seed: int, offset: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a + offset


def noise_for(d: int, sigmas: list[float] = (1.0,), **cfg) -> AdaptiveNoise:  # type: ignore[assignment]
    return AdaptiveNoise(torch.tensor(sigmas), d, AdaptiveConfig(**cfg))


def trained(noise: AdaptiveNoise, x: torch.Tensor, batch: int) -> AdaptiveNoise:
    """Feed x in batches and one more update so that noise.cov is Ĉ of all of x."""
    for k in range(0, x.shape[0], batch):
        noise.update(x[k : k + batch].float())
    noise.update(x[:2].float())
    return noise


def build(kind: str, name: str, data=None, **given):  # type: ignore[no-untyped-def]
    params, errors = registry.lookup(kind, name).check_params(given)
    assert not errors, errors
    return registry.lookup(kind, name).builder(**params, **({} if data is None else {"data": data}))


# ----------------------------------------------------------------------------- Eq. 2.5-2.8
@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_recursive_covariance_equals_batch_covariance(form: str) -> None:
    # About 100 batches of varying size (1 to 60), far from the origin (catastrophic cancellation in
    # ΣxxT − n·x̄x̄ᵀ would show here): the merged moments equal the covariance of every point.
    x = data(3000, 6, 0, offset=1e4)
    sizes = torch.randint(1, 61, (200,), generator=torch.Generator().manual_seed(1)).tolist()
    rc = RunningCovariance(6, form, rank=2)
    i = 0
    for b in sizes:
        if i >= x.shape[0]:
            break
        rc.update(x[i : i + b])
        i += b
    seen = x[:i]
    assert rc.n == seen.shape[0]
    exact = torch.cov(seen.T)
    assert torch.allclose(rc.mean, seen.mean(0), rtol=1e-13)
    assert torch.allclose(rc.variances(), torch.diagonal(exact), rtol=1e-10)
    if form == "full":
        assert torch.allclose(rc.covariance(), exact, rtol=1e-10, atol=1e-10 * float(exact.abs().max()))


def test_batches_of_one_point_follow_haario_recursion() -> None:
    # Haario et al.'s (2001) recursion, which ANSN's Eq. 2.8 garbles: for t ≥ 2,
    # C_{t+1} = (t−1)/t·C_t + s_d/t·(t·X̄_{t−1}X̄_{t−1}ᵀ − (t+1)·X̄_t X̄_tᵀ + X_t X_tᵀ + ε I),
    # X̄_t the mean of X_0 … X_t and C_t = s_d·cov(X_0 … X_{t−1}) + s_d·ε·I (Eq. 2.5).
    d, eps = 3, 1e-3
    x = data(40, d, 2).float().double()  # exactly representable in the trainer's float32
    noise = noise_for(d, form="full", eps=eps, **RAW)
    sd = noise.s_d
    c = sd * torch.cov(x[:2].T) + sd * eps * torch.eye(d, dtype=torch.float64)  # C_2
    noise.update(x[0:1].float())
    noise.update(x[1:2].float())
    for t in range(2, 40):
        xt, m_prev, m_t = x[t], x[:t].mean(0), x[: t + 1].mean(0)
        c = (t - 1) / t * c + sd / t * (
            t * torch.outer(m_prev, m_prev)
            - (t + 1) * torch.outer(m_t, m_t)
            + torch.outer(xt, xt)
            + eps * torch.eye(d, dtype=torch.float64)
        )  # C_{t+1}
        noise.update(x[t : t + 1].float())  # batch t joins: Ĉ from X_0 … X_t
        ours = sd * noise.stats.covariance() + sd * eps * torch.eye(d, dtype=torch.float64)
        assert torch.allclose(ours, c, rtol=1e-9, atol=1e-12)
    noise.update(x[:1].float())
    assert torch.allclose(noise.cov.dense().double(), c, rtol=1e-6)  # the Ĉ the next batch uses


def test_lowrank_is_exact_for_data_in_a_subspace() -> None:
    # Data in a 3-dim affine subspace of R^20: the rank-3 + diagonal Ĉ equals the full Ĉ.
    g = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(20, 3, generator=g, dtype=torch.float64))[0]
    x = (torch.randn(600, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.2])) @ basis.T
    x = x + torch.randn(20, generator=g, dtype=torch.float64)
    for normalize in ("none", "trace"):
        full = trained(noise_for(20, form="full", normalize=normalize, jitter=0.0), x, 37)
        low = trained(noise_for(20, form="lowrank", rank=3, normalize=normalize, jitter=0.0), x, 37)
        a, b = full.cov.dense().double(), low.cov.dense().double()
        assert torch.allclose(a, b, atol=1e-5 * float(a.abs().max()))


def test_lowrank_keeps_the_exact_diagonal_and_the_frequent_directions_bound() -> None:
    x = data(500, 30, 4)
    rc = RunningCovariance(30, "lowrank", rank=3)
    for k in range(0, 500, 23):
        rc.update(x[k : k + 23])
    assert rc.sketch is not None and rc.sketch.shape[0] <= 6
    a = x - x.mean(0)
    m2 = a.T @ a
    err = m2 - rc.sketch.T @ rc.sketch
    s = torch.linalg.svdvals(a)
    bound = float((s[3:] ** 2).sum()) / (6 - 3)  # ‖A − A_k‖²_F/(ℓ − k), Ghashami et al. 2016
    ev = torch.linalg.eigvalsh(err)
    assert float(ev.min()) > -1e-8 * float(ev.max()) and float(ev.max()) <= bound
    # diag(Ĉ) is exact whatever the sketch misses
    full = trained(noise_for(30, form="full", **RAW), x, 50)
    low = trained(noise_for(30, form="lowrank", rank=3, **RAW), x, 50)
    assert torch.allclose(low.cov.dense().diagonal(), full.cov.dense().diagonal(), rtol=1e-5)


def test_update_time_is_bounded_for_cifar_size() -> None:
    # D = 32·32·3, batch 128: per training step the lowrank form costs one eigh of a (2k+129)²
    # Gram matrix and O(Dk) vector work; printed, not asserted.
    x = torch.rand(128, 3, 32, 32)
    for form, rank in (("diagonal", 16), ("lowrank", 16), ("lowrank", 64)):
        n = noise_for(3072, form=form, rank=rank)
        n.update(x)
        n.update(x)  # the first Ĉ from data
        t0 = time.perf_counter()
        for _ in range(3):
            n.update(x)
            n.perturb(x, torch.zeros(128, dtype=torch.long))
        per = (time.perf_counter() - t0) / 3
        print(f"adaptive {form} rank {rank}, D = 3072, batch 128: {per * 1e3:.1f} ms per update + perturb")
        if n.stats.sketch is not None:
            assert n.stats.sketch.shape[0] <= 2 * rank


# ----------------------------------------------------------------------------- noise and DSM target
@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_factor_identities(form: str) -> None:
    # MMᵀ = Ĉ, Ĉ⁻¹Ĉ = I, M^{−T}Mᵀ = I, for the three forms (lowrank with rank < D).
    n = trained(noise_for(5, form=form, rank=2), data(80, 5, 5), 16)
    c = n.cov.dense().double()
    eye = torch.eye(5)
    m = n.cov.sqrt_mul(eye).T.double()  # columns M e_j
    assert torch.allclose(m @ m.T, c, atol=1e-5)
    assert torch.allclose(n.cov.solve(n.cov.mul(eye)), eye, atol=1e-4)
    assert torch.allclose(n.cov.inv_sqrt_t_mul(n.cov.sqrt_t_mul(eye)), eye, atol=1e-4)
    assert abs(float(c.trace()) / 5 - 1.0) < 1e-5 + 1e-6  # normalize = trace (plus jitter)


@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_noise_has_the_right_covariance(form: str) -> None:
    d = 4
    x = data(3000, d, 6)
    n = trained(noise_for(d, [2.0, 0.5], form=form, rank=2, **RAW), x, 500)
    c_hat = n.s_d * torch.cov(x.T) + n.s_d * 1e-5 * torch.eye(d, dtype=torch.float64)  # Eq. 2.5
    if form == "diagonal":
        c_hat = torch.diag(torch.diagonal(c_hat))
    if form != "lowrank":  # (lowrank with rank 2 < 4 is an approximation; its factor is tested above)
        assert torch.allclose(n.cov.dense().double(), c_hat, rtol=1e-5)
    idx = torch.zeros(40000, dtype=torch.long)
    eps_ = n.sample_noise(torch.zeros(40000, d), idx, torch.Generator().manual_seed(7))
    emp = torch.cov(eps_.T.double()) / 4.0  # σ₁² = 4
    ref = n.cov.dense().double()
    assert torch.allclose(emp, ref, atol=0.03 * float(ref.diagonal().max()))


@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_dsm_target_is_the_analytic_conditional_score(form: str) -> None:
    d = 5
    n = trained(noise_for(d, [1.5, 0.3], form=form, rank=2), data(200, d, 8), 40)
    x = torch.randn(8, d)
    idx = torch.tensor([0, 1] * 4)
    xt, target = n.perturb(x, idx, torch.Generator().manual_seed(9))
    for b in range(8):
        cov = float(n.sigmas[idx[b]]) ** 2 * n.cov.dense().double()  # Σ_i
        xb = xt[b].double().requires_grad_(True)
        logq = torch.distributions.MultivariateNormal(x[b].double(), covariance_matrix=cov).log_prob(xb)
        (g,) = torch.autograd.grad(logq, xb)  # ∇_x̃ log N(x̃; x, Σ_i)
        assert torch.allclose(target[b].double(), g, rtol=1e-3, atol=1e-4 * float(g.abs().max()))


# ----------------------------------------------------------------------------- the loss (Eq. 3.1)
class Lin(torch.nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(d, d)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def test_ansn_dsm_weightings() -> None:
    torch.manual_seed(0)
    d = 4
    model, x = Lin(d), torch.randn(16, d)
    iso = NoiseSchedule(torch.tensor([1.0, 0.3]))
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    dsm = build("loss", "dsm")(model, x, iso, g()).loss
    for w in ("whitened", "sigma2"):  # isotropic noise: both are NCSN's λ = σ²
        assert torch.allclose(build("loss", "ansn_dsm", weighting=w)(model, x, iso, g()).loss, dsm)
    n = trained(noise_for(d, [1.0, 0.3], form="full"), data(100, d, 10), 20)
    idx = torch.tensor([0, 1, 1, 0])
    r = torch.randn(4, d)
    per = build("loss", "ansn_dsm", weighting="whitened").per_sample(r, idx, n)
    sig = n.sigmas[idx]
    expect = 0.5 * sig**2 * torch.einsum("bi,ij,bj->b", r, n.cov.dense(), r)  # ½ rᵀΣ_i r
    assert torch.allclose(per, expect, rtol=1e-5)
    assert torch.allclose((n.whiten(r, idx) ** 2).sum(1), 2 * expect, rtol=1e-5)
    assert torch.allclose(build("loss", "ansn_dsm", weighting="sigma2").per_sample(r, idx, n),
                          0.5 * sig**2 * (r**2).sum(1))  # fmt: skip


@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_preconditioned_output_target_loss_and_score(form: str) -> None:
    """noise adaptive { output = preconditioned }: the network's target is Ĉ times the score's
    (−(x̃ − x)/σ², NCSN's), the whitened loss of an output residual Ĉr equals the score
    parametrisation's of r, and Ĉ⁻¹ turns the output back into the score."""
    d = 5
    x, idx = torch.randn(8, d), torch.tensor([0, 1] * 4)
    kw = {"form": form, "rank": 2}
    s_par = trained(noise_for(d, [1.5, 0.3], **kw), data(200, d, 8), 40)
    u_par = trained(noise_for(d, [1.5, 0.3], output="preconditioned", **kw), data(200, d, 8), 40)
    xt_s, t_s = s_par.perturb(x, idx, torch.Generator().manual_seed(9))
    xt_u, t_u = u_par.perturb(x, idx, torch.Generator().manual_seed(9))
    assert torch.equal(xt_s, xt_u)  # the same perturbation
    sig = s_par.sigmas[idx][:, None]
    assert torch.allclose(t_u, -(xt_u - x) / sig**2, rtol=1e-5, atol=1e-5)
    assert torch.allclose(t_u, s_par.precondition(t_s, 0), rtol=1e-4, atol=1e-4)
    assert torch.allclose(u_par.score_of(t_u, 0), t_s, rtol=1e-3, atol=1e-3 * float(t_s.abs().max()))
    assert torch.equal(u_par.preconditioned_of(t_u, 0), t_u)  # no solve on the sampler's path
    eye = torch.eye(d)
    assert torch.allclose(u_par.cov.sqrt_mul(u_par.cov.inv_sqrt_mul(eye)), eye, atol=1e-4)
    r = torch.randn(8, d)
    loss = build("loss", "ansn_dsm")
    assert torch.allclose(
        loss.per_sample(u_par.precondition(r, 0), idx, u_par), loss.per_sample(r, idx, s_par), rtol=1e-3
    )
    # sigma2 is NCSN's λ = σ² on whatever the network outputs
    assert torch.allclose(
        build("loss", "ansn_dsm", weighting="sigma2").per_sample(r, idx, u_par),
        0.5 * s_par.sigmas[idx] ** 2 * (r**2).sum(1),
    )


def test_preconditioned_output_samples_the_same_chain() -> None:
    """The preconditioned sampler given the network's u = Ĉs takes the step the score
    parametrisation takes with s (no Ĉ⁻¹ then Ĉ round trip), and the plain annealed sampler
    gets s = Ĉ⁻¹u."""
    sig = [2.0, 0.5]
    s_par = trained(noise_for(3, sig, form="full"), data(60, 3, 16), 20)
    u_par = trained(noise_for(3, sig, form="full", output="preconditioned"), data(60, 3, 16), 20)
    b = torch.tensor([0.3, -1.0, 2.0])

    def s(x: torch.Tensor, i: int) -> torch.Tensor:
        return -(x - b) * (i + 1)

    def u(x: torch.Tensor, i: int) -> torch.Tensor:
        return s_par.precondition(s(x, i), i)

    ref = PreconditionedLangevin(4, 1e-2, "none", 0).run(
        torch.zeros(5, 3), SampleContext(score=s, noise=s_par, generator=torch.Generator().manual_seed(3))
    )
    ctx = SampleContext(
        score=lambda x, i: u_par.score_of(u(x, i), i),
        noise=u_par,
        generator=torch.Generator().manual_seed(3),
        output=u,
    )
    got = PreconditionedLangevin(4, 1e-2, "none", 0).run(torch.zeros(5, 3), ctx)
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(ctx.score(got, 1), s(got, 1), atol=1e-3)


def test_estimate_on_residual_and_perturbed() -> None:
    d = 3
    model, x = Lin(d), data(64, d, 11).float()
    res = noise_for(d, [1.0, 0.1], estimate_on="residual")
    loss = build("loss", "ansn_dsm")
    for k in range(4):
        res.update(x[16 * k : 16 * k + 16])
        loss(model, x[16 * k : 16 * k + 16], res, None)
    assert res.stats.n == 64 and res.residual_batches == 4 and res.cov.form == "diagonal"
    lone = noise_for(d, [1.0, 0.1], estimate_on="residual")
    lone.update(x[:16])
    build("loss", "dsm")(model, x[:16], lone, None)  # dsm does not report residuals
    with pytest.raises(ReproError, match="ansn_dsm"):
        lone.update(x[16:32])
    pert = noise_for(d, [5.0, 0.1], estimate_on="perturbed")
    trained(pert, x, 16)
    clean = trained(noise_for(d, [5.0, 0.1]), x, 16)
    assert pert.stats.n == clean.stats.n and not torch.allclose(pert.stats.mean, clean.stats.mean)


def test_warmup_and_data_diag_c0() -> None:
    n = noise_for(3, warmup=2, form="full")
    x = data(50, 3, 12).float()
    for t in range(4):
        n.update(x[10 * t : 10 * t + 10])
        assert (n.cov.form == "diagonal") == (t <= 2)  # C₀ = I for t ≤ warmup, then Ĉ_t (full)

    class Src:
        shape, train = (3,), x

    m = build("noise", "adaptive", c0="data_diag", normalize="trace", jitter=1e-6, data=Src())
    v = x.double().var(0) + 1e-5
    assert torch.allclose(m.cov.t["d"].double(), v / v.mean() + 1e-6, rtol=1e-5)  # normalised diag
    raw = build("noise", "adaptive", c0="data_diag", data=Src())  # the paper's: s_d(var + ε), as is
    assert torch.allclose(raw.cov.t["d"].double(), 2.4**2 / 3 * v, rtol=1e-5)
    with pytest.raises(ReproError, match="lowrank"):

        class Big:
            shape = (3, 64, 64)

        build("noise", "adaptive", form="full", data=Big())


# ----------------------------------------------------------------------------- sampling
def _discrete_stationary(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """V with V = B V Bᵀ + Q (the exact stationary covariance of x ← Bx + c + Q^{1/2}z)."""
    k = torch.eye(4, dtype=torch.float64) - torch.kron(b, b)
    return torch.linalg.solve(k, q.reshape(-1)).reshape(2, 2)


@pytest.mark.parametrize("scaling", ["none", "divide_sigma"])
def test_preconditioned_langevin_reaches_a_gaussian_target(scaling: str) -> None:
    # Target N(m, S) with its exact score; a fixed SPD Ĉ. The chain x ← x + a/2·k·Ĉ S⁻¹(m − x) +
    # √a Ĉ^{1/2}z is linear: its stationary law is N(m, V), V = BVBᵀ + aĈ, B = I − a/2·k·Ĉ S⁻¹
    # (→ S as a → 0 when k = 1; divide_sigma, k = 1/σ, tempers it to σ·S).
    m = torch.tensor([1.0, -1.0])
    S = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
    P = torch.linalg.inv(S)
    c = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
    sigma, a = 0.5, 0.05
    noise = noise_for(2, [sigma], form="full")
    noise.cov = Covariance.full(c)  # any fixed SPD Ĉ
    ctx = SampleContext(
        score=lambda x, i: -(x - m) @ P.float().T, noise=noise, generator=torch.Generator().manual_seed(13)
    )
    x = PreconditionedLangevin(600, a, scaling, 0).run(torch.zeros(6000, 2), ctx)
    k = 1.0 / sigma if scaling == "divide_sigma" else 1.0
    V = _discrete_stationary(torch.eye(2, dtype=torch.float64) - 0.5 * a * k * c @ P, a * c)
    assert torch.allclose(x.mean(0), m, atol=0.06)
    assert torch.allclose(torch.cov(x.T).double(), V, rtol=0.06, atol=0.04)


@pytest.mark.parametrize("scaling", ["none", "divide_sigma"])
def test_preconditioned_langevin_step_is_alg1_with_c_hat(scaling: str) -> None:
    # The exact update, replayed from the same random stream: α_i = ε σ_i²/σ_L² (Alg. 1 line 3),
    # x ← x + α_i/2·k_i·Ĉ s + √α_i·Ĉ^{1/2}z with k_i = 1 or 1/σ_i.
    sig, eps, T = [2.0, 0.5], 1e-2, 3
    n = trained(noise_for(3, sig, form="full"), data(60, 3, 16), 20)
    b = torch.tensor([0.3, -1.0, 2.0])
    ctx = SampleContext(
        score=lambda x, i: b.expand_as(x) * (i + 1), noise=n, generator=torch.Generator().manual_seed(17)
    )
    x = PreconditionedLangevin(T, eps, scaling, 0).run(torch.zeros(4, 3), ctx)
    g, c, ref = torch.Generator().manual_seed(17), n.cov.dense(), torch.zeros(4, 3)
    m = n.cov.sqrt_mul(torch.eye(3)).T  # M, MMᵀ = Ĉ
    for i, s in enumerate(sig):
        a = eps * s**2 / sig[-1] ** 2
        k = 1 / s if scaling == "divide_sigma" else 1.0
        for _ in range(T):
            ref = ref + a / 2 * k * (b * (i + 1)) @ c + a**0.5 * torch.randn(4, 3, generator=g) @ m.T
    assert torch.allclose(x, ref, atol=1e-5)


def test_preconditioned_langevin_with_isotropic_noise_and_divergence() -> None:
    seen = []
    ctx = SampleContext(
        score=lambda x, i: -x,
        noise=NoiseSchedule(torch.tensor([1.0, 0.5])),
        generator=torch.Generator().manual_seed(14),
        record=lambda name, x: seen.append(name),
        stage_name="pl",
    )
    x = PreconditionedLangevin(3, 0.1, "none", 3).run(torch.zeros(5, 2), ctx)
    assert torch.isfinite(x).all() and seen == ["pl:level1", "pl:level2"]
    ctx.score = lambda x, i: x * 1e30  # noqa: E731
    with pytest.raises(SamplerDiverged, match="pl diverged at noise level 1"):
        PreconditionedLangevin(50, 0.1, "none", 0).run(torch.ones(5, 2), ctx)


# ----------------------------------------------------------------------------- training state
@pytest.mark.parametrize(("form", "on"), [("full", "data"), ("diagonal", "perturbed"), ("lowrank", "data")])
def test_state_dict_round_trip_continues_identically(form: str, on: str) -> None:
    d = 6
    cfg = dict(form=form, rank=2, estimate_on=on)
    a = noise_for(d, [1.0, 0.1], **cfg)
    x = data(300, d, 15).float()
    for k in range(0, 150, 30):
        a.update(x[k : k + 30])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = noise_for(d, [1.0, 0.1], **cfg)
    b.load_state_dict(torch.load(buf, weights_only=False))
    for k in range(150, 300, 30):
        a.update(x[k : k + 30])
        b.update(x[k : k + 30])
        idx = torch.tensor([0, 1] * 15)
        pa = a.perturb(x[k : k + 30], idx, torch.Generator().manual_seed(k))
        pb = b.perturb(x[k : k + 30], idx, torch.Generator().manual_seed(k))
        assert all(torch.equal(u, v) for u, v in zip(pa, pb))
    sa, sb = a.state_dict(), b.state_dict()
    for key in ("mean", "m2_diag"):
        assert torch.equal(sa["stats"][key], sb["stats"][key])
    for key in sa["cov"]:
        assert key == "form" or torch.equal(sa["cov"][key], sb["cov"][key])


@pytest.mark.parametrize(
    ("output", "stage"),
    [
        ("score", "preconditioned_langevin"),
        ("preconditioned", "preconditioned_langevin"),
        ("sigma_score", "ansn_langevin"),  # the paper's reading: every default
    ],
)
def test_ansn_trains_and_samples_from_an_exp(write, tmp_path, output: str, stage: str) -> None:  # type: ignore[no-untyped-def]
    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    src = """experiment a {
        data mixture2d { n_train = 1000, stds = [3.0, 0.3, 0.3, 3.0] }
        noise adaptive { sigma_max = 5.0, sigma_min = 0.1, levels = 4, form = full, output = OUTPUT }
        network mlp { hidden = 16, conditional = true, scale_by_sigma = true }
        loss ansn_dsm { }
        train { iterations = 20, batch_size = 32, checkpoint_every = 10, log_every = 10 }
        sample { samples = 50, init = uniform(low = -8, high = 8),
                 stage STAGE { steps_per_level = 5, step_size = 0.01 } }
    }""".replace("OUTPUT", output).replace("STAGE", stage)
    (spec,) = compile_file(write("a.exp", src))
    run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    ck = sorted((tmp_path / "runs").glob("a/*/seed-0/train/checkpoints/*.pt"))[-1]
    st = torch.load(ck, weights_only=False)
    assert st["noise"]["stats"]["n"] == 20 * 32  # the covariance state is checkpointed
    assert st["noise"]["cov"]["form"] == "full"  # with the Ĉ the last batch used
    x = torch.load(next((tmp_path / "runs").glob("a/*/seed-0/sample-*/samples.pt")))
    assert x.shape == (50, 2) and torch.isfinite(x).all()


# ----------------------------------------------------------------------------- the paper's reading
def test_printed_eq_2_8_does_not_reproduce_eq_2_5_but_haarios_does() -> None:
    """Eq. 2.8 as printed has (t − 1)·X̄_tX̄_tᵀ where Haario et al. (2001) have (t + 1): only the
    latter equals Eq. 2.5 (s_d·cov + s_d·ε·I with Eq. 2.6's 1/(n − 1)) along the recursion."""
    d, eps = 3, 1e-3
    x = data(30, d, 21)
    sd = 2.4**2 / d
    eye = torch.eye(d, dtype=torch.float64)
    eq25 = lambda t: sd * torch.cov(x[:t].T) + sd * eps * eye  # noqa: E731  C_t from X_0 … X_{t−1}
    errs = {}
    for k in (1, -1):  # (t + 1): Haario's; (t − 1): as printed
        c, worst = eq25(2), 0.0
        for t in range(2, 30):
            mp, mt, xt = x[:t].mean(0), x[: t + 1].mean(0), x[t]
            c = (t - 1) / t * c + sd / t * (
                t * torch.outer(mp, mp) - (t + k) * torch.outer(mt, mt) + torch.outer(xt, xt) + eps * eye
            )
            worst = max(worst, float((c - eq25(t + 1)).abs().max() / eq25(t + 1).abs().max()))
        errs[k] = worst
    assert errs[1] < 1e-13 and errs[-1] > 1e-2, errs


def test_eq31_is_the_loss_as_written_and_dsm_with_unit_weight() -> None:
    """loss ansn_dsm { } with noise adaptive's defaults: ½‖Σ_i⁻¹s_θ(x̃) + Σ_i⁻¹(x̃ − x)‖² on the
    network's output, Σ_i = σ_i²Ĉ formed densely here; its target is −(x̃ − x), so the minimiser
    outputs Σ_i·score; the score read off it is the score parametrisation's target."""
    d = 4
    n = trained(noise_for(d, [1.0, 0.3], form="full", output="sigma_score", **RAW), data(100, d, 10), 20)
    x, idx = torch.randn(6, d), torch.tensor([0, 1, 1, 0, 1, 0])
    seen = {}

    class Rec(torch.nn.Module):
        def forward(self, xt, i):  # type: ignore[no-untyped-def]
            seen["xt"] = xt
            return torch.sin(xt)

    per_loss = build("loss", "ansn_dsm")
    out = per_loss.loss(Rec(), x, idx, n, torch.Generator().manual_seed(3), None)
    xt = seen["xt"]
    sig = n.sigmas[idx].double()
    c = n.cov.dense().double()
    expect = torch.stack([
        0.5 * (torch.linalg.solve(sig[b] ** 2 * c, torch.sin(xt[b]).double() + (xt[b] - x[b]).double())) .pow(2).sum()
        for b in range(6)
    ])  # fmt: skip
    assert torch.allclose(out.loss.double(), expect.mean(), rtol=1e-4)
    _, target = n.perturb(x, idx, torch.Generator().manual_seed(3))
    assert torch.allclose(target, -(xt - x), atol=1e-6)  # Eq. 3.1's minimiser: −E[x̃ − x | x̃]
    s_par = noise_for(d, [1.0, 0.3], form="full", **RAW)
    s_par.cov = n.cov
    _, t_score = s_par.perturb(x, idx, torch.Generator().manual_seed(3))
    for i in (0, 1):  # Σ_i⁻¹ of the output target is the score's target −Σ_i⁻¹(x̃ − x)
        rows = idx == i
        assert torch.allclose(n.score_of(target[rows], i), t_score[rows], rtol=1e-4, atol=1e-4)
    iso = NoiseSchedule(torch.tensor([1.0, 0.3]))
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    model = Lin(d)
    one = build("loss", "dsm", weight=1.0)(model, x, iso, g()).loss
    assert torch.allclose(build("loss", "ansn_dsm")(model, x, iso, g()).loss, one)  # λ = 1


def test_estimate_on_score_is_the_covariance_of_the_networks_scores() -> None:
    """estimate_on = score (the default reading of §2.2): Ĉ_{t+1} = s_d·cov(σ_i·ŝ of every batch
    so far) + s_d·ε·I, ŝ = Σ_i⁻¹·output the score the network gives for batch t."""
    d = 3
    x = data(64, d, 11).float()
    n = noise_for(d, [1.0, 0.1], form="full", estimate_on="score", output="sigma_score", **RAW)
    model, loss, scores = Lin(d), build("loss", "ansn_dsm"), []
    for k in range(4):
        n.update(x[16 * k : 16 * k + 16])
        cov_t = n.cov.dense().double()
        g = torch.Generator().manual_seed(k)
        idx = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(k))
        loss.loss(model, x[16 * k : 16 * k + 16], idx, n, g, None)
        xt, _ = n.perturb(x[16 * k : 16 * k + 16], idx, torch.Generator().manual_seed(k))
        with torch.no_grad():
            u = model(xt, idx).double()
        sig = n.sigmas[idx].double()[:, None]
        scores.append(sig * torch.linalg.solve(cov_t, u.T).T / sig**2)  # σ_i·Σ_i⁻¹u
    n.update(x[:2])
    allv = torch.cat(scores)
    expect = n.s_d * torch.cov(allv.T) + n.s_d * 1e-5 * torch.eye(d, dtype=torch.float64)
    assert n.stats.n == 64 and torch.allclose(n.cov.dense().double(), expect, rtol=1e-4, atol=1e-7)
    lone = noise_for(d, [1.0, 0.1], estimate_on="score")
    lone.update(x[:16])
    build("loss", "dsm")(model, x[:16], lone, None)  # dsm reports no score estimates
    with pytest.raises(ReproError, match="estimate_on = score needs the model's score estimates"):
        lone.update(x[16:32])


@pytest.mark.parametrize(("drive", "final"), [("output", "after_last_step"), ("score", "before_last_step")])
def test_ansn_langevin_is_alg1_as_printed(drive: str, final: str) -> None:
    """stage ansn_langevin: x ← x + α_i/(2σ_i)·s_θ(x) + √α_i·z, z ~ N(0, I) (no Ĉ), s_θ the
    network's output (drive = output) or the score read off it; final = before_last_step
    returns the state before the last update."""
    from ncsn_core.ansn_sampling import AnnealedLangevinAlg1

    sig, eps, T = [2.0, 0.5], 1e-2, 3
    n = trained(noise_for(3, sig, form="full", output="sigma_score"), data(60, 3, 16), 20)
    b = torch.tensor([0.3, -1.0, 2.0])
    out = lambda x, i: b.expand_as(x) * (i + 1) - 0.1 * x  # noqa: E731
    score = lambda x, i: n.score_of(out(x, i), i)  # noqa: E731
    ctx = SampleContext(score=score, output=out, noise=n, generator=torch.Generator().manual_seed(17))
    x = AnnealedLangevinAlg1(T, eps, "divide_sigma", drive, 0, final).run(torch.zeros(4, 3), ctx)
    g, ref, prev = torch.Generator().manual_seed(17), torch.zeros(4, 3), None
    f = out if drive == "output" else score
    for i, s in enumerate(sig):
        a = eps * s**2 / sig[-1] ** 2
        for _ in range(T):
            prev = ref
            ref = ref + a / (2 * s) * f(ref, i) + a**0.5 * torch.randn(4, 3, generator=g)
    assert torch.allclose(x, prev if final == "before_last_step" else ref, atol=1e-5)


def test_divide_sigma_preconditioned_sampler_has_a_covariance_error_about_s() -> None:
    """The documented flaw of preconditioned_langevin { score_scaling = divide_sigma } (ansn_mnist
    and ansn_cifar used it before they followed the paper): on an exact Gaussian score N(m, S)
    its stationary covariance is about σ·S, an error of (1 − σ)·S; with none it is S."""
    S = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
    P, c = torch.linalg.inv(S), torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
    sigma, a = 0.1, 1e-3
    err = {}
    for k, name in ((1.0 / sigma, "divide_sigma"), (1.0, "none")):
        V = _discrete_stationary(torch.eye(2, dtype=torch.float64) - 0.5 * a * k * c @ P, a * c)
        err[name] = float(torch.linalg.matrix_norm(V - S, 2) / torch.linalg.matrix_norm(S, 2))
    assert err["none"] < 1e-2 and 0.8 < err["divide_sigma"] < 1.0, err
