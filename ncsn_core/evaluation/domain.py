"""A domain feature extractor for small image datasets (digits, Fashion-MNIST, MNIST) where
Inception features are meaningless or unavailable: a small CNN classifier trained on the
dataset's labels, cached by its own hash. It gives "FID (domain)" (the Fréchet distance of
its penultimate features) and a classifier-based Inception-style score, with their floor:
the same metrics between the train and test splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ncsn_core.spec import digest

ARCH = "cnn32-64-64/elu/v1"


class DomainClassifier(nn.Module):
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


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}) (Heusel et al.), with scipy's sqrtm."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def stats(f: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = f.double().numpy()
    return a.mean(0), np.cov(a, rowvar=False)


def inception_style_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) over splits (Salimans et al.), mean and std."""
    p = torch.softmax(logits.double(), 1)
    scores = []
    for part in torch.chunk(p, splits):
        py = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part + 1e-12) - torch.log(py + 1e-12))).sum(1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def _train(data: Any, epochs: int, seed: int) -> DomainClassifier:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = data.as_float("train")
    y = data.train_labels
    model = DomainClassifier(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 128):
            b = perm[i : i + 128]
            _, logits = model(x[b])
            loss = nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def _features(model: DomainClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fs, ls = [], []
    for i in range(0, x.shape[0], 1000):
        f, lg = model(x[i : i + 1000].float().cpu())
        fs.append(f)
        ls.append(lg)
    return torch.cat(fs), torch.cat(ls)


def load_classifier(data: Any, cache_dir: Path, epochs: int = 0) -> tuple[DomainClassifier, dict[str, Any]]:
    """The cached classifier for this dataset (trained once), with its test accuracy and floor."""
    from ncsn_core.evaluation import EvaluationError

    if getattr(data, "train_labels", None) is None or getattr(data, "kind", "") != "image":
        raise EvaluationError(
            f"the domain classifier needs labelled image data; {getattr(data, 'name', '?')} has no labels"
        )
    n = len(data)
    epochs = epochs or max(2, min(30, 30_000 // max(n, 1)))
    key = digest([data.identity, ARCH, epochs, 0])
    path = cache_dir / f"domain-classifier-{key}.pt"
    x = data.as_float("train")
    model = DomainClassifier(x.shape[1], int(data.train_labels.max()) + 1)
    if path.exists():
        st = torch.load(path, weights_only=False)
        model.load_state_dict(st["model"])
        return model.eval(), st["info"]
    model = _train(data, epochs, 0)
    ftr, _ = _features(model, x)
    fte, lte = _features(model, data.as_float("test"))
    acc = float((lte.argmax(1) == data.test_labels).double().mean())
    floor_fid = frechet_distance(*stats(ftr), *stats(fte))
    floor_is, _ = inception_style_score(lte)
    info = {
        "hash": key,
        "arch": ARCH,
        "epochs": epochs,
        "test_accuracy": acc,
        "floor_fid_domain_train_vs_test": floor_fid,
        "is_domain_test_split": floor_is,
    }
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    (cache_dir / f"domain-classifier-{key}.json").write_text(json.dumps(info, indent=2))
    return model, info


def compute(
    name: str,
    params: dict[str, Any],
    samples: torch.Tensor,
    data: Any,
    settings: dict[str, Any],
    cache_dir: Path,
    device: Any,
    protocol: dict[str, Any],
) -> dict[str, float]:
    model, info = load_classifier(data, cache_dir)
    protocol["domain_classifier"] = info
    fs, ls = _features(model, samples.clamp(0, 1))
    if name == "fid_domain":
        split = settings.get("reference", "train")
        fr, _ = _features(model, data.as_float(split))
        return {"fid_domain": frechet_distance(*stats(fs), *stats(fr))}
    m, s = inception_style_score(ls, int(params.get("splits", 10)))
    return {"is_domain": m, "is_domain_std": s}
