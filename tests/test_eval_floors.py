"""Issue 24: evaluation a reviewer can trust at small sample counts — the matched floor as mean ±
sd over many draws, a bootstrap interval over the samples, per-class coverage under the domain
classifier and a classifier-free Fréchet distance on pixel principal components."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ncsn_core import registry
from ncsn_core.data import DataSource, digits
from ncsn_core.evaluation import evaluate, floors, pca
from ncsn_core.evaluation.domain import class_histogram, coverage
from ncsn_core.values import Call


@pytest.fixture(scope="module")
def data() -> DataSource:
    return digits(flip=False, dequantize="none")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("floors-cache")


def test_summarize_is_mean_and_sample_sd_and_skips_std_keys() -> None:
    draws = [{"a": 1.0, "a_std": 9.0}, {"a": 2.0, "a_std": 9.0}, {"a": 6.0, "a_std": 9.0}]
    s = floors.summarize(draws)
    assert s == {"a_floor_mean": 3.0, "a_floor_sd": pytest.approx(math.sqrt(7.0)), "a_floor_n": 3}


def test_frechet_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, 1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # |Δμ|² + Σ (σ1 − σ2)² for diagonal covariances: 4 + (1-3)² + (2-1)² = 9
    assert floors.frechet(mu1, s1, mu2, s2) == pytest.approx(9.0)


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_samples() -> None:
    g = torch.Generator().manual_seed(0)
    ref = floors.gaussian_stats(torch.randn(20_000, 4, generator=g, dtype=torch.float64))
    widths = []
    for n in (100, 1600):
        z = torch.randn(n, 4, generator=g, dtype=torch.float64) + 0.5
        est = floors.fid_features(z, ref)
        ci = floors.bootstrap(lambda i, z=z: floors.fid_features(z[i], ref), n, est, resamples=100)
        assert ci["ci_low"] == pytest.approx(est - 1.96 * ci["boot_sd"]) and ci["boot_sd"] > 0
        widths.append(ci["ci_high"] - ci["ci_low"])
    assert widths[1] < widths[0] / 2  # ~ 1/√n: 16× the samples, about a quarter the width


def test_domain_floor_draws_bootstrap_and_coverage_recorded(data: DataSource, cache: Path) -> None:
    """fid_domain records its matched floor as mean ± sd over FLOOR_DRAWS draws (draw 0 equal
    to the single value domain_floor always had) and a bootstrap interval around its value;
    class_coverage sees a one-class sample set as covering one class in ten."""
    n = 100
    x = data.as_float("test")[:n]
    settings = {"reference": "test", "samples": n}
    metrics = (Call("fid_domain"), Call("class_coverage"))
    out = evaluate(metrics, x, data, settings=settings, run_key="a", cache_dir=cache)
    p = out["protocol"]
    assert out["fid_domain_floor_n"] == floors.FLOOR_DRAWS >= 20
    assert out["fid_domain_floor_sd"] > 0 and math.isfinite(out["fid_domain_floor_mean"])
    assert p["domain_floor"]["fid_domain"] != out["fid_domain_floor_mean"]  # one draw is not the mean
    assert p["domain_floor"]["mean"]["fid_domain"] == out["fid_domain_floor_mean"]
    assert out["fid_domain_ci_low"] < out["fid_domain"] < out["fid_domain_ci_high"]
    # The bootstrap's spread over the samples estimates the spread of independent draws of
    # real images (the floor's sd): the same sampling noise, measured two ways.
    assert 1 / 3 < out["fid_domain_boot_sd"] / out["fid_domain_floor_sd"] < 3
    # Real held-out digits cover every class, as real draws do.
    assert out["class_coverage"] == 1.0 and out["class_coverage_floor_mean"] > 0.9
    assert out["class_tv"] < 0.2 and out["class_confidence"] > 0.7
    assert len(p["class_coverage"]["reference_histogram"]) == 10
    # Only the images the classifier calls one class (its most frequent one): coverage 1/10.
    from ncsn_core.evaluation.domain import features_and_logits, load_classifier
    from ncsn_core.evaluation.fidelity import Uint8Images

    path, _ = load_classifier(data, cache)
    pred = features_and_logits(path, Uint8Images(data.as_float("train")).x)[1].argmax(1)
    one = data.as_float("train")[pred == int(torch.mode(pred).values)][:n]
    mono = evaluate((Call("class_coverage"),), one, data, settings=settings, run_key="b", cache_dir=cache)
    assert mono["class_coverage"] == pytest.approx(0.1) and mono["class_tv"] > 0.8
    assert "fid_domain_floor_mean" not in mono and mono["class_coverage_floor_mean"] > 0.9


def test_coverage_threshold_is_relative_to_the_reference_share() -> None:
    ref = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    # 8 samples: 6 in class 0, 1 in class 1 (1/8 ≥ 0.5·0.25), 1 in class 2 → all covered
    logits = torch.eye(3, dtype=torch.float64)[[0, 0, 0, 0, 0, 0, 1, 2]] * 10
    assert coverage(logits, ref, 0.5)["class_coverage"] == 1.0
    assert coverage(logits, ref, 0.6)["class_coverage"] == pytest.approx(1 / 3)  # 1/8 < 0.15
    assert class_histogram(logits, 3).tolist() == [0.75, 0.125, 0.125]
    assert coverage(logits, ref, 0.5)["class_tv"] == pytest.approx(0.25)


def test_fid_pixel_pca_is_declared_and_separates_real_from_blurred(data: DataSource, cache: Path) -> None:
    decl = registry.lookup("metric", "fid_pixel_pca")
    assert decl.facts.needs == "image" and decl.facts.outputs[0].better == "lower"
    n = 150
    real = data.as_float("test")[:n]
    blurred = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1)
    settings = {"reference": "train", "samples": n}
    calls = (Call("fid_pixel_pca", (("components", 16),)),)
    a = evaluate(calls, real, data, settings=settings, run_key="r", cache_dir=cache)
    b = evaluate(calls, blurred, data, settings=settings, run_key="b", cache_dir=cache)
    assert a["protocol"]["fid_pixel_pca"]["components"] == 16
    assert a["fid_pixel_pca_floor_n"] == floors.FLOOR_DRAWS
    # Real held-out images sit within the floor's spread; blurred ones far above it.
    mean, sd = a["fid_pixel_pca_floor_mean"], a["fid_pixel_pca_floor_sd"]
    assert abs(a["fid_pixel_pca"] - mean) < 4 * sd
    assert b["fid_pixel_pca"] > mean + 10 * sd and b["fid_pixel_pca_ci_low"] > a["fid_pixel_pca_ci_high"]
    assert "repro pixel PCA (top 16" in a["protocol"]["implementation"]


def test_pixel_basis_is_orthonormal_and_ordered(data: DataSource) -> None:
    mean, dirs = pca.basis(data.train, data.identity + "-t", 10)
    assert dirs.shape == (64, 10)
    assert torch.allclose(dirs.T @ dirs, torch.eye(10, dtype=torch.float64), atol=1e-8)
    z = pca.project(data.train, mean, dirs)
    var = z.var(0)
    assert bool((var[:-1] >= var[1:] - 1e-9).all())
