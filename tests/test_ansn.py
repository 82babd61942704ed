"""ANSN: the running covariance, covariance-noise sampling, the DSM target, preconditioned
Langevin, and checkpointing of the covariance state."""

from __future__ import annotations

import time

import pytest
import torch

from ncsn_core.ansn import AdaptiveNoise, Covariance, PreconditionedLangevin, RunningCovariance
from ncsn_core.samplers import SampleContext

PARAMS = dict(s_d=0.0, eps=1e-5, normalize="none", estimate_on="data", jitter=0.0, warmup=0, rank=2)


def data(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a + 3.0


@pytest.mark.parametrize("form", ["full", "diagonal"])
def test_recursive_covariance_equals_batch_covariance(form: str) -> None:
    x = data(1000, 6, 0)
    rc = RunningCovariance(6, form)
    i = 0
    for b in [1, 7, 100, 3, 250, 639]:  # batches of varying size
        rc.update(x[i : i + b])
        i += b
    assert rc.n == 1000
    assert torch.allclose(rc.mean, x.mean(0), atol=1e-12)
    exact = torch.cov(x.T)
    assert torch.allclose(rc.variances(), torch.diagonal(exact), rtol=1e-10)
    if form == "full":
        assert torch.allclose(rc.covariance(), exact, rtol=1e-10, atol=1e-10)


def test_lowrank_is_exact_for_data_in_a_subspace() -> None:
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(20, 2, generator=g, dtype=torch.float64))[0]
    x = torch.randn(500, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0]) @ basis.T
    rc = RunningCovariance(20, "lowrank", rank=2)
    for k in range(0, 500, 50):
        rc.update(x[k : k + 50])
    u, s = rc.lowrank()
    assert torch.allclose(u @ torch.diag(s) @ u.T, torch.cov(x.T), atol=1e-8)


def test_lowrank_update_is_bounded_for_cifar_size() -> None:
    rc = RunningCovariance(3072, "lowrank", rank=16)
    x = torch.rand(128, 3072)
    t0 = time.perf_counter()
    for _ in range(5):
        rc.update(x)
    per = (time.perf_counter() - t0) / 5
    print(f"lowrank update, D = 3072, batch 128: {per * 1000:.1f} ms")  # a figure, not an assertion
    assert rc.sketch is not None and rc.sketch.shape[0] <= 2 * 16 + 129


@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_noise_has_the_right_covariance(form: str) -> None:
    d = 4
    x = data(3000, d, 2).float()
    noise = AdaptiveNoise(
        torch.tensor([2.0, 0.5]), d, {**PARAMS, "form": form, "rank": 4 if form == "lowrank" else 2}
    )
    noise.stats.update(x)
    noise.batches = 1
    noise._refresh()
    idx = torch.zeros(40000, dtype=torch.long)
    xt, _ = noise.perturb(torch.zeros(40000, d), idx, torch.Generator().manual_seed(3))
    c_hat = noise.s_d * torch.cov(x.T.double()) + noise.s_d * 1e-5 * torch.eye(d, dtype=torch.float64)
    if form == "diagonal":
        c_hat = torch.diag(torch.diagonal(c_hat))
    emp = torch.cov(xt.T.double()) / 4.0  # σ₁² = 4
    assert torch.allclose(emp, c_hat, rtol=0.05, atol=0.03 * float(c_hat.diagonal().max()))


@pytest.mark.parametrize("form", ["full", "diagonal", "lowrank"])
def test_dsm_target_is_the_analytic_conditional_score(form: str) -> None:
    d = 5
    noise = AdaptiveNoise(torch.tensor([1.5, 0.3]), d, {**PARAMS, "form": form})
    noise.stats.update(data(200, d, 4).float())
    noise.batches = 1
    noise._refresh()
    x = torch.randn(8, d)
    idx = torch.tensor([0, 1] * 4)
    xt, target = noise.perturb(x, idx, torch.Generator().manual_seed(5))
    for b in range(8):
        sig = float(noise.sigmas[idx[b]])
        cov = sig**2 * noise.cov.mul(torch.eye(d)).double()  # Σ_i as a matrix
        xb = xt[b].double().requires_grad_(True)
        logq = torch.distributions.MultivariateNormal(
            x[b].double(), covariance_matrix=(cov + cov.T) / 2
        ).log_prob(xb)
        (g,) = torch.autograd.grad(logq, xb)
        assert torch.allclose(target[b].double(), g, rtol=1e-3, atol=1e-3 * float(g.abs().max()))


def test_preconditioned_langevin_reaches_a_gaussian_target() -> None:
    m = torch.tensor([1.0, -1.0])
    S = torch.tensor([[2.0, 1.2], [1.2, 1.0]])
    P = torch.linalg.inv(S)
    noise = AdaptiveNoise(torch.tensor([0.1]), 2, {**PARAMS, "form": "full"})
    chol = torch.linalg.cholesky(torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    noise.cov = Covariance("full", torch.diagonal(chol @ chol.T), chol=chol)  # any fixed SPD Ĉ
    ctx = SampleContext(
        score=lambda x, i: -(x - m) @ P.T, noise=noise, generator=torch.Generator().manual_seed(6)
    )
    x = PreconditionedLangevin(3000, 0.02, "none").run(torch.zeros(4000, 2), ctx)
    assert torch.allclose(x.mean(0), m, atol=0.1)
    assert torch.allclose(torch.cov(x.T), S, atol=0.15)


def test_state_dict_round_trip_continues_identically() -> None:
    d = 3
    p = {**PARAMS, "form": "full"}
    a = AdaptiveNoise(torch.tensor([1.0, 0.1]), d, p)
    x = data(300, d, 7).float()
    for k in range(0, 150, 30):
        a.update(x[k : k + 30])
    b = AdaptiveNoise(torch.tensor([1.0, 0.1]), d, p)
    b.load_state_dict(a.state_dict())
    for k in range(150, 300, 30):
        a.update(x[k : k + 30])
        b.update(x[k : k + 30])
    assert torch.equal(a.stats.m2, b.stats.m2) and torch.equal(a.cov.chol, b.cov.chol)


def test_ansn_trains_and_samples_from_an_exp(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    src = """experiment a {
        data mixture2d { n_train = 1000, stds = [3.0, 0.3, 0.3, 3.0] }
        noise adaptive { sigma_max = 5.0, sigma_min = 0.1, levels = 4, form = full }
        network mlp { hidden = 16, conditional = true, scale_by_sigma = true }
        loss ansn_dsm { }
        train { iterations = 20, batch_size = 32, checkpoint_every = 10, log_every = 10 }
        sample { samples = 50, init = uniform(low = -8, high = 8),
                 stage preconditioned_langevin { steps_per_level = 5, step_size = 0.01 } }
    }"""
    (spec,) = compile_file(write("a.exp", src))
    run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    ck = sorted((tmp_path / "runs").glob("a/*/seed-0/train/checkpoints/*.pt"))[-1]
    st = torch.load(ck, weights_only=False)
    assert st["noise"]["stats"]["n"] == 20 * 32  # the covariance state is checkpointed
    x = torch.load(next((tmp_path / "runs").glob("a/*/seed-0/sample-*/samples.pt")))
    assert x.shape == (50, 2) and torch.isfinite(x).all()
