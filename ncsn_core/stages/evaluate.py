"""The evaluate stage: the evaluate block's metrics on the sample stage's samples (metrics.json).

It takes the sample stage's first ``evaluate.samples`` samples when the stage holds that many
(a smaller evaluation never resamples), else draws that many once into
``evalsamples-<key>.pt``, found by its key anywhere under the runs folder. The metrics are
computed on rank 0 from the gathered samples; metrics.json's ``protocol`` records which
samples, how many, the iterations trained and the released weights used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ncsn_core.layout as layout
from ncsn_core import evaluation
from ncsn_core.evaluation.inpainting import with_sample_stage
from ncsn_core.spec import digest
from ncsn_core.stages.base import Context, Done, Outputs, Stage, load_tensors
from ncsn_core.stages.sampling import draw, load_model


def _sample_count(sample_dir: Path) -> int | None:
    """How many samples a complete sample stage holds (its results.json), None if unknown."""
    try:
        return int(json.loads((sample_dir / layout.RESULTS).read_text())["samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_record(path: Path) -> str:
    """A file of the user cache as recorded in a run folder: ``<user cache>/<name>`` (the
    cache is per machine; the name is its content key)."""
    try:
        return (
            "<user cache>/" + Path(path).resolve().relative_to(layout.user_cache_dir().resolve()).as_posix()
        )
    except ValueError:
        return Path(path).name


def evaluation_samples(ctx: Context, train_dir: Path | None, sample_dir: Path, n: int) -> tuple[Any, Path]:
    """The ``n`` samples to evaluate (rank 0; None elsewhere) and the file they come from:
    the sample stage's own when it has at least ``n`` (its first ``n``: a smaller evaluation
    never resamples), else ``n`` samples drawn once for evaluation, cached as
    ``evalsamples-<key>.pt`` and found by that key anywhere under the runs folder."""
    main = ctx.main
    stage_file = sample_dir / layout.SAMPLES
    kept = _sample_count(sample_dir)
    if kept is not None and n <= kept:
        x = load_tensors(stage_file)[:n] if main else None
        if n < kept:
            ctx.log(f"evaluate: on the first {n} of the {kept} samples of the sample stage")
        return x, stage_file
    key = digest([ctx.spec.sample_hash(), n])
    cache = layout.eval_samples_file(ctx.seed_dir, key)
    for other in [cache, *layout.eval_samples_anywhere(ctx.runs_dir, ctx.spec.seed, key)]:
        if other.exists():
            if other != cache:
                ctx.log(f"evaluate: reusing {ctx.shown(other)} "
                        f"({n} evaluation samples of sample hash {ctx.spec.sample_hash()})")  # fmt: skip
            return (load_tensors(other) if main else None), other
    s = ctx.spec.sample.kwargs() if ctx.spec.sample else {}
    model, _ = load_model(ctx, train_dir, s["use_ema"], s["checkpoint"])
    x, _ = draw(ctx, model, n, 1, record=False, shards=layout.shards_dir(cache), label="evaluation samples")
    ctx.keep(cache, x, cleanup=layout.shards_dir(cache))  # beside the stages, not an output
    return x, cache


class Evaluate(Stage):
    name = "evaluate"
    kind = layout.EVAL

    def applies(self, ctx: Context, done: Done) -> bool:
        return ctx.spec.evaluate is not None and done.get("sample") is not None

    def hash(self, ctx: Context) -> str:
        return ctx.spec.eval_hash()

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        sample_dir = done["sample"]
        assert sample_dir is not None
        return {"samples_from": ctx.record(sample_dir)}

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        assert ctx.spec.evaluate is not None
        train_dir, sample_dir = done.get("train"), done["sample"]
        assert sample_dir is not None
        e = ctx.spec.evaluate.kwargs()
        x, source = evaluation_samples(ctx, train_dir, sample_dir, e["samples"])
        if x is None:  # the metrics are computed by rank 0 on the gathered samples
            return None
        metrics = evaluation.evaluate(
            ctx.spec.evaluate.get("metrics"),
            x,
            ctx.data,
            settings=with_sample_stage(e, ctx.spec, sample_dir),
            run_key=self.hash(ctx),
            cache_dir=layout.user_cache_dir(),
            device=ctx.device,
        )
        trained = {}
        if train_dir is not None and (train_dir / layout.RESULTS).exists():
            trained = json.loads((train_dir / layout.RESULTS).read_text())
        protocol = metrics.setdefault("protocol", {})
        protocol["iterations_trained"] = trained.get("iterations")
        if trained.get("weights"):  # "released checkpoint <file> (sha256 …, format …)"
            protocol["weights"] = trained["weights"]
        protocol["samples_from"] = ctx.record(source)  # which samples (issue 16.1)
        protocol["samples_used"] = int(x.shape[0])
        classifier = protocol.get("domain_classifier")
        if isinstance(classifier, dict) and classifier.get("file"):  # in the user cache
            classifier["file"] = _cache_record(Path(classifier["file"]))
        return Outputs({layout.METRICS: metrics})


STAGE = Evaluate()
