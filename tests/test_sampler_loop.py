"""The one annealed-Langevin loop (ncsn_core.samplers.sample_annealed_langevin) against
reference copies of the three loops it replaced (AnnealedLangevin, Inpainting and ANSN's
PreconditionedLangevin as they were written before): same generator seed, same draws in the
same order, so the outputs, the recorded intermediates and the divergence errors must be
bit-identical (torch.equal), not merely close.
"""

from __future__ import annotations

import pytest
import torch

from ncsn_core.ansn import AdaptiveConfig, AdaptiveNoise, Covariance, PreconditionedLangevin
from ncsn_core.data import DataSource
from ncsn_core.noise import NoiseSchedule
from ncsn_core.samplers import (
    AnnealedLangevin,
    Inpainting,
    SampleContext,
    SamplerDiverged,
    make_mask,
    sample_annealed_langevin,
)


# ----------------------------------------------------------------------------- reference loops
def _randn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _diverged(bad: torch.Tensor, name: str, i: int, sigma: float) -> None:
    if bool(bad):
        raise SamplerDiverged(f"{name} diverged at noise level {i + 1} (σ = {sigma:.4g})")


def ref_annealed(score, x, sig, eps, T, g, record=None, every=0, name="al"):  # type: ignore[no-untyped-def]
    t_all = 0
    for i, sigma in enumerate(sig):
        alpha = eps * sigma**2 / sig[-1] ** 2
        bad = torch.zeros((), dtype=torch.bool)
        for t in range(T):
            s = score(x, i)
            x = x + 0.5 * alpha * s + alpha**0.5 * _randn(x, g)
            bad |= ~torch.isfinite(x).all()
            t_all = _record_step(record, every, t_all, f"{name}:level{i + 1}", t, T, x)
        _diverged(bad, name, i, sigma)
    return x


def ref_inpainting(score, x, sig, eps, T, g, ref, m, reimpose_at_level_start=False):  # type: ignore[no-untyped-def]
    known = m.bool()
    for i, sigma in enumerate(sig):
        alpha = eps * sigma**2 / sig[-1] ** 2
        y = ref + sigma * _randn(ref, g)
        if reimpose_at_level_start:
            x = torch.where(known, y, x)
        bad = torch.zeros((), dtype=torch.bool)
        for _ in range(T):
            x = x + 0.5 * alpha * score(x, i) + alpha**0.5 * _randn(x, g)
            x = torch.where(known, y, x)
            bad |= ~torch.isfinite(x).all()
        _diverged(bad, "ip", i, sigma)
    return x


def ref_preconditioned(score, x, sig, eps, T, g, noise, scaling, record=None, every=0, name="pl"):  # type: ignore[no-untyped-def]
    sqrt = getattr(noise, "precondition_sqrt", None)
    t_all = 0
    for i, sigma in enumerate(sig):
        a = eps * sigma**2 / sig[-1] ** 2
        k = 1.0 / sigma if scaling == "divide_sigma" else 1.0
        bad = torch.zeros((), dtype=torch.bool)
        for t in range(T):
            s = score(x, i)
            z = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            if sqrt is not None:
                z = sqrt(z, i)
            x = x + 0.5 * a * k * noise.precondition(s, i) + a**0.5 * z
            bad |= ~torch.isfinite(x).all()
            t_all = _record_step(record, every, t_all, f"{name}:level{i + 1}", t, T, x)
        _diverged(bad, name, i, sigma)
    return x


def _record_step(record, every, t_all, label, t, T, x):  # type: ignore[no-untyped-def]
    """Today's recording rule: after every k-th step over all levels, named by level (+ step)."""
    t_all += 1
    if every and record and t_all % every == 0:
        record(f"{label}{'' if t + 1 == T else f'.step{t + 1}'}", x)
    return t_all


# ----------------------------------------------------------------------------- helpers
SIG = [1.0, 0.37, 0.137, 0.05]


def score(x: torch.Tensor, i: int) -> torch.Tensor:
    """Nonlinear in x, level-dependent and coupling all pixels of a sample (through their mean,
    so known pixels move occluded ones), so any reordering of operations shows."""
    mean = x.flatten(1).mean(1).view(-1, *[1] * (x.dim() - 1))
    return -torch.tanh(x - 0.3) * (i + 1.7) / 0.31 + 0.01 * x**2 + 0.5 * torch.tanh(mean + x.flip(-1))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, seed: int) -> DataSource:
    t = torch.randint(0, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=gen(seed))
    return DataSource("fake", "image", (3, 6, 6), train=t, test=t.flip(0), identity="fake")


class Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, torch.Tensor]] = []

    def __call__(self, name: str, x: torch.Tensor) -> None:
        self.items.append((name, x.clone()))

    def same_as(self, other: Recorder) -> bool:
        return [n for n, _ in self.items] == [n for n, _ in other.items] and all(
            torch.equal(a, b) for (_, a), (_, b) in zip(self.items, other.items, strict=True)
        )


# ----------------------------------------------------------------------------- the stages
@pytest.mark.parametrize(("T", "every"), [(3, 0), (4, 2), (5, 5), (3, 7)])
def test_annealed_langevin_is_bit_identical_to_the_reference_loop(T: int, every: int) -> None:
    x0 = torch.rand(5, 3, 4, 4, generator=gen(1))
    got, want = Recorder(), Recorder()
    c = SampleContext(score=score, noise=NoiseSchedule(torch.tensor(SIG)), generator=gen(7), record=got)
    c.stage_name = "al"
    out = AnnealedLangevin(T, 3e-4, False, every).run(x0, c)
    sig = [float(s) for s in torch.tensor(SIG).tolist()]
    expect = ref_annealed(score, x0, sig, 3e-4, T, gen(7), want, every, "al")
    assert torch.equal(out, expect)
    assert got.same_as(want) and (len(got.items) > 0) == (every > 0)


@pytest.mark.parametrize("at_start", [False, True])
@pytest.mark.parametrize("mask", ["right", "bottom", "center", "random"])
def test_inpainting_is_bit_identical_to_the_reference_loop(mask: str, at_start: bool) -> None:
    # at_start = False is the loop as it was before (Alg. 2 as printed); True re-imposes y first.
    data = images(6, 2)
    x0 = torch.rand(4, 3, 6, 6, generator=gen(3))
    stage = Inpainting(3, 1e-3, mask, 0.4, "test", at_level_start=at_start)
    out = stage.run(
        x0, SampleContext(score=score, noise=NoiseSchedule(torch.tensor(SIG)), generator=gen(8), data=data)
    )
    g = gen(8)
    m = make_mask((3, 6, 6), mask, 0.4, g, "cpu")
    ref = data.as_float("test")[:4]
    sig = [float(s) for s in torch.tensor(SIG).tolist()]
    assert torch.equal(out, ref_inpainting(score, x0, sig, 1e-3, 3, g, ref, m, at_start))
    other = ref_inpainting(
        score, x0, sig, 1e-3, 3, gen(8), ref, make_mask((3, 6, 6), mask, 0.4, gen(8), "cpu"), not at_start
    )
    assert not torch.equal(out, other)  # the two readings differ (the test can tell them apart)


@pytest.mark.parametrize("scaling", ["none", "divide_sigma"])
@pytest.mark.parametrize("form", ["isotropic", "diagonal", "full", "lowrank"])
def test_preconditioned_langevin_is_bit_identical_to_the_reference_loop(scaling: str, form: str) -> None:
    d = 6
    if form == "isotropic":
        noise: NoiseSchedule = NoiseSchedule(torch.tensor(SIG))
    else:
        noise = AdaptiveNoise(torch.tensor(SIG), d, AdaptiveConfig(form=form, rank=2))
        a = torch.randn(d, d, generator=gen(4), dtype=torch.float64)
        c = a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)
        c, a = c / c.trace() * d, a / (c.trace() / d).sqrt()  # mean eigenvalue 1
        if form == "full":
            noise.cov = Covariance.full(c)
        elif form == "diagonal":
            noise.cov = Covariance.diagonal(c.diagonal())
        else:
            noise.cov = Covariance.lowrank(c.diagonal(), a[:, :2])
    x0 = torch.rand(7, d, generator=gen(5))
    got, want = Recorder(), Recorder()
    c_ = SampleContext(score=score, noise=noise, generator=gen(9), record=got, stage_name="pl")
    out = PreconditionedLangevin(4, 2e-4, scaling, 3).run(x0, c_)
    sig = [float(s) for s in torch.tensor(SIG).tolist()]
    expect = ref_preconditioned(score, x0, sig, 2e-4, 4, gen(9), noise, scaling, want, 3, "pl")
    assert torch.equal(out, expect)
    assert got.same_as(want) and len(got.items) == 5


def test_divergence_is_reported_at_the_same_level_after_the_same_evaluations() -> None:
    calls: list[int] = []

    def blowup(x: torch.Tensor, i: int) -> torch.Tensor:
        calls.append(i)
        return x * 1e30 if i == 2 else -x

    ctx = SampleContext(score=blowup, noise=NoiseSchedule(torch.tensor(SIG)), generator=gen(0))
    for run in (
        lambda: AnnealedLangevin(4, 1e-2, False, 0).run(torch.ones(2, 3), ctx),
        lambda: PreconditionedLangevin(4, 1e-2, "none", 0).run(torch.ones(2, 3), ctx),
        lambda: sample_annealed_langevin(blowup, torch.ones(2, 3), SIG, step_size=1e-2, steps_per_level=4),
    ):
        calls.clear()
        with pytest.raises(SamplerDiverged, match=r"diverged at noise level 3 \(σ = 0\.137\)"):
            run()
        assert calls == [0] * 4 + [1] * 4 + [2] * 4


# ----------------------------------------------------------------------------- the loop itself
def test_the_loop_with_no_hooks_is_alg1_and_hooks_change_only_their_part() -> None:
    x0 = torch.rand(3, 4, generator=gen(2))
    plain = sample_annealed_langevin(score, x0, SIG, step_size=1e-3, steps_per_level=3, generator=gen(6))
    assert torch.equal(plain, ref_annealed(score, x0, SIG, 1e-3, 3, gen(6)))
    # Identity hooks (and k_i = 1) leave every bit unchanged.
    same = sample_annealed_langevin(
        score,
        x0,
        SIG,
        step_size=1e-3,
        steps_per_level=3,
        generator=gen(6),
        precondition=lambda v, i: v,
        noise_transform=lambda z, i: z,
        score_scale=lambda i, sigma: 1.0,
    )
    assert torch.equal(same, plain)
    # A zero step leaves x where it is; the hooks see every level index in order.
    seen: list[int] = []
    sample_annealed_langevin(
        lambda x, i: seen.append(i) or x, x0, SIG, step_size=1e-3, steps_per_level=2, generator=gen(6)
    )
    assert seen == [0, 0, 1, 1, 2, 2, 3, 3]
