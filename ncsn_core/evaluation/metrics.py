"""Registrations: the metrics and the `evaluate` block's schema."""

from __future__ import annotations

from typing import Any

from ncsn_core.blocks import _schema
from ncsn_core.registry import Bool, Choice, ComponentOf, Float, Int, ListOf, Param, Str, register


def _marker(family: str) -> Any:
    def build(**params: Any) -> dict[str, Any]:
        return params

    build.family = family  # type: ignore[attr-defined]
    return build


register(
    "metric",
    "inception_score",
    params=[Param("splits", Int(min=1), 10, "splits for mean ± std")],
    doc="Inception Score (torch-fidelity, Inception-v3 weights as the TF original)",
)(_marker("fidelity"))
register("metric", "fid", doc="Fréchet Inception Distance to the reference split (torch-fidelity)")(
    _marker("fidelity")
)
register("metric", "kid", doc="Kernel Inception Distance, mean ± std over subsets (torch-fidelity)")(
    _marker("fidelity")
)
register(
    "metric", "precision_recall", doc="precision and recall in Inception feature space (torch-fidelity)"
)(_marker("fidelity"))
register(
    "metric",
    "fid_domain",
    doc="Fréchet distance in the features of a classifier trained on the dataset (digits, MNIST-like); "
    "its floor, train vs test, is in the protocol",
)(_marker("domain"))
register(
    "metric",
    "is_domain",
    params=[Param("splits", Int(min=1), 10, "splits for mean ± std")],
    doc="Inception-style score exp(E KL(p(y|x)‖p(y))) of the dataset's classifier",
)(_marker("domain"))
register(
    "metric",
    "mode_weights",
    doc="fraction of samples nearest each mixture mean (NCSN Fig. 3); mode_weight_error = max |Δ|",
)(_marker("toy"))
register(
    "metric",
    "mmd",
    params=[Param("bandwidth", Float(min=0.0), 0.0, "RBF bandwidth (0 = median heuristic)")],
    doc="unbiased MMD² (RBF kernel) to as many exact samples of the toy density",
)(_marker("toy"))
register(
    "metric",
    "sliced_wasserstein",
    params=[Param("projections", Int(min=1), 256, "random directions")],
    doc="sliced Wasserstein-2 distance to exact samples of the toy density",
)(_marker("toy"))


register(
    "block",
    "evaluate",
    params=[
        Param(
            "metrics", ListOf(ComponentOf("metric")), (), "metrics to compute, e.g. [inception_score, fid]"
        ),
        Param("samples", Int(min=2), 50_000, "samples drawn for evaluation (the papers: 50k)"),
        Param("batch_size", Int(min=1), 500, "feature-extraction batch size"),
        Param(
            "reference", Choice(("train", "test")), "train", "the dataset split compared against (recorded)"
        ),
        Param(
            "inception_weights",
            Str(),
            "",
            "path of the Inception weights file (offline machines); see docs/evaluation.md",
        ),
        Param("cache", Bool(), True, "cache reference-set features (keyed by data, split and weights hash)"),
    ],
    doc="evaluation settings; changing them never resamples",
)(_schema)
