"""A domain feature extractor for small image datasets (digits, Fashion-MNIST, MNIST) where
Inception features are meaningless or unavailable: a small CNN classifier trained on the
dataset's own labels, cached on disk by its own hash (dataset identity, architecture,
training settings).

It is registered with torch-fidelity as the feature extractor ``repro-domain-classifier``
and receives its weights file through ``feature_extractor_weights_path``, so "FID (domain)"
and the Inception-style score ``exp(E KL(p(y|x) ‖ p(y)))`` are computed by torch-fidelity's
own FID and IS code on its penultimate features and logits; ``kid_domain`` and
``precision_recall_domain`` are torch-fidelity's KID and precision/recall on the same
features. Precision/recall compares equal-sized sets (Kynkäänniemi et al. 2019): the n samples
against a fixed random subset of n reference images, in a second call (torch-fidelity's k-NN
radii are O(m²) in the reference size: 10k test images made every evaluation take about a
minute on a CPU); the other metrics use the whole reference split. Two **floors** are stored in the protocol: the classifier's own
(FID between the whole train and test splits, and the test split's IS), computed once with
the classifier; and, at every evaluation, ``domain_floor``: each requested metric for as many
real images of the other split as there are samples, against the same reference (FID and KID
are biased by the sample count, so this is the value a perfect model would get).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn_core import io as atomic
from ncsn_core import progress
from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation import floors
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.evaluation.fidelity import KID_SUBSETS, Uint8Images, cache_name, calculate, content_hash
from ncsn_core.evaluation.fits import check_fits
from ncsn_core.evaluation.weights import fidelity_version, sha256_file
from ncsn_core.spec import digest
from ncsn_core.values import Call

EXTRACTOR = "repro-domain-classifier"
ARCH = "cnn32-64-64/elu/avgpool4/fc128/v2"
# Everything that changes the trained classifier goes into its hash.
TRAINING = {
    "optimizer": "adam",
    "lr": 2e-3,
    "schedule": "onecycle",
    "batch_size": 128,
    "seed": 0,
    "input": "uint8/255",
}


class DomainClassifier(nn.Module):
    """Three 3×3 convolutions (32, 64, 64 channels, two stride-2), ELU, average-pooled to a 4×4
    grid (kept: where things are matters for clothes), a 128-unit ELU layer: 128 features; a
    linear head gives the class logits. Any image size (8×8 digits to 28×28 Fashion-MNIST).
    v1 pooled globally to 64 features and reached 79.8% on Fashion-MNIST in 2 epochs."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ELU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ELU(),
        )
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f)


def _extractor_class() -> type:
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class DomainFeatureExtractor(FeatureExtractorBase):
        """torch-fidelity's view of a trained :class:`DomainClassifier` (uint8 input)."""

        def __init__(
            self,
            name: str,
            features_list: list[str],
            feature_extractor_weights_path: str | None = None,
            **kw: Any,
        ) -> None:
            super().__init__(name, features_list)
            if not feature_extractor_weights_path:
                raise ValueError(f"{EXTRACTOR} needs feature_extractor_weights_path (the classifier file)")
            st = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=True)
            cfg = st["config"]
            self.channels = int(cfg["channels"])
            self.net = DomainClassifier(self.channels, int(cfg["classes"]))
            self.net.load_state_dict(st["model"])
            self.requires_grad_(False)
            self.eval()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = x[:, : self.channels].float() / 255.0  # 1-channel data arrives repeated to 3
            f, logits = self.net(x)
            feats = {"features": f.double(), "logits": logits.double()}
            return tuple(feats[a] for a in self.features_list)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    return DomainFeatureExtractor


def register_with_torch_fidelity() -> None:
    """Register :data:`EXTRACTOR` once per process."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(EXTRACTOR, _extractor_class())


def default_epochs(n_train: int) -> int:
    """About 480k examples seen, between 4 and 20 epochs (Fashion-MNIST and MNIST: 8, digits:
    20). v1 saw 30k (2 epochs of Fashion-MNIST: 79.8% test accuracy)."""
    return max(4, min(20, 480_000 // max(n_train, 1)))


def classifier_key(data: Any, epochs: int) -> str:
    return digest([data.identity, ARCH, TRAINING, epochs])


def _train(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int) -> DomainClassifier:
    seed = int(TRAINING["seed"])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # initialisation
    model = DomainClassifier(x.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=float(TRAINING["lr"]))
    bs = int(TRAINING["batch_size"])
    steps = epochs * -(-x.shape[0] // bs)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(TRAINING["lr"]), total_steps=steps)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], bs):
            b = perm[i : i + bs]
            _, logits = model(x[b].float() / 255.0)
            loss = nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def _logits(model: DomainClassifier, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i : i + 1000].float() / 255.0)[1] for i in range(0, x.shape[0], 1000)])


def load_classifier(
    data: Any, cache_dir: Path, epochs: int = 0, settings: dict[str, Any] | None = None
) -> tuple[Path, dict[str, Any]]:
    """The classifier file for this dataset (trained once, then cached) and its info: hash,
    SHA-256, architecture, training settings, test accuracy and the metrics' floors."""
    check_fits(["fid_domain"], data)
    if data.test is None or data.test_labels is None:
        raise EvaluationError(f"the domain classifier needs a labelled test split; {data.name} has none")
    register_with_torch_fidelity()
    epochs = epochs or default_epochs(len(data))
    key = classifier_key(data, epochs)
    path = cache_dir / f"domain-classifier-{key}.pt"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return path, {**json.loads(info_path.read_text()), "file": str(path)}  # where it is now
    progress.note(
        f"evaluate: training the domain classifier for {data.name} ({epochs} epochs; cached for every "
        f"run in {cache_dir})"
    )
    t0 = time.perf_counter()
    y = data.train_labels.long()
    classes = int(max(int(y.max()), int(data.test_labels.max()))) + 1
    model = _train(data.train, y, classes, epochs)
    acc = float((_logits(model, data.test).argmax(1) == data.test_labels).double().mean())
    state = {
        "model": model.state_dict(),
        "config": {"channels": int(data.train.shape[1]), "classes": classes, "arch": ARCH},
    }
    atomic.write_with(path, lambda f: torch.save(state, f))
    # The floor: the same metrics between the test and train splits (IS: of the test split).
    floor = calculate(
        Uint8Images(data.test),
        Uint8Images(data.train),
        feature_extractor=EXTRACTOR,
        weights=path,
        input1_cache_name=cache_name("domain", key, data.identity, "test"),
        input2_cache_name=cache_name("domain", key, data.identity, "train"),
        cache_root=cache_dir / "torch-fidelity",
        settings=dict(settings or {}, cache=True),
        device="cpu",
        fid=True,
        isc=True,
        isc_splits=10,
    )
    info = {
        "hash": key,
        "sha256": sha256_file(path),
        "file": str(path),
        "arch": ARCH,
        "training": {**TRAINING, "epochs": epochs},
        "classes": classes,
        "train_size": int(data.train.shape[0]),
        "test_size": int(data.test.shape[0]),
        "test_accuracy": round(acc, 6),
        "floor_fid_domain_test_vs_train": float(floor["frechet_inception_distance"]),
        "is_domain_test_split": float(floor["inception_score_mean"]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic.write_json(info_path, info)
    print(
        f"domain classifier for {data.name}: test accuracy {acc:.4f} "
        f"({info['test_size']} test images, {epochs} epochs, {info['seconds']}s) → {path.name}",
        file=sys.stderr,
        flush=True,
    )
    return path, info


_NETS: dict[str, DomainClassifier] = {}  # classifier file → loaded network, per process


def _net(path: Path) -> DomainClassifier:
    key = str(path)
    if key not in _NETS:
        st = torch.load(path, map_location="cpu", weights_only=True)
        net = DomainClassifier(int(st["config"]["channels"]), int(st["config"]["classes"]))
        net.load_state_dict(st["model"])
        _NETS[key] = net.eval()
    return _NETS[key]


@torch.no_grad()
def features_and_logits(path: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's 128 features and logits of uint8 images, as torch-fidelity sees them
    (x / 255 in float32, results in float64)."""
    net = _net(path)
    x = x[:, : net.features[0].in_channels]  # 1-channel data may arrive repeated to 3
    fs, ls = [], []
    for i in range(0, x.shape[0], 1000):
        f, logit = net(x[i : i + 1000].float() / 255.0)
        fs.append(f.double())
        ls.append(logit.double())
    return torch.cat(fs), torch.cat(ls)


def class_histogram(logits: torch.Tensor, classes: int) -> torch.Tensor:
    """The fraction of images the classifier assigns to each class (argmax)."""
    return torch.bincount(logits.argmax(1), minlength=classes).double() / max(logits.shape[0], 1)


def coverage(logits: torch.Tensor, ref_hist: torch.Tensor, min_share: float) -> dict[str, float]:
    """``class_coverage``: the fraction of classes that get at least ``min_share`` of their
    share in the reference split (0.5: a class the data gives 10% counts when ≥ 5% of the
    images fall in it); ``class_tv``: the total-variation distance between the two class
    histograms; ``class_confidence``: the mean max-probability (how sure the classifier is)."""
    hist = class_histogram(logits, ref_hist.shape[0])
    present = ref_hist > 0
    covered = (hist[present] >= min_share * ref_hist[present]).double().mean()
    return {
        "class_coverage": float(covered),
        "class_tv": float(0.5 * (hist - ref_hist).abs().sum()),
        "class_confidence": float(logits.softmax(1).max(1).values.mean()),
    }


def _outputs(res: dict[str, Any], flags: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    if flags.get("fid"):
        out["fid_domain"] = float(res["frechet_inception_distance"])
    if flags.get("isc"):
        out["is_domain"] = float(res["inception_score_mean"])
        out["is_domain_std"] = float(res["inception_score_std"])
    if flags.get("kid"):
        out["kid_domain"] = float(res["kernel_inception_distance_mean"])
        out["kid_domain_std"] = float(res["kernel_inception_distance_std"])
    if flags.get("prc"):
        out["precision_domain"] = float(res["precision"])
        out["recall_domain"] = float(res["recall"])
        out["f_score_domain"] = float(res.get("f_score", float("nan")))
    return out


def compute(calls: list[Call], samples: torch.Tensor, ctx: EvalContext) -> dict[str, float]:
    """``fid_domain``, ``is_domain``, ``kid_domain`` (one torch-fidelity call),
    ``precision_recall_domain`` (a second, equal-sized sets) and ``class_coverage`` with the
    domain classifier; the matched floor as mean ± sd over :data:`~.floors.FLOOR_DRAWS` draws
    of real images (``<key>_floor_mean``, ``_floor_sd``, ``_floor_n``; draw 0 stays in the
    protocol's ``domain_floor``, as before); for FID (domain) a bootstrap interval over the
    samples (``fid_domain_ci_low``, ``_ci_high``, ``_boot_sd``)."""
    data, settings, run_key, cache_dir, device, protocol = ctx.unpack()
    path, info = load_classifier(data, cache_dir, settings=settings)
    names = {c.name: dict(c.params) for c in calls}
    split = str(settings.get("reference", "train"))
    ref = data.train if split == "train" else data.test
    other_split = "test" if split == "train" else "train"
    other = data.test if split == "train" else data.train
    n, m = int(samples.shape[0]), int(ref.shape[0])
    splits = int(names.get("is_domain", {}).get("splits", 10))
    if "is_domain" in names and n < splits:
        raise EvaluationError(f"is_domain with {splits} splits needs at least that many samples")
    kid_size = min(1000, n, m)
    if "kid_domain" in names and kid_size < 2:
        raise EvaluationError("kid_domain needs at least 2 samples")
    if "precision_recall_domain" in names and n < 4:
        raise EvaluationError("precision_recall_domain needs at least 4 samples (3 nearest neighbours)")
    ds = Uint8Images(samples)
    flags: dict[str, Any] = {
        "fid": "fid_domain" in names,
        "isc": "is_domain" in names,
        "kid": "kid_domain" in names,
    }
    prc = "precision_recall_domain" in names
    cov = "class_coverage" in names
    min_share = float(names.get("class_coverage", {}).get("min_share", 0.5))
    if flags["isc"]:
        flags["isc_splits"] = splits
    if flags["kid"]:
        flags.update(kid_subsets=KID_SUBSETS, kid_subset_size=kid_size)
    common: dict[str, Any] = {
        "feature_extractor": EXTRACTOR,
        "weights": path,
        "cache_root": cache_dir / "torch-fidelity",
        "settings": settings,
        "device": "cpu",  # a few-layer CNN on small images: the CPU is fast enough and deterministic
    }
    ref_name = cache_name("domain", info["hash"], data.identity, split)
    pick_ref = floors.subset(m, n, floors.FLOOR_SEED + 1)
    prc_ref_name = cache_name("domain", info["hash"], data.identity, split, f"prc{n}s{floors.FLOOR_SEED + 1}")
    ref_hist = class_histogram(features_and_logits(path, ref)[1], int(info["classes"])) if cov else None

    def measure(x: torch.Tensor, x_cache: str | None) -> dict[str, float]:
        res: dict[str, Any] = {}
        if any(flags[k] for k in ("fid", "isc", "kid")):
            binary = flags["fid"] or flags["kid"]
            res.update(
                calculate(
                    Uint8Images(x),
                    Uint8Images(ref) if binary else None,
                    input1_cache_name=x_cache,
                    input2_cache_name=ref_name,
                    **common,
                    **flags,
                )
            )
        if prc:
            res.update(
                calculate(
                    Uint8Images(x),
                    Uint8Images(ref[pick_ref]),
                    input1_cache_name=x_cache,
                    input2_cache_name=prc_ref_name,
                    prc=True,
                    **common,
                )
            )
        out = _outputs(res, {**flags, "prc": prc})
        if cov:
            assert ref_hist is not None
            out.update(coverage(features_and_logits(path, Uint8Images(x).x)[1], ref_hist, min_share))
        return out

    out = measure(samples, None)  # samples are never cached (see fidelity.py)
    protocol["domain_classifier"] = info
    protocol.setdefault("samples_hash", content_hash(ds.x))
    if flags["isc"]:
        protocol["is_domain_splits"] = splits
    if flags["kid"]:
        protocol.update(kid_domain_subsets=KID_SUBSETS, kid_domain_subset_size=kid_size)
    if prc:
        protocol["precision_recall_domain_reference"] = (
            f"{n} images of the {split} split (random, seed {floors.FLOOR_SEED + 1}); k = 3"
        )
    if cov:
        assert ref_hist is not None
        protocol["class_coverage"] = {
            "min_share": min_share,
            "reference_histogram": [round(float(v), 6) for v in ref_hist],
            "samples_histogram": [
                round(float(v), 6)
                for v in class_histogram(features_and_logits(path, ds.x)[1], int(info["classes"]))
            ],
        }
    if flags["fid"] and n >= 2:
        # How much FID (domain) moves with the samples alone: resample them, same reference.
        fs = features_and_logits(path, ds.x)[0]
        ref_stats = floors.gaussian_stats(features_and_logits(path, ref)[0])
        ci = floors.bootstrap(lambda i: floors.fid_features(fs[i], ref_stats), n, out["fid_domain"])
        out.update({f"fid_domain_{k}": v for k, v in ci.items()})
        protocol["fid_domain_bootstrap"] = (
            f"{floors.BOOTSTRAP} resamples of the {n} samples (seed {floors.BOOTSTRAP_SEED}), "
            "interval fid_domain ± 1.96 sd, features as torch-fidelity's"
        )
    if other is not None and other.shape[0] >= n:
        # The matched floor: n real images of the other split in place of the samples, the
        # same metrics, reference and settings; FLOOR_DRAWS independent draws (one draw is
        # not the floor: at 128 Fashion-MNIST images FID (domain) ranged 5.0-14.7).
        # The draws depend only on the classifier, the data, the split, n and the metrics:
        # computed once and kept in the cache (a comparison evaluates dozens of arms at one n).
        floor_file = cache_dir / (
            "domain-floor-"
            + digest([info["hash"], data.identity, split, n, sorted(names.items()), floors.FLOOR_DRAWS])
            + ".json"
        )
        draws = json.loads(floor_file.read_text()) if floor_file.exists() else []
        if len(draws) != floors.FLOOR_DRAWS:
            draws = []
            for d in range(floors.FLOOR_DRAWS):
                seed = floors.draw_seed(d)
                pick = floors.subset(other.shape[0], n, seed)
                draws.append(
                    measure(
                        other[pick],
                        cache_name("domain", info["hash"], data.identity, other_split, f"floor{n}s{seed}"),
                    )
                )
            atomic.write_json(floor_file, draws)
        summary = floors.summarize(draws)
        out.update(summary)
        protocol["domain_floor"] = {
            "what": f"{n} real {other_split} images (random, seed {floors.FLOOR_SEED}) against the {split} split",
            **draws[0],  # the single draw earlier versions recorded (old readers use it)
            "draws": len(draws),
            "draw_seeds": [floors.draw_seed(d) for d in range(len(draws))],
            "mean": {k[: -len("_floor_mean")]: v for k, v in summary.items() if k.endswith("_floor_mean")},
            "sd": {k[: -len("_floor_sd")]: v for k, v in summary.items() if k.endswith("_floor_sd")},
        }
    return out


def implementation(protocol: dict[str, Any]) -> str:
    return f"torch-fidelity {fidelity_version()} (domain classifier {protocol['domain_classifier']['hash']})"
