"""NCSNv2 Techniques 1, 2, 4 against closed forms, brute force and the official configs."""

from __future__ import annotations

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


@pytest.mark.parametrize("n,d,chunk", [(50, 3, 7), (123, 10, 1024), (200, 64, 64), (257, 2, 16)])
def test_technique1_chunked_equals_brute_force(n: int, d: int, chunk: int) -> None:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert max_pairwise_distance(x, chunk=chunk) == pytest.approx(float(torch.cdist(x, x).max()), rel=1e-12)


def test_technique1_cache_is_hit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(30, 4)
    d1, hit1 = cached_max_pairwise_distance(x, "ident-a", tmp_path)
    d2, hit2 = cached_max_pairwise_distance(torch.zeros(30, 4), "ident-a", tmp_path)  # same identity
    assert (hit1, hit2) == (False, True) and d1 == d2


@pytest.mark.parametrize("D", [16, 64, 3072])
@pytest.mark.parametrize("C", [0.5, OFFICIAL_C])
def test_technique2_gamma_solves_the_phi_equation(D: int, C: float) -> None:
    g = solve_gamma(D, C)
    assert g > 1 and overlap(g, D) == pytest.approx(C, abs=1e-10)


@pytest.mark.parametrize(
    "size,sigma_max,L",
    [(32, 50, 232), (64, 90, 500), (96, 140, 788), (128, 190, 1086), (256, 348, 2311)],
)
def test_technique2_reproduces_the_official_numbers_of_levels(size: int, sigma_max: float, L: int) -> None:
    D = size * size * 3
    assert num_levels(sigma_max, 0.01, solve_gamma(D, OFFICIAL_C)) == L


def test_the_posters_c_gives_fewer_levels() -> None:
    assert num_levels(50, 0.01, solve_gamma(3072, 0.5)) == 219


def test_no_ratio_exists_in_very_low_dimension() -> None:
    with pytest.raises(ValueError, match="no γ"):
        solve_gamma(2, 0.5)  # √(2D) < 3: the overlap never falls to C


@pytest.mark.parametrize("gamma,T,eps", [(1.0376, 5, 6.2e-6), (1.2, 3, 2e-5), (1.05, 10, 1e-6)])
def test_proposition3_matches_a_simulated_chain(gamma: float, T: int, eps: float) -> None:
    closed = prop3_ratio(eps, gamma, 0.01, T)
    mc = simulate_langevin_gaussian(eps, gamma, sigma_i=0.3, sigma_min=0.01, T=T, n=400_000)
    assert mc == pytest.approx(closed, rel=0.01)


def test_technique4_step_is_optimal_and_near_official() -> None:
    gamma = (50 / 0.01) ** (1 / 231)  # CIFAR-10, L = 232
    eps, r = choose_step_size(gamma, 0.01, 5)
    assert eps == pytest.approx(6.2e-6, rel=0.01)  # the official step_lr
    for other in (eps * 0.9, eps * 1.1):
        assert abs(prop3_ratio(other, gamma, 0.01, 5) - 1) > abs(r - 1)


def test_auto_values_are_computed_and_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (spec,) = compile_file(root / "papers" / "ncsnv2_digits_auto.exp")
    autos = dict(spec.autos)
    from ncsn_core.data import digits

    x = digits(flip=False, dequantize="none").as_float("train").reshape(-1, 64).double()
    assert autos["noise.sigma_max"].value == pytest.approx(float(torch.cdist(x, x).max()), rel=1e-5)
    assert spec.noise.get("levels") == autos["noise.levels"].value > 10
    assert "Technique 4" in autos["sample.annealed_langevin.step_size"].explanation
    assert spec.stages[0].get("step_size") == autos["sample.annealed_langevin.step_size"].value
