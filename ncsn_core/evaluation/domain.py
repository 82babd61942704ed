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
from ncsn_core.evaluation.context import EvalContext
from ncsn_core.evaluation.fidelity import KID_SUBSETS, Uint8Images, cache_name, calculate, content_hash
from ncsn_core.evaluation.fits import check_fits
from ncsn_core.evaluation.weights import fidelity_version, sha256_file
from ncsn_core.spec import digest
from ncsn_core.values import Call

EXTRACTOR = "repro-domain-classifier"
ARCH = "cnn32-64-64/elu/avgpool/v1"
# Everything that changes the trained classifier goes into its hash.
TRAINING = {"optimizer": "adam", "lr": 2e-3, "batch_size": 128, "seed": 0, "input": "uint8/255"}


class DomainClassifier(nn.Module):
    """Three 3×3 convolutions (32, 64, 64 channels, two stride-2), ELU, global average pool:
    64 features; a linear head gives the class logits. Any image size."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, classes)

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
    """About 30k examples seen, between 2 and 30 epochs (digits: 20, MNIST: 2)."""
    return max(2, min(30, 30_000 // max(n_train, 1)))


def classifier_key(data: Any, epochs: int) -> str:
    return digest([data.identity, ARCH, TRAINING, epochs])


def _train(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int) -> DomainClassifier:
    seed = int(TRAINING["seed"])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # initialisation
    model = DomainClassifier(x.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=float(TRAINING["lr"]))
    bs = int(TRAINING["batch_size"])
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], bs):
            b = perm[i : i + bs]
            _, logits = model(x[b].float() / 255.0)
            loss = nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
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


FLOOR_SEED = 0  # which real images make the matched floor (fixed: the floor is part of the protocol)


def _subset(size: int, n: int, seed: int) -> torch.Tensor:
    """A fixed random choice of min(n, size) indices out of range(size)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: min(n, size)]


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
    """``fid_domain``, ``is_domain``, ``kid_domain`` (one torch-fidelity call) and
    ``precision_recall_domain`` (a second, equal-sized sets) with the domain classifier, plus
    the matched floor (module docstring)."""
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
    pick_ref = _subset(m, n, FLOOR_SEED + 1)
    prc_ref_name = cache_name("domain", info["hash"], data.identity, split, f"prc{n}s{FLOOR_SEED + 1}")

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
        return _outputs(res, {**flags, "prc": prc})

    out = measure(samples, None)  # samples are never cached (see fidelity.py)
    protocol["domain_classifier"] = info
    protocol.setdefault("samples_hash", content_hash(ds.x))
    if flags["isc"]:
        protocol["is_domain_splits"] = splits
    if flags["kid"]:
        protocol.update(kid_domain_subsets=KID_SUBSETS, kid_domain_subset_size=kid_size)
    if prc:
        protocol["precision_recall_domain_reference"] = (
            f"{n} images of the {split} split (random, seed {FLOOR_SEED + 1}); k = 3"
        )
    if other is not None and other.shape[0] >= n:
        # The matched floor: n real images of the other split (a fixed random subset) in place
        # of the samples; the same metrics, the same reference and settings.
        pick = _subset(other.shape[0], n, FLOOR_SEED)
        floor = measure(
            other[pick],
            cache_name("domain", info["hash"], data.identity, other_split, f"floor{n}s{FLOOR_SEED}"),
        )
        protocol["domain_floor"] = {
            "what": f"{n} real {other_split} images (random, seed {FLOOR_SEED}) against the {split} split",
            **floor,
        }
    return out


def implementation(protocol: dict[str, Any]) -> str:
    return f"torch-fidelity {fidelity_version()} (domain classifier {protocol['domain_classifier']['hash']})"
