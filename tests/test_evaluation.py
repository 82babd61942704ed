"""Evaluation: FID/KID of torch-fidelity vs a direct computation, the offline error, the
protocol fields, the domain classifier's floor, and toy metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from ncsn_core.data import digits, mixture2d
from ncsn_core.evaluation import EvaluationError, evaluate, preflight
from ncsn_core.evaluation.domain import frechet_distance
from ncsn_core.evaluation.fidelity import checked_kwargs
from ncsn_core.evaluation.toy import mmd_rbf, mode_weights, sliced_wasserstein
from ncsn_core.values import Call


def feats(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d))


def test_fid_of_torch_fidelity_matches_scipy_sqrtm() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    a, b = feats(300, 8, 0.0, 0), feats(300, 8, 0.5, 1)
    ours = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    s1 = fid_features_to_statistics(torch.from_numpy(a))
    s2 = fid_features_to_statistics(torch.from_numpy(b))
    theirs = fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]
    # Direct: ‖μ₁−μ₂‖² + tr(Σ₁ + Σ₂ − 2 sqrtm(Σ₁Σ₂)).
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert theirs == pytest.approx(direct, rel=1e-6)
    assert ours == pytest.approx(direct, rel=1e-6)


def test_kid_of_torch_fidelity_matches_direct_mmd() -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = feats(200, 6, 0.0, 2), feats(200, 6, 0.3, 3)
    res = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=1,
        kid_subset_size=200,
        verbose=False,
        rng_seed=0,
    )
    # Unbiased MMD² with the polynomial kernel (x·y/d + 1)³ on the full sets (one subset = all).
    k = lambda x, y: (x @ y.T / a.shape[1] + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    n = a.shape[0]
    direct = (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    assert res["kernel_inception_distance_mean"] == pytest.approx(direct, rel=1e-6)


def test_offline_without_weights_fails_before_sampling(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    monkeypatch.delenv("REPRO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EvaluationError) as ei:
        preflight((Call("fid"),), {"inception_weights": ""})
    msg = str(ei.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and "REPRO_INCEPTION_WEIGHTS" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(EvaluationError, match="no such file"):
        preflight((Call("inception_score"),), {"inception_weights": str(tmp_path / "missing.pth")})
    assert preflight((Call("mmd"),), {}) is None  # toy metrics need nothing


def test_offline_error_from_repro_run_comes_before_training(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    monkeypatch.setenv("REPRO_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    src = """experiment e {
        data digits { }
        noise geometric { levels = 2 }
        network mlp { hidden = 8 }
        loss dsm { }
        train { iterations = 5 }
        sample { samples = 4, stage annealed_langevin { steps_per_level = 1 } }
        evaluate { metrics = [fid], samples = 4 }
    }"""
    (spec,) = compile_file(write("e.exp", src))
    with pytest.raises(EvaluationError):
        run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    assert not (tmp_path / "runs").exists()  # nothing trained or sampled


def test_torch_fidelity_options_are_validated() -> None:
    assert checked_kwargs(fid=True, isc=False) == {"fid": True, "isc": False}
    with pytest.raises(ValueError, match="does not know"):
        checked_kwargs(fid=True, feature_extrator_weights_path="x")  # a typo it would ignore


def test_domain_floor_is_lower_than_noise_and_protocol_is_recorded(tmp_path: Path) -> None:
    data = digits(flip=False, dequantize="none")
    metrics = (Call("fid_domain"), Call("is_domain", (("splits", 2),)))
    settings = {"reference": "train"}
    test_images = data.as_float("test")
    real = evaluate(metrics, test_images, data, settings=settings, run_key="t", cache_dir=tmp_path)
    noise = evaluate(
        metrics, torch.rand_like(test_images), data, settings=settings, run_key="t", cache_dir=tmp_path
    )
    info = real["protocol"]["domain_classifier"]
    assert info["test_accuracy"] > 0.85
    assert info["floor_fid_domain_train_vs_test"] < noise["fid_domain"] / 5
    assert real["fid_domain"] < noise["fid_domain"] / 5
    assert real["is_domain"] > noise["is_domain"]
    assert real["protocol"]["samples"] == test_images.shape[0]
    assert real["protocol"]["reference"] == "digits:train"
    assert len(list(tmp_path.glob("domain-classifier-*.pt"))) == 1  # trained once, cached


def test_toy_metrics() -> None:
    data = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=10, seed=0)
    x = data.mixture.sample(4000, torch.Generator().manual_seed(1))
    w = mode_weights(x, data.mixture.means)
    assert abs(float(w[0]) - 0.2) < 0.02
    y = data.mixture.sample(4000, torch.Generator().manual_seed(2))
    assert mmd_rbf(x[:1000], y[:1000]) < 0.01 < mmd_rbf(x[:1000], y[:1000] + 3)
    assert sliced_wasserstein(x, y) < 0.2 < sliced_wasserstein(x, y + 3)
    out = evaluate((Call("mode_weights"),), x, data, settings={}, run_key="k", cache_dir=Path("/tmp"))
    assert out["mode_weight_1"] == pytest.approx(float(w[0]))


def test_fidelity_glue_passes_weights_and_records_their_hash(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Without the real Inception weights: torch-fidelity's entry point is replaced by a
    recorder, so what repro passes to it (and records) is checked."""
    import hashlib

    import torch_fidelity

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"fake weights")
    seen: dict = {}

    def fake(**kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        x = kw["input1"][0]
        assert x.dtype == torch.uint8 and x.shape[0] == 3  # uint8, 3 channels
        return {"frechet_inception_distance": 12.5, "inception_score_mean": 3.0, "inception_score_std": 0.1}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake)
    data = digits(flip=False, dequantize="none")
    out = evaluate(
        (Call("fid"), Call("inception_score", (("splits", 4),))),
        data.as_float("test")[:20],
        data,
        settings={"inception_weights": str(weights), "reference": "test"},
        run_key="abc123",
        cache_dir=tmp_path / "cache",
    )
    sha = hashlib.sha256(b"fake weights").hexdigest()
    assert out["fid"] == 12.5 and out["inception_score"] == 3.0
    assert out["protocol"]["inception_weights_sha256"] == sha
    assert out["protocol"]["implementation"].startswith("torch-fidelity")
    assert seen["feature_extractor_weights_path"] == str(weights)
    assert sha[:12] in seen["input2_cache_name"] and seen["input1_cache_name"] is None
    assert seen["isc_splits"] == 4 and seen["fid"] and seen["isc"] and not seen["kid"]
