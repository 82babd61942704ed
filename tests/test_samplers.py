"""Sampler stages and initialisers against closed forms (NCSN Eq. 4, Alg. 1, Alg. 2, denoising).

Langevin chains on Gaussian targets are compared with the exact stationary law of the
discretised chain; annealed Langevin with the exact scores of a two-mode mixture (written
out here) must recover the mode weights that plain Langevin misses (Fig. 3); inpainting
must keep the known pixels equal to Alg. 2's y exactly; the host may synchronise once per
noise level only.
"""

from __future__ import annotations

import math

import pytest
import torch

from ncsn_core import registry
from ncsn_core.data import DataSource
from ncsn_core.errors import ReproError
from ncsn_core.noise import NoiseSchedule, NoNoise, ladder
from ncsn_core.samplers import (
    AnnealedLangevin,
    Denoise,
    Inpainting,
    Langevin,
    SampleContext,
    SamplerDiverged,
    make_mask,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ctx(score, sigmas: list[float] | None = None, seed: int = 0, **kw) -> SampleContext:  # type: ignore[no-untyped-def]
    noise = NoNoise() if sigmas is None else NoiseSchedule(torch.tensor(sigmas))
    return SampleContext(score=score, noise=noise, generator=gen(seed), **kw)


def build(kind: str, name: str, **given):  # type: ignore[no-untyped-def]
    comp = registry.lookup(kind, name)
    params, errors = comp.check_params(given)
    assert not errors, errors
    return comp.builder(**params)


# ----------------------------------------------------------------------------- Langevin (Eq. 4)
def test_langevin_samples_a_correlated_gaussian_with_the_discretised_covariance() -> None:
    # Target N(m, Σ), score −Σ⁻¹(x − m). Eq. 4 is then x ← Bx + … + √ε z with B = I − ε/2 Σ⁻¹, whose
    # stationary covariance solves V = BVB + εI: V = Σ(I − ε/4 Σ⁻¹)⁻¹ (→ Σ as ε → 0). A large ε
    # makes V differ from Σ by ~10%, so the chain is checked against the exact discretised law.
    m = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]])
    P = torch.linalg.inv(cov)
    eps, n = 0.4, 4000
    c = ctx(lambda x, i: -(x - m) @ P, seed=1)
    x = Langevin(steps=400, step_size=eps, level=-1, use_exact=False, record_every=0).run(
        torch.zeros(n, 2), c
    )
    V = cov @ torch.linalg.inv(torch.eye(2) - eps / 4 * P)
    assert torch.allclose(x.mean(0), m, atol=4 * math.sqrt(2.2 / n))
    emp = torch.cov(x.T)
    assert torch.allclose(emp, V, rtol=0.04, atol=0.03), (emp, V)
    assert (emp - V).norm() < (emp - cov).norm()


def mixture_score(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """∇ log of (1/5 N((−5, −5), I) + 4/5 N((5, 5), I)) * N(0, σ²I) (NCSN §3.2): each component
    becomes N(μ_k, (1 + σ²)I), so the score is Σ_k r_k(x)(μ_k − x)/(1 + σ²)."""
    mu = torch.tensor([[-5.0, -5.0], [5.0, 5.0]])
    w = torch.tensor([0.2, 0.8])
    var = 1.0 + sigma**2
    d = x[:, None, :] - mu[None]
    logr = torch.log(w)[None] - 0.5 * (d**2).sum(-1) / var
    r = torch.softmax(logr, dim=1)
    return -(r[..., None] * d).sum(1) / var


def test_annealed_langevin_with_exact_scores_recovers_the_mode_weights() -> None:
    # Fig. 3: from U[−8, 8]², annealed Langevin (L = 10, T = 100) recovers the 1/5 : 4/5 weights.
    # σ from 10 to 1 and ε = 0.05 keep α₁ = ε·σ₁²/σ_L² = 5 below the stability bound 4(1 + σ₁²).
    n = 2000
    sig = ladder("geometric", 10.0, 1.0, 10)
    x0 = 16 * torch.rand(n, 2, generator=gen(3)) - 8
    c = ctx(None, sig, seed=4, exact_score=mixture_score)
    stage = AnnealedLangevin(100, 0.05, use_exact=True, record_every=0)
    x = stage.run(x0, c)
    low = x.sum(1) < 0
    assert abs(low.float().mean().item() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)
    # Within each mode the samples follow q_{σ_L}: N(μ_k, (1 + σ_L²)I) = variance 2.
    assert torch.allclose(x[~low].mean(0), torch.tensor([5.0, 5.0]), atol=0.15)
    assert x[~low].var(0).mean().item() == pytest.approx(2.0, rel=0.1)
    assert stage.nfe(10) == 0  # exact scores cost no network evaluations


def test_plain_langevin_with_exact_scores_gets_the_mode_weights_wrong() -> None:
    # Fig. 3(b): T = 1000, ε = 0.1 from the same start keeps the initial split near 1/2 (§3.2.2).
    x0 = 16 * torch.rand(2000, 2, generator=gen(3)) - 8
    c = ctx(None, [1.0], seed=4, exact_score=mixture_score)
    x = Langevin(1000, 0.1, level=-1, use_exact=True, record_every=0).run(x0, c)
    frac = (x.sum(1) < 0).float().mean().item()
    assert abs(frac - 0.5) < 0.05


def test_langevin_level_is_checked() -> None:
    with pytest.raises(ReproError, match="level = 3 is outside the 3 noise level"):
        Langevin(1, 1e-3, level=3, use_exact=False, record_every=0).run(
            torch.zeros(2, 2), ctx(lambda x, i: x, [3.0, 2.0, 1.0])
        )
    seen = []
    c = ctx(lambda x, i: seen.append(i) or -x, [3.0, 2.0, 1.0])
    Langevin(2, 1e-3, level=-2, use_exact=False, record_every=0).run(torch.zeros(2, 2), c)
    assert seen == [1, 1]


# ----------------------------------------------------------------------------- Alg. 1
def test_annealed_langevin_is_alg1_and_the_official_step_lr_is_half_epsilon() -> None:
    # Official code: x + step·s + √(2·step)·z, step = step_lr·(σ_i/σ_L)². With ε = 2·step_lr this
    # is Alg. 1 step for step (same draws); a score depending on x and on the level is used.
    sig = [1.0, 0.3, 0.1]
    step_lr = 1e-4

    def score(x: torch.Tensor, i: int) -> torch.Tensor:
        return -(x - 0.5) * (i + 1) + 0.1

    ours = AnnealedLangevin(4, 2 * step_lr, False, 0).run(torch.zeros(3, 1, 2, 2), ctx(score, sig, seed=9))
    g = gen(9)
    x = torch.zeros(3, 1, 2, 2)
    for i, s in enumerate(sig):
        step = step_lr * (s / sig[-1]) ** 2
        for _ in range(4):
            x = x + step * score(x, i) + math.sqrt(2 * step) * torch.randn(x.shape, generator=g)
    assert torch.allclose(ours, x, atol=1e-6)


def test_record_every_counts_steps_over_all_levels() -> None:
    names: list[str] = []
    c = ctx(lambda x, i: -x, [1.0, 0.5, 0.1], record=lambda name, x: names.append(name), stage_name="al")
    AnnealedLangevin(4, 1e-3, False, record_every=4).run(torch.zeros(2, 3), c)
    assert names == ["al:level1", "al:level2", "al:level3"]  # one per level: NCSN Fig. 4
    names.clear()
    AnnealedLangevin(4, 1e-3, False, record_every=2).run(torch.zeros(2, 3), c)
    assert names == [
        "al:level1.step2",
        "al:level1",
        "al:level2.step2",
        "al:level2",
        "al:level3.step2",
        "al:level3",
    ]
    names.clear()
    AnnealedLangevin(4, 1e-3, False, record_every=0).run(torch.zeros(2, 3), c)
    assert names == []


# ----------------------------------------------------------------------------- Alg. 2
def images(n: int, seed: int) -> DataSource:
    t = torch.randint(0, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=gen(seed))
    return DataSource("fake", "image", (3, 6, 6), train=t, test=t.flip(0), identity="fake")


@pytest.mark.parametrize("mask", ["half", "left", "center", "random"])
def test_inpainting_keeps_the_known_pixels_equal_to_algorithm_2s_y(mask: str) -> None:
    data = images(5, 0)
    sig, T = [1.0, 0.3, 0.05], 3
    stage = Inpainting(T, 1e-3, mask, 0.5, "test")
    x0 = torch.rand(4, 3, 6, 6, generator=gen(1))
    x = stage.run(x0, ctx(lambda x, i: -(x - 0.5) / 0.1, sig, seed=2, data=data))
    ref = data.as_float("test")[:4]
    assert torch.equal(stage.last_reference, ref)
    # Replay the draws: the mask (random only), then per level y's noise and T Langevin draws.
    g = gen(2)
    m = make_mask((3, 6, 6), mask, 0.5, g, "cpu")
    assert torch.equal(m, stage.last_mask)
    for s in sig:
        y = ref + s * torch.randn(ref.shape, generator=g)
        for _ in range(T):
            torch.randn(x0.shape, generator=g)
    known = m.bool().expand_as(x)
    assert torch.equal(x[known], y[known])  # exactly y = x_ref + σ_L z̃ (Alg. 2, lines 5 and 9)
    assert (x[~known] - x0[~known]).abs().min() > 0  # the occluded pixels were sampled
    frac = 1 - m.mean().item()
    assert frac == pytest.approx(0.5, abs=0.15 if mask == "random" else 0.06)


def test_inpainting_masks_and_references() -> None:
    m = make_mask((1, 4, 4), "half", 0.5, None, "cpu")
    assert m[0, :2].eq(1).all() and m[0, 2:].eq(0).all()  # the bottom half is occluded
    m = make_mask((1, 4, 4), "left", 0.25, None, "cpu")
    assert m[0, :, :3].eq(1).all() and m[0, :, 3].eq(0).all()  # the right quarter is occluded
    m = make_mask((1, 4, 4), "center", 0.25, None, "cpu")
    assert m[0, 1:3, 1:3].eq(0).all() and m.sum().item() == 12
    # Successive calls (the runner's batches) continue through the split, cycling at its end.
    data = images(5, 3)
    stage = Inpainting(1, 1e-4, "half", 0.5, "test")
    c = ctx(lambda x, i: -x, [0.1], data=data)
    stage.run(torch.zeros(3, 3, 6, 6), c)
    stage.run(torch.zeros(3, 3, 6, 6), c)
    want = data.as_float("test")[[3, 4, 0]]
    assert torch.equal(stage.last_reference, want)
    with pytest.raises(ReproError, match="inpainting needs image data"):
        Inpainting(1, 1e-4, "half", 0.5, "test").run(torch.zeros(2, 2), c)


def test_inpainting_reimposes_the_known_pixels_before_each_levels_first_step() -> None:
    # The official code (and our default): at the start of level i, after drawing y = x_ref + σ_i z̃
    # (Alg. 2, lines 4-5), the known pixels are set to y (line 9) before the first step (line 8).
    # With a zero score, every score input of level i and every output has known pixels = y_i.
    data = images(3, 4)
    sig, T = [1.0, 0.4, 0.1], 2
    inputs: list[torch.Tensor] = []

    def zero(x: torch.Tensor, i: int) -> torch.Tensor:
        inputs.append(x.clone())
        return torch.zeros_like(x)

    x0 = torch.full((2, 3, 6, 6), 7.0)  # far from any y: a stale known pixel shows
    stage = build("stage", "inpainting", steps_per_level=T, step_size=1e-3)
    x = stage.run(x0, ctx(zero, sig, seed=5, data=data))
    known = stage.last_mask.bool().expand_as(x)
    g, ref = gen(5), data.as_float("test")[:2]
    ys = []
    for s in sig:
        ys.append(ref + s * torch.randn(ref.shape, generator=g))
        for _ in range(T):
            torch.randn(x0.shape, generator=g)
    for k, inp in enumerate(inputs):  # the first step's input of level 1 included
        assert torch.equal(inp[known], ys[k // T][known]), k
    assert torch.equal(x[known], ys[-1][known])
    assert (x[~known] != 7.0).all()  # the occluded part was sampled
    # Alg. 2 as printed (at_level_start = false): level 1's first step still sees x̃₀.
    inputs.clear()
    Inpainting(T, 1e-3, "right", 0.5, "test", at_level_start=False).run(x0, ctx(zero, sig, seed=5, data=data))
    assert (inputs[0][known] == 7.0).all() and torch.equal(inputs[1][known], ys[0][known])
    assert torch.equal(inputs[T][known], ys[0][known])  # level 2's first step: the previous y


def test_the_default_mask_is_the_official_right_half_occlusion() -> None:
    ip = build("stage", "inpainting")
    assert ip.mask == "right" and ip.fraction == 0.5 and ip.at_level_start
    m = make_mask((3, 4, 6), ip.mask, ip.fraction, None, "cpu")
    assert m[:, :, :3].eq(1).all() and m[:, :, 3:].eq(0).all()  # left half known, right half occluded
    assert torch.equal(
        make_mask((1, 4, 4), "bottom", 0.5, None, "cpu"), make_mask((1, 4, 4), "half", 0.5, None, "cpu")
    )
    assert torch.equal(
        make_mask((1, 4, 4), "right", 0.25, None, "cpu"), make_mask((1, 4, 4), "left", 0.25, None, "cpu")
    )
    data = images(2, 1)
    stage = build("stage", "inpainting", steps_per_level=1)
    stage.run(torch.zeros(2, 3, 6, 6), ctx(lambda x, i: -x, [1.0, 0.1], data=data))
    assert stage.last_mask[:, :, :3].eq(1).all() and stage.last_mask[:, :, 3:].eq(0).all()


# ----------------------------------------------------------------------------- denoising
def test_denoise_is_x_plus_sigma_L_squared_times_the_last_levels_score() -> None:
    calls: list[int] = []

    def score(x: torch.Tensor, i: int) -> torch.Tensor:
        calls.append(i)
        return -(x - 0.3) * (i + 1) + 0.2

    x = torch.rand(4, 2, 3, 3, generator=gen(0))
    out = Denoise().run(x, ctx(score, [1.0, 0.2, 0.05]))
    assert torch.allclose(out, x + 0.05**2 * score(x, 2))
    assert calls[0] == 2 and Denoise().nfe(3) == 1
    # Tweedie: for x̃ = x₀ + σz with a point mass at x₀, x̃ + σ²·(−(x̃ − x₀)/σ²) = x₀.
    x0 = torch.full((2, 2), 0.7)
    out = Denoise().run(x0 + 0.05 * torch.randn(2, 2), ctx(lambda x, i: -(x - x0) / 0.05**2, [1.0, 0.05]))
    assert torch.allclose(out, x0, atol=1e-6)


# ----------------------------------------------------------------------------- divergence, syncs
def test_divergence_names_the_stage_the_level_and_sigma_once_that_level_ends() -> None:
    sig = [1.0, 0.5, 0.2154, 0.1]
    calls: list[int] = []

    def score(x: torch.Tensor, i: int) -> torch.Tensor:
        calls.append(i)
        return x * 1e30 if i == 2 else -x

    c = ctx(score, sig, stage_name="annealed_langevin")
    with pytest.raises(
        SamplerDiverged, match=r"annealed_langevin diverged at noise level 3 \(σ = 0\.2154\).*step_size"
    ):
        AnnealedLangevin(5, 1e-2, False, 0).run(torch.ones(2, 2), c)
    assert len(calls) == 15  # the level ran to its end: checked once per level, not per step
    for stage, name in [
        (Langevin(50, 1.0, -1, False, 0), "langevin"),
        (Inpainting(5, 1.0, "half", 0.5, "test"), "inpainting"),
    ]:
        c = ctx(lambda x, i: x * 1e30, [1.0, 0.1], data=images(2, 0))
        with pytest.raises(SamplerDiverged, match=rf"^{name} diverged at noise level \d \(σ = "):
            stage.run(torch.ones(2, 3, 6, 6), c)
    with pytest.raises(SamplerDiverged, match=r"denoise diverged at noise level 2"):
        Denoise().run(torch.ones(2, 2), ctx(lambda x, i: x * math.inf, [1.0, 0.1]))


def test_the_host_synchronises_once_per_noise_level(monkeypatch: pytest.MonkeyPatch) -> None:
    c = ctx(lambda x, i: -x, [1.0, 0.5, 0.25, 0.1])
    c2 = ctx(lambda x, i: -x, [1.0, 0.1], data=images(2, 0))
    counts = {"n": 0}
    for meth in ("__bool__", "__float__", "__int__", "item", "tolist"):
        orig = getattr(torch.Tensor, meth)

        def wrapped(self, *a, _orig=orig):  # type: ignore[no-untyped-def]
            counts["n"] += 1
            return _orig(self, *a)

        monkeypatch.setattr(torch.Tensor, meth, wrapped)
    AnnealedLangevin(25, 1e-3, False, 0).run(torch.zeros(8, 2), c)
    assert counts["n"] <= 1 + 4  # the σ ladder once, then one finiteness check per level
    counts["n"] = 0
    Inpainting(25, 1e-3, "half", 0.5, "test").run(torch.zeros(2, 3, 6, 6), c2)
    assert counts["n"] <= 1 + 2


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize(
    "make",
    [
        lambda: Langevin(20, 1e-2, -1, False, 0),
        lambda: AnnealedLangevin(5, 1e-2, False, 0),
        lambda: Inpainting(5, 1e-2, "random", 0.4, "test"),
    ],
)
def test_samplers_are_reproducible_with_a_fixed_generator(make) -> None:  # type: ignore[no-untyped-def]
    def go(seed: int) -> torch.Tensor:
        c = ctx(lambda x, i: -x, [1.0, 0.3, 0.1], seed=seed, data=images(3, 0))
        return make().run(torch.zeros(3, 3, 6, 6), c)

    assert torch.equal(go(5), go(5))
    assert not torch.equal(go(5), go(6))


def test_nfe_counts_network_evaluations_per_sample() -> None:
    assert AnnealedLangevin(100, 2e-5, False, 0).nfe(10) == 1000  # NCSN: 1000 (reference.md)
    assert AnnealedLangevin(5, 2e-5, False, 0).nfe(232) + Denoise().nfe(232) == 1161  # NCSNv2 CIFAR-10
    assert Langevin(1000, 2e-5, -1, False, 0).nfe(1) == 1000
    assert Langevin(1000, 2e-5, -1, True, 0).nfe(1) == 0
    assert Inpainting(100, 2e-5, "half", 0.5, "test").nfe(10) == 1000


# ----------------------------------------------------------------------------- registry, inits
def test_registered_stages_build_with_their_defaults() -> None:
    al = build("stage", "annealed_langevin")
    assert isinstance(al, AnnealedLangevin)
    assert (al.T, al.eps, al.use_exact, al.record_every) == (100, 2e-5, False, 0)
    assert registry.lookup("stage", "annealed_langevin").param("step_size").auto is not None
    lv = build("stage", "langevin")
    assert isinstance(lv, Langevin) and (lv.steps, lv.eps, lv.level) == (1000, 2e-5, -1)
    ip = build("stage", "inpainting", mask="center")
    assert isinstance(ip, Inpainting) and ip.mask == "center" and ip.fraction == 0.5
    assert isinstance(build("stage", "denoise"), Denoise)
    _, errors = registry.lookup("stage", "inpainting").check_params({"mask": "lft"})
    assert errors and "did you mean 'left'" in errors[0][1]


def test_initialisers() -> None:
    u = build("init", "uniform", low=-8.0, high=8.0)(5000, (2,), gen(0), "cpu", None)
    assert u.shape == (5000, 2) and u.min() >= -8 and u.max() < 8
    assert u.mean().item() == pytest.approx(0.0, abs=0.25)
    assert u.var().item() == pytest.approx(256 / 12, rel=0.05)
    assert torch.equal(u, build("init", "uniform", low=-8.0, high=8.0)(5000, (2,), gen(0), "cpu", None))
    g = build("init", "gaussian", mean=1.0, std=2.0)(5000, (1, 2, 2), gen(1), "cpu", None)
    assert g.shape == (5000, 1, 2, 2)
    assert g.mean().item() == pytest.approx(1.0, abs=0.05) and g.std().item() == pytest.approx(2.0, rel=0.03)
    data = images(7, 2)
    d0 = build("init", "data_noise", std=0.0)(6, (3, 6, 6), gen(2), "cpu", data)
    train = data.as_float("train").flatten(1)
    assert all((train == row).all(1).any() for row in d0.flatten(1))  # rows are training images
    d1 = build("init", "data_noise", std=0.1)(6, (3, 6, 6), gen(2), "cpu", data)
    assert torch.equal(d1, build("init", "data_noise", std=0.1)(6, (3, 6, 6), gen(2), "cpu", data))
    assert (d1 - d0).std().item() == pytest.approx(0.1, rel=0.15)


def test_final_before_last_step_is_the_official_ncsn_last_image() -> None:
    """annealed_langevin { final = before_last_step }: the official anneal_runner.py keeps
    clamp(x) before each update, so its last image has had L·T − 1 of the L·T updates; the same
    draws and network calls are made. The files whose numbers came from that code use it."""
    from pathlib import Path

    from dsl.compiler import compile_file
    from ncsn_core.samplers import AnnealedLangevin, SampleContext

    noise = NoiseSchedule(torch.tensor([1.0, 0.5, 0.1]))
    calls = []

    def score(x: torch.Tensor, i: int) -> torch.Tensor:
        calls.append(i)
        return -x

    def run(final: str, T: int) -> torch.Tensor:
        ctx = SampleContext(score=score, noise=noise, generator=torch.Generator().manual_seed(4))
        return AnnealedLangevin(T, 1e-3, False, 0, final).run(torch.ones(3, 2), ctx)

    full = run("after_last_step", 4)
    before = run("before_last_step", 4)
    assert len(calls) == 24 and not torch.equal(full, before)
    ref, g = torch.ones(3, 2), torch.Generator().manual_seed(4)  # replay: stop before update 12
    for i, s in enumerate([1.0, 0.5, 0.1]):
        a = 1e-3 * s**2 / 0.01
        for t in range(4):
            z = torch.randn(3, 2, generator=g)
            if i == 2 and t == 3:
                break
            ref = ref + a / 2 * -ref + a**0.5 * z
    assert torch.allclose(before, ref, atol=1e-6)
    papers = Path(__file__).resolve().parents[1] / "papers"
    for f, name in (("ncsn_cifar.exp", "ncsn_cifar10"), ("ncsn_mnist.exp", "ncsn_mnist")):
        spec = next(s for s in compile_file(papers / f, compute_auto=False) if s.experiment == name)
        assert spec.stages[0].get("final") == "before_last_step"
