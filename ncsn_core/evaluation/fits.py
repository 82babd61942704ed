"""Which metrics fit which data, from the declarations' facts (checked before anything runs)."""

from __future__ import annotations

from typing import Any

from ncsn_core import registry
from ncsn_core.errors import EvaluationError


def check_fits(names: list[str], data: Any) -> None:
    """Raise :class:`EvaluationError` when a metric cannot apply to ``data`` (a built data source)."""
    kind = getattr(data, "kind", "image")
    dname = getattr(data, "name", "?")
    for n in names:
        needs = registry.lookup("metric", n).facts.needs
        if needs == "image" and kind != "image":
            raise EvaluationError(
                f"metric {n} needs image data, but {dname} is {kind}; use mode_weights, mmd or sliced_wasserstein"
            )
        if needs == "density" and getattr(data, "mixture", None) is None:
            raise EvaluationError(
                f"metric {n} needs toy data with a known density (mixture2d), but the data is {dname}"
            )
        if needs == "labels" and (kind != "image" or getattr(data, "train_labels", None) is None):
            raise EvaluationError(
                f"metric {n} trains a classifier on the dataset's labels, but {dname} has "
                + ("no labels" if kind == "image" else "no images")
                + "; use fid / inception_score (image data) or the toy metrics (points)"
            )
