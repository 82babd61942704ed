"""A domain feature extractor for small image datasets (digits, Fashion-MNIST, MNIST) where
Inception features are meaningless or unavailable: a small CNN classifier trained on the
dataset's own labels, cached on disk by its own hash (dataset identity, architecture,
training settings).

It is registered with torch-fidelity as the feature extractor ``repro-domain-classifier``
and receives its weights file through ``feature_extractor_weights_path``, so "FID (domain)"
and the Inception-style score ``exp(E KL(p(y|x) ‖ p(y)))`` are computed by torch-fidelity's
own FID and IS code on its penultimate features and logits. The **floor** of each (the same
metric between the train and test splits) is computed once with the classifier and stored
in the protocol.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncsn_core import io as atomic
from ncsn_core import progress
from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.fidelity import Uint8Images, cache_name, calculate, content_hash
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
    return path, info


def compute(
    calls: list[Call],
    samples: torch.Tensor,
    data: Any,
    settings: dict[str, Any],
    run_key: str,
    cache_dir: Path,
    device: torch.device | str,
    protocol: dict[str, Any],
) -> dict[str, float]:
    """``fid_domain`` and ``is_domain`` through torch-fidelity with the domain classifier."""
    path, info = load_classifier(data, cache_dir, settings=settings)
    names = {c.name: dict(c.params) for c in calls}
    split = str(settings.get("reference", "train"))
    ref = data.train if split == "train" else data.test
    n = int(samples.shape[0])
    splits = int(names.get("is_domain", {}).get("splits", 10))
    if "is_domain" in names and n < splits:
        raise EvaluationError(f"is_domain with {splits} splits needs at least that many samples")
    ds = Uint8Images(samples)
    flags: dict[str, Any] = {"fid": "fid_domain" in names, "isc": "is_domain" in names}
    if flags["isc"]:
        flags["isc_splits"] = splits
    res = calculate(
        ds,
        Uint8Images(ref) if flags["fid"] else None,
        feature_extractor=EXTRACTOR,
        weights=path,
        input1_cache_name=None,  # samples are never cached (see fidelity.py)
        input2_cache_name=cache_name("domain", info["hash"], data.identity, split),
        cache_root=cache_dir / "torch-fidelity",
        settings=settings,
        device="cpu",  # a few-layer CNN on small images: the CPU is fast enough and deterministic
        **flags,
    )
    out: dict[str, float] = {}
    if flags["fid"]:
        out["fid_domain"] = float(res["frechet_inception_distance"])
    if flags["isc"]:
        out["is_domain"] = float(res["inception_score_mean"])
        out["is_domain_std"] = float(res["inception_score_std"])
    protocol["domain_classifier"] = info
    protocol.setdefault("samples_hash", content_hash(ds.x))
    if flags["isc"]:
        protocol["is_domain_splits"] = splits
    return out


def implementation(protocol: dict[str, Any]) -> str:
    return f"torch-fidelity {fidelity_version()} (domain classifier {protocol['domain_classifier']['hash']})"
