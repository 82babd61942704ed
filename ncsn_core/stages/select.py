"""The select stage (schema ``select``, issue 11.6): the best kept checkpoint by a metric.

Between train and sample: ``select.samples`` images are drawn from each candidate checkpoint
(those the select block's from/to/every admit) with the sample block's init and stages and the
same seeds for every candidate, scored by ``select.metric``; selection.json names the best
(``sample.checkpoint = best`` loads it). Each candidate's record is kept as it finishes, so a
killed selection redoes only the candidates without one. Found in the run's own folder only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ncsn_core.layout as layout
from ncsn_core import checkpoint as ckpt
from ncsn_core import evaluation, registry
from ncsn_core.errors import EvaluationError, RunError, SamplerDiverged
from ncsn_core.stages.base import Context, Done, Outputs, Stage
from ncsn_core.stages.sampling import draw, load_model

SELECT_SEED_OFFSET = 2  # the selection's samples (0: the sample stage's, 1: extra evaluation samples)


def candidates(ctx: Context, train_dir: Path) -> list[int]:
    """The kept checkpoints the select block's from/to/every admit, by step."""
    assert ctx.spec.select is not None
    sel = ctx.spec.select.kwargs()
    lo, hi, every = sel.get("from"), sel.get("to"), sel.get("every")
    steps = [step for step, _ in ckpt.list_checkpoints(layout.checkpoints_dir(train_dir))]
    return [
        st
        for st in steps
        if (lo is None or st >= lo) and (hi is None or st <= hi) and (every is None or st % every == 0)
    ]


class Select(Stage):
    name = "select"
    kind = layout.SELECT
    everywhere = False

    def applies(self, ctx: Context, done: Done) -> bool:
        return ctx.spec.select is not None and done.get("train") is not None and ctx.spec.sample is not None

    def hash(self, ctx: Context) -> str:
        return ctx.spec.select_hash()

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        train_dir = done["train"]
        assert train_dir is not None
        return {"train": ctx.record(train_dir)}

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        train_dir = done["train"]
        assert ctx.spec.select is not None and ctx.spec.sample is not None and train_dir is not None
        h = self.hash(ctx)
        sel = ctx.spec.select.kwargs()
        metric = sel["metric"]
        output = registry.lookup("metric", metric.name).facts.outputs[0]
        steps = candidates(ctx, train_dir)
        if not steps:
            kept = [st for st, _ in ckpt.list_checkpoints(layout.checkpoints_dir(train_dir))]
            raise RunError(
                f"select: no kept checkpoint in {layout.checkpoints_dir(train_dir)} is between "
                f"select.from and select.to at a multiple of select.every (kept: "
                f"{', '.join(map(str, kept)) or 'none'}); set train.keep_every to keep the candidates"
            )
        e = ctx.spec.evaluate.kwargs() if ctx.spec.evaluate is not None else {}
        settings = {k: e[k] for k in ("reference", "inception_weights", "cache") if k in e}
        settings |= {"samples": sel["samples"], "batch_size": sel["batch_size"]}
        use_ema = ctx.spec.sample.get("use_ema", True)
        n = sel["samples"]
        ctx.log(f"select: {len(steps)} candidate checkpoints, {metric.name} on {n} samples each")
        for step in steps:
            record = layout.candidate_file(folder, step)
            if record.exists():
                continue  # evaluated before the stage was interrupted
            t0 = time.perf_counter()
            model, minfo = load_model(ctx, train_dir, use_ema, step)
            shards = layout.candidate_shards(folder, step)
            rec: dict[str, Any] = {"step": step, "metric": output.key, "samples": n}
            try:
                x, _ = draw(
                    ctx,
                    model,
                    n,
                    SELECT_SEED_OFFSET,
                    record=False,
                    shards=shards,
                    batch_size=sel["batch_size"],
                )
                if x is not None:  # the metric on rank 0, which holds the gathered samples
                    m = evaluation.evaluate(
                        (metric,),
                        x,
                        ctx.data,
                        settings=settings,
                        run_key=f"{h}-{step}",
                        cache_dir=layout.cache_dir(ctx.runs_dir),
                        device=ctx.device,
                    )
                    rec["value"] = float(m[output.key])
            except (SamplerDiverged, EvaluationError) as exc:  # a diverging early checkpoint loses
                rec["value"], rec["error"] = None, str(exc)
            rec |= {"seconds": round(time.perf_counter() - t0, 3), "ema": minfo["ema"]}
            ctx.keep(record, rec, cleanup=shards)
            shown = "failed" if rec.get("value") is None else f"{rec['value']:.4g}"
            ctx.log(f"select: step {step}: {output.key} {shown} ({rec['seconds']}s)")
        records = [json.loads(layout.candidate_file(folder, st).read_text(encoding="utf-8")) for st in steps]
        scored = [r for r in records if r.get("value") is not None]
        if not scored:
            raise RunError(f"select: no candidate checkpoint could be scored ({records[0].get('error')})")
        sign = 1.0 if output.better == "lower" else -1.0
        best = min(scored, key=lambda r: (sign * r["value"], r["step"]))
        selection = {
            "metric": output.key,
            "better": output.better,
            "samples": n,
            "candidates": records,
            "best": {"step": best["step"], "value": best["value"]},
            "seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
        }
        note = f"select: step {best['step']} has the best {output.key} ({best['value']:.4g})"
        return Outputs({layout.SELECTION: selection}, note=note)


STAGE = Select()
