"""Evaluation: torch-fidelity's FID/KID against a direct computation, the offline error, the
glue to torch-fidelity (options, weights, hashes, cache names) with fake Inception weights,
the domain classifier (through torch-fidelity) and its floor, and the toy metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from scipy import linalg

from ncsn_core.data import DataSource, digits, mixture2d
from ncsn_core.evaluation import INCEPTION_FILE, EvaluationError, evaluate, preflight
from ncsn_core.evaluation.fidelity import Uint8Images, checked_kwargs
from ncsn_core.evaluation.toy import mmd_rbf, mode_weights, sliced_wasserstein
from ncsn_core.values import Call


def feats(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d))


def direct_fid(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ₁−μ₂‖² + tr(Σ₁ + Σ₂ − 2 sqrtm(Σ₁Σ₂)) with scipy's sqrtm."""
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real))


@pytest.fixture(scope="module")
def data() -> DataSource:
    return digits(flip=False, dequantize="none")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per module: the domain classifier is trained once (a few seconds)."""
    return tmp_path_factory.mktemp("eval-cache")


# ----------------------------------------------------------------------------- formulas
def test_fid_of_torch_fidelity_matches_scipy_sqrtm() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    a, b = feats(300, 8, 0.0, 0), feats(300, 8, 0.5, 1)
    s1 = fid_features_to_statistics(torch.from_numpy(a))
    s2 = fid_features_to_statistics(torch.from_numpy(b))
    theirs = fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]
    assert theirs == pytest.approx(direct_fid(a, b), rel=1e-6)
    same = fid_statistics_to_metric(s1, s1, verbose=False)["frechet_inception_distance"]
    assert abs(same) < 1e-6


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
    direct = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    direct -= 2 * kxy.mean()
    assert res["kernel_inception_distance_mean"] == pytest.approx(direct, rel=1e-6)


# ----------------------------------------------------------------------------- offline weights
def test_offline_without_weights_fails_in_preflight(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    monkeypatch.delenv("REPRO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EvaluationError) as ei:
        preflight((Call("fid"), Call("kid")), {"inception_weights": ""})
    msg = str(ei.value)
    assert INCEPTION_FILE == "weights-inception-2015-12-05-6726825d.pth"
    assert INCEPTION_FILE in msg and "REPRO_INCEPTION_WEIGHTS" in msg and "inception_weights" in msg
    assert "URL_INCEPTION_V3" in msg and "http" not in msg  # torch-fidelity's URL named, no host
    assert str(tmp_path / "hub" / "checkpoints" / INCEPTION_FILE) in msg
    assert "fid, kid" in msg
    with pytest.raises(EvaluationError, match="no such file"):
        preflight((Call("inception_score"),), {"inception_weights": str(tmp_path / "missing.pth")})
    assert preflight((Call("mmd"), Call("fid_domain")), {}) is None  # need no Inception weights
    # Found through the environment variable, then through the hub cache.
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    monkeypatch.setenv("REPRO_INCEPTION_WEIGHTS", str(w))
    assert preflight((Call("fid"),), {}) == w.resolve()
    monkeypatch.delenv("REPRO_INCEPTION_WEIGHTS")
    hub = tmp_path / "hub" / "checkpoints" / INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert preflight((Call("fid"),), {}) == hub.resolve()


def test_offline_error_from_repro_run_comes_before_training(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    monkeypatch.setenv("REPRO_OFFLINE", "1")
    monkeypatch.delenv("REPRO_INCEPTION_WEIGHTS", raising=False)
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
    with pytest.raises(EvaluationError, match=INCEPTION_FILE):
        run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    assert not (tmp_path / "runs").exists()  # nothing trained or sampled


def test_metrics_that_do_not_fit_the_data_are_refused(data: DataSource) -> None:
    toy = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=10, seed=0)
    with pytest.raises(EvaluationError, match="needs image data"):
        preflight((Call("fid"),), {}, data=toy)
    with pytest.raises(EvaluationError, match="known density"):
        preflight((Call("mmd"),), {}, data=data)
    unlabelled = DataSource("blank", "image", (1, 8, 8), data.train, data.test, "blank:0")
    with pytest.raises(EvaluationError, match="no labels"):
        preflight((Call("fid_domain"),), {}, data=unlabelled)
    bad = data.as_float("test")[:8].clone()
    bad[3] = float("nan")
    with pytest.raises(EvaluationError, match="1 of 8 samples"):
        evaluate((Call("fid_domain"),), bad, data, settings={}, run_key="k", cache_dir=Path("/tmp/unused"))


# ----------------------------------------------------------------------------- torch-fidelity glue
def test_torch_fidelity_options_are_validated() -> None:
    assert checked_kwargs(fid=True, isc=False) == {"fid": True, "isc": False}
    with pytest.raises(ValueError, match="does not know"):
        checked_kwargs(fid=True, feature_extrator_weights_path="x")  # a typo it would ignore


def test_images_reach_torch_fidelity_as_uint8_rgb() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.2]).view(1, 1, 2, 2)
    item = Uint8Images(x)[0]
    assert item.dtype == torch.uint8 and item.shape == (3, 2, 2)
    assert item[:, 0, 1].tolist() == [128, 128, 128] and item[0, 1, 1] == 255


def test_fidelity_glue_passes_weights_and_records_their_hash(monkeypatch, tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    """torch-fidelity's entry point replaced by a recorder: what repro passes and records."""
    import torch_fidelity

    weights = tmp_path / INCEPTION_FILE
    weights.write_bytes(b"fake weights")
    seen: dict = {}

    def fake(**kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        x = kw["input1"][0]
        assert x.dtype == torch.uint8 and x.shape[0] == 3  # uint8, 3 channels
        return {"frechet_inception_distance": 12.5, "inception_score_mean": 3.0, "inception_score_std": 0.1}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake)
    out = evaluate(
        (Call("fid"), Call("inception_score", (("splits", 4),))),
        data.as_float("test")[:20],
        data,
        settings={"inception_weights": str(weights), "reference": "test", "samples": 20},
        run_key="abc123",
        cache_dir=tmp_path / "cache",
    )
    sha = hashlib.sha256(b"fake weights").hexdigest()
    assert out["fid"] == 12.5 and out["inception_score"] == 3.0 and out["inception_score_std"] == 0.1
    p = out["protocol"]
    assert p["inception_weights_sha256"] == sha and p["inception_weights"] == str(weights.resolve())
    assert p["implementation"].startswith("torch-fidelity 0.") and p["samples"] == 20
    assert p["reference"] == "digits:test" and p["reference_split"] == "test" and p["run_key"] == "abc123"
    assert seen["feature_extractor"] == "inception-v3-compat"
    assert seen["feature_extractor_weights_path"] == str(weights.resolve())
    assert sha[:12] in seen["input2_cache_name"] and seen["input1_cache_name"] is None
    assert seen["isc_splits"] == 4 and seen["fid"] and seen["isc"] and not seen["kid"]
    assert len(seen["input2"]) == data.test.shape[0] and seen["save_cpu_ram"] and not seen["cuda"]


def test_torch_fidelity_end_to_end_with_fake_inception_weights(tmp_path: Path) -> None:
    """The real torch-fidelity, fed by repro, with random Inception-v3 weights written to a
    file (no download): it accepts every option, loads our file, and caches the reference set
    under a name that carries the weights' hash."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), weights)
    del net
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (10, 1, 8, 8), generator=g, dtype=torch.uint8)
    tiny = DataSource("tiny", "image", (1, 8, 8), imgs[:5], imgs[5:], "tiny:test")
    settings = {"inception_weights": str(weights), "reference": "train", "batch_size": 5, "cache": True}
    metrics = (Call("fid"), Call("kid"), Call("inception_score", (("splits", 2),)))
    out = evaluate(
        metrics, torch.rand(4, 1, 8, 8, generator=g), tiny, settings=settings, run_key="r", cache_dir=tmp_path
    )
    assert {"fid", "kid", "kid_std", "inception_score", "inception_score_std"} <= set(out)
    assert all(np.isfinite(out[k]) for k in ("fid", "kid", "inception_score"))
    p = out["protocol"]
    assert p["inception_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert p["kid_subset_size"] == 4 and p["isc_splits"] == 2 and p["rng_seed"] == 2020
    cached = sorted(f.name for f in (tmp_path / "torch-fidelity").iterdir())
    assert cached and all(
        f.startswith("ref-tiny_test-train-n5-w" + p["inception_weights_sha256"][:12]) for f in cached
    )


# ----------------------------------------------------------------------------- domain classifier
def test_domain_floor_is_lower_than_noise_and_protocol_is_recorded(data: DataSource, cache: Path) -> None:
    metrics = (Call("fid_domain"), Call("is_domain", (("splits", 2),)))
    settings = {"reference": "train", "samples": 297}
    test_images = data.as_float("test")
    real = evaluate(metrics, test_images, data, settings=settings, run_key="t", cache_dir=cache)
    noise = evaluate(
        metrics, torch.rand_like(test_images), data, settings=settings, run_key="t", cache_dir=cache
    )
    info = real["protocol"]["domain_classifier"]
    assert info["test_accuracy"] > 0.85
    floor = info["floor_fid_domain_test_vs_train"]
    assert floor == pytest.approx(real["fid_domain"], rel=1e-9)  # the test split is the floor's input
    assert floor < noise["fid_domain"] / 5
    assert info["is_domain_test_split"] > noise["is_domain"] + 1
    assert (
        real["protocol"]["samples"] == test_images.shape[0]
        and real["protocol"]["reference"] == "digits:train"
    )
    assert info["sha256"] == hashlib.sha256(Path(info["file"]).read_bytes()).hexdigest()
    assert real["protocol"]["implementation"].endswith(f"(domain classifier {info['hash']})")
    assert len(list(cache.glob("domain-classifier-*.pt"))) == 1  # trained once, cached


def test_domain_fid_is_the_frechet_distance_of_the_classifier_features(data: DataSource, cache: Path) -> None:
    """fid_domain (torch-fidelity's FID on the registered extractor) equals the scipy-sqrtm
    formula on the classifier's penultimate features."""
    from ncsn_core.evaluation.domain import _extractor_class, load_classifier

    path, _ = load_classifier(data, cache)
    ext = _extractor_class()(
        "repro-domain-classifier", ["features"], feature_extractor_weights_path=str(path)
    )
    x = data.as_float("test")[:150]
    with torch.no_grad():
        (fa,) = ext(Uint8Images(x).x)
        (fb,) = ext(Uint8Images(data.train).x)
    out = evaluate((Call("fid_domain"),), x, data, settings={"cache": False}, run_key="f", cache_dir=cache)
    assert out["fid_domain"] == pytest.approx(direct_fid(fa.numpy(), fb.numpy()), rel=1e-5)


# ----------------------------------------------------------------------------- toy metrics
def test_toy_metrics() -> None:
    data = mixture2d(weights=(0.2, 0.8), means=(-5.0, -5.0, 5.0, 5.0), std=1.0, stds=(), n_train=10, seed=0)
    x = data.mixture.sample(4000, torch.Generator().manual_seed(1))
    w = mode_weights(x, data.mixture.means)
    assert abs(float(w[0]) - 0.2) < 0.02
    y = data.mixture.sample(4000, torch.Generator().manual_seed(2))
    assert mmd_rbf(x[:1000], y[:1000]) < 0.01 < mmd_rbf(x[:1000], y[:1000] + 3)
    assert sliced_wasserstein(x, y) < 0.2 < sliced_wasserstein(x, y + 3)
    metrics = (Call("mode_weights"), Call("mmd"), Call("sliced_wasserstein"))
    out = evaluate(metrics, x, data, settings={}, run_key="k", cache_dir=Path("/tmp"))
    assert out["mode_weight_1"] == pytest.approx(float(w[0])) and out["mode_weight_error"] < 0.02
    # SW₂ is sensitive to mode-weight fluctuations (mass moved ~14 apart): 4000 exact samples
    # against 4000 others give ≈ 0.2-0.4; a 3-unit shift gives > 2.
    assert out["mmd"] < 0.01 and out["sliced_wasserstein"] < 0.5
    p = out["protocol"]
    assert p["mode_means"][0] == [-5.0, -5.0] and p["mode_weights_true"][0] == pytest.approx(0.2)
    assert p["mmd_points"] == 2000 and "exact samples" in p["reference"]
