"""Evaluation metrics. A metric's ``impl`` is its backend (``compute(calls, samples, data,
settings, run_key, cache_dir, device, protocol)``), which computes every requested metric of
that backend in one pass (torch-fidelity extracts features once for IS, FID, KID and PR). Its
facts say what it writes to metrics.json, which direction is better (the report marks the
best value and judges Δ by it) and what data it needs (checked before anything runs)."""

from __future__ import annotations

from ncsn_core.params import Float, Int, MetricFacts, MetricOutput, Param, declare

_FIDELITY = "ncsn_core.evaluation.fidelity:compute"
_DOMAIN = "ncsn_core.evaluation.domain:compute"
_TOY = "ncsn_core.evaluation.toy:compute"
_PCA = "ncsn_core.evaluation.pca:compute"
_SPLITS = Param("splits", Int(min=1), 10, "splits for mean ± std")


def _facts(*outputs: tuple[str, str], needs: str = "image") -> MetricFacts:
    return MetricFacts(tuple(MetricOutput(k, b) for k, b in outputs), needs)


# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("metric", "inception_score", _FIDELITY,
        params=[_SPLITS],
        doc="Inception Score (torch-fidelity, Inception-v3 weights as the TF original)",
        facts=_facts(("inception_score", "higher")),
    ),
    declare("metric", "fid", _FIDELITY,
        doc="Fréchet Inception Distance to the reference split (torch-fidelity)",
        facts=_facts(("fid", "lower")),
    ),
    declare("metric", "kid", _FIDELITY,
        doc="Kernel Inception Distance, mean ± std over subsets (torch-fidelity)",
        facts=_facts(("kid", "lower")),
    ),
    declare("metric", "precision_recall", _FIDELITY,
        doc="precision and recall in Inception feature space (torch-fidelity)",
        facts=_facts(("precision", "higher"), ("recall", "higher"), ("f_score", "higher")),
    ),
    declare("metric", "fid_domain", _DOMAIN,
        doc="Fréchet distance in the features of a classifier trained on the dataset (digits, MNIST-like); "
        "its floor, train vs test, is in the protocol; its matched floor (mean ± sd over 20 draws of real "
        "images) and a bootstrap interval over the samples are in metrics.json",
        facts=_facts(("fid_domain", "lower"), needs="labels"),
    ),
    declare("metric", "is_domain", _DOMAIN,
        params=[_SPLITS],
        doc="Inception-style score exp(E KL(p(y|x)‖p(y))) of the dataset's classifier",
        facts=_facts(("is_domain", "higher"), needs="labels"),
    ),
    declare("metric", "kid_domain", _DOMAIN,
        doc="Kernel distance (KID, mean ± std over subsets) in the domain classifier's features; "
        "its matched floor is in the protocol",
        facts=_facts(("kid_domain", "lower"), needs="labels"),
    ),
    declare("metric", "precision_recall_domain", _DOMAIN,
        doc="precision and recall (k = 3 neighbourhoods) in the domain classifier's features",
        facts=_facts(
            ("precision_domain", "higher"),
            ("recall_domain", "higher"),
            ("f_score_domain", "higher"),
            needs="labels",
        ),
    ),
    declare("metric", "class_coverage", _DOMAIN,
        params=[Param("min_share", Float(min=0.0), 0.5, "a class counts when it gets this fraction of its share in the reference split")],
        doc="per-class coverage under the domain classifier: the fraction of the data's classes the samples "
        "fall in (class_coverage), the total variation between the class histograms (class_tv) and the "
        "mean max-probability (class_confidence); their matched floors are in metrics.json",
        facts=_facts(
            ("class_coverage", "higher"),
            ("class_tv", "lower"),
            ("class_confidence", "higher"),
            needs="labels",
        ),
    ),
    declare("metric", "fid_pixel_pca", _PCA,
        params=[Param("components", Int(min=1), 64, "principal components of the training pixels kept")],
        doc="classifier-free Fréchet distance on the top principal components of the pixels (PCA of the "
        "training split); floor mean ± sd over 20 draws of real images and a bootstrap interval recorded",
        facts=_facts(("fid_pixel_pca", "lower")),
    ),
    declare("metric", "mode_weights", _TOY,
        doc="fraction of samples nearest each mixture mean (NCSN Fig. 3); mode_weight_error = max |Δ|",
        facts=_facts(("mode_weight_error", "lower"), needs="density"),
    ),
    declare("metric", "mmd", _TOY,
        params=[Param("bandwidth", Float(min=0.0), 0.0, "RBF bandwidth (0 = median heuristic)")],
        doc="unbiased MMD² (RBF kernel) to as many exact samples of the toy density",
        facts=_facts(("mmd", "lower"), needs="density"),
    ),
    declare("metric", "sliced_wasserstein", _TOY,
        params=[Param("projections", Int(min=1), 256, "random directions")],
        doc="sliced Wasserstein-2 distance to exact samples of the toy density",
        facts=_facts(("sliced_wasserstein", "lower"), needs="density"),
    ),
)
# fmt: on

_INPAINTING = "ncsn_core.evaluation.inpainting:compute"

DECLARATIONS += (
    declare(
        "metric",
        "inpainting_error",
        _INPAINTING,
        doc="masked-region error of stage inpainting's completions: MSE and PSNR (peak 1) on the "
        "occluded pixels only, against the reference images the stage used (needs a stage inpainting)",
        facts=_facts(("inpainting_mse", "lower"), ("inpainting_psnr", "higher")),
    ),
)
