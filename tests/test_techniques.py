"""NCSNv2 Techniques 1, 2, 4 against closed forms, brute force and the official configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core.techniques import (
    OFFICIAL_C,
    cached_max_pairwise_distance,
    choose_step_size,
    max_pairwise_distance,
    num_levels,
    overlap,
    prop3_ratio,
    simulate_langevin_gaussian,
    solve_gamma,
)

# (image size, σ₁, official L, T, official step_lr) of NCSNv2's configs, σ_L = 0.01 (reference.md).
OFFICIAL = [
    (32, 50, 232, 5, 6.2e-6),  # CIFAR-10
    (64, 90, 500, 5, 3.3e-6),  # CelebA 64
    (96, 140, 788, 4, 4.9e-6),  # LSUN church
    (128, 190, 1086, 3, 1.8e-6),  # LSUN bedroom / tower
    (256, 348, 2311, 3, 9e-7),  # FFHQ
]


# ----------------------------------------------------------------------------- Technique 1
@pytest.mark.parametrize("n,d,chunk", [(50, 3, 7), (123, 10, 1024), (200, 64, 64), (257, 2, 16), (2, 5, 1)])
def test_technique1_chunked_equals_brute_force(n: int, d: int, chunk: int) -> None:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64) + 100.0
    assert max_pairwise_distance(x, chunk=chunk) == pytest.approx(float(torch.cdist(x, x).max()), rel=1e-12)


def test_technique1_images_are_flattened_and_float32_is_accumulated_in_float64() -> None:
    x = torch.rand(40, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = x.reshape(40, -1).double()
    assert max_pairwise_distance(x, chunk=9) == pytest.approx(float(torch.cdist(flat, flat).max()), rel=1e-12)
    assert max_pairwise_distance(x[:1]) == 0.0


def test_technique1_float32_search_returns_the_float64_maximum() -> None:
    """Blocks are searched in float32 with a proven error margin and the near-maximal pairs
    recomputed in float64: the result equals float64 brute force exactly, also when many
    pairs tie (repeated rows take the float64 fallback) and when the maximum is far off-centre."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(700, 300, generator=g)
    x[11], x[650] = 0.0, 1.0  # the farthest pair, in different blocks
    flat = x.double()
    assert max_pairwise_distance(x, chunk=128) == float(torch.cdist(flat, flat).max())
    ties = torch.zeros(600, 5)
    ties[:300] = 1.0
    assert max_pairwise_distance(ties, chunk=64) == pytest.approx(5**0.5, rel=1e-15)
    near = 1e4 + torch.rand(400, 50, generator=g, dtype=torch.float64)  # float32 cannot hold the offset
    assert max_pairwise_distance(near, chunk=100) == pytest.approx(
        float(torch.cdist(near - 1e4, near - 1e4).max()), rel=1e-12
    )


def test_technique1_subsample_is_a_lower_bound() -> None:
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    full = max_pairwise_distance(x)
    sub = max_pairwise_distance(x, subsample=50, generator=torch.Generator().manual_seed(0))
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:50]
    assert sub == pytest.approx(max_pairwise_distance(x[idx]), rel=1e-12) and sub <= full


def test_technique1_cache_is_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(30, 4)
    d1, hit1 = cached_max_pairwise_distance(x, "ident-a", tmp_path)
    d2, hit2 = cached_max_pairwise_distance(torch.zeros(30, 4), "ident-a", tmp_path)  # same identity
    assert (hit1, hit2) == (False, True) and d1 == d2
    assert json.loads((tmp_path / "technique1.json").read_text()) == {"ident-a": d1}
    d3, hit3 = cached_max_pairwise_distance(x, "ident-a", tmp_path, subsample=10)  # its own entry
    assert not hit3 and d3 <= d1
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "env"))
    assert cached_max_pairwise_distance(x, "ident-a")[1] is False  # $REPRO_CACHE when no cache_dir
    assert (tmp_path / "env" / "technique1.json").exists()


# ----------------------------------------------------------------------------- Technique 2
@pytest.mark.parametrize("D", [16, 64, 3072])
@pytest.mark.parametrize("C", [0.5, OFFICIAL_C])
def test_technique2_gamma_solves_the_phi_equation(D: int, C: float) -> None:
    g = solve_gamma(D, C)
    assert g > 1 and overlap(g, D) == pytest.approx(C, abs=1e-10)


@pytest.mark.parametrize("size,sigma_max,L", [(s, m, L) for s, m, L, _, _ in OFFICIAL])
def test_technique2_reproduces_the_official_numbers_of_levels(size: int, sigma_max: float, L: int) -> None:
    D = size * size * 3
    assert num_levels(sigma_max, 0.01, solve_gamma(D, OFFICIAL_C)) == L


def test_the_c_window_of_the_official_configs() -> None:
    def all_levels(C: float) -> list[int]:
        return [num_levels(m, 0.01, solve_gamma(s * s * 3, C)) for s, m, _, _, _ in OFFICIAL]

    official = [L for _, _, L, _, _ in OFFICIAL]
    assert all_levels(0.56697) == all_levels(0.56736) == official  # the floor convention's window
    assert all_levels(0.56695) != official and all_levels(0.56738) != official
    assert all_levels(0.5) == [219, 472, 744, 1025, 2181]  # the poster's C gives fewer levels


def test_no_ratio_exists_in_very_low_dimension() -> None:
    with pytest.raises(ValueError, match="no γ"):
        solve_gamma(2, 0.5)  # √(2D) < 3: the overlap never falls to C
    with pytest.raises(ValueError, match="sigma_max > sigma_min"):
        num_levels(0.01, 1.0, 1.1)


# ----------------------------------------------------------------------------- Proposition 3, Technique 4
@pytest.mark.parametrize("gamma,T,eps", [(1.0376, 5, 6.2e-6), (1.2, 3, 2e-5), (1.05, 10, 1e-6)])
def test_proposition3_matches_a_simulated_chain(gamma: float, T: int, eps: float) -> None:
    closed = prop3_ratio(eps, gamma, 0.01, T)
    mc = simulate_langevin_gaussian(eps, gamma, sigma_i=0.3, sigma_min=0.01, T=T, n=400_000)
    assert mc == pytest.approx(closed, rel=0.01)


def test_technique4_step_is_optimal_and_near_official() -> None:
    gamma = (50 / 0.01) ** (1 / 231)  # CIFAR-10, L = 232
    eps, r = choose_step_size(gamma, 0.01, 5)
    assert eps == pytest.approx(6.2e-6, rel=0.01)  # the official step_lr
    assert r == pytest.approx(1.0555, abs=1e-4)  # T = 5 cannot bring the ratio to 1
    for other in (eps * 0.9, eps * 1.1, eps * 0.99, eps * 1.01):
        assert abs(prop3_ratio(other, gamma, 0.01, 5) - 1) > abs(r - 1)


@pytest.mark.parametrize("size,sigma_max,L,T,step_lr", [c for c in OFFICIAL if c[0] != 96])
def test_technique4_gives_the_official_step_lr(
    size: int, sigma_max: float, L: int, T: int, step_lr: float
) -> None:
    eps, _ = choose_step_size((sigma_max / 0.01) ** (1 / (L - 1)), 0.01, T)
    assert eps == pytest.approx(step_lr, rel=0.02)


def test_church_step_lr_is_not_technique4s() -> None:
    # LSUN church's config (L = 788, T = 4) uses 4.9e-6; Technique 4 gives 2.31e-6 (documented).
    eps, r = choose_step_size((140 / 0.01) ** (1 / 787), 0.01, 4)
    assert eps == pytest.approx(2.31e-6, rel=0.01) and r < prop3_ratio(
        4.9e-6, (140 / 0.01) ** (1 / 787), 0.01, 4
    )


# ----------------------------------------------------------------------------- `auto`
def test_auto_values_are_computed_and_shown() -> None:
    root = Path(__file__).resolve().parent.parent
    (spec,) = compile_file(root / "papers" / "ncsnv2_digits_auto.exp")
    autos = dict(spec.autos)
    from ncsn_core.data import digits

    x = digits(flip=False, dequantize="none").as_float("train").reshape(-1, 64).double()
    assert autos["noise.sigma_max"].value == pytest.approx(float(torch.cdist(x, x).max()), rel=1e-5)
    assert "1500 of 1500 training points (exact" in autos["noise.sigma_max"].explanation
    gamma = solve_gamma(64, 0.567)
    assert (
        spec.noise.get("levels")
        == autos["noise.levels"].value
        == num_levels(autos["noise.sigma_max"].value, 0.01, gamma)
    )
    assert "C = 0.567" in autos["noise.levels"].explanation
    step = autos["sample.annealed_langevin.step_size"]
    assert "Technique 4" in step.explanation and "s_T²/σ_i²" in step.explanation
    assert spec.stages[0].get("step_size") == step.value
