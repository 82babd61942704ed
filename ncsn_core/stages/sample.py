"""The sample stage: ``sample.samples`` samples from the trained model (or the exact score).

The sample block's init and sampler stages run in batches (:func:`~ncsn_core.stages.sampling.draw`,
shards kept while sampling); the stage writes samples.pt, grid.png, the first batch's
intermediates (intermediates.pt, intermediates.png), for stage inpainting its reference images
and masks (inpainting.pt, inpainting.png: NCSN Fig. 6) and results.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

import ncsn_core.layout as layout
from ncsn_core.images import save_grid, save_inpainting, save_strip
from ncsn_core.stages.base import Context, Done, Outputs, Stage
from ncsn_core.stages.sampling import draw, load_model


class Sample(Stage):
    name = "sample"
    kind = layout.SAMPLE

    def applies(self, ctx: Context, done: Done) -> bool:
        return ctx.spec.sample is not None

    def hash(self, ctx: Context) -> str:
        return ctx.spec.sample_hash()

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        train_dir = done.get("train")
        return {"train": "" if train_dir is None else ctx.record(train_dir)}

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        assert ctx.spec.sample is not None
        s = ctx.spec.sample.kwargs()
        model, minfo = load_model(ctx, done.get("train"), s["use_ema"], s["checkpoint"])
        shards = layout.shards_dir(folder)
        x, extra = draw(ctx, model, s["samples"], 0, record=True, shards=shards)
        if x is None:  # another rank's: rank 0 holds the gathered samples
            return None
        data = ctx.data
        files = {
            layout.SAMPLES: x,
            layout.GRID: lambda p: save_grid(x, data, p),
        }
        if extra["intermediates"]:
            inter = {k: torch.stack(v) for k, v in extra["intermediates"].items()}
            files[layout.INTERMEDIATES] = inter
            files[layout.STRIP] = lambda p: save_strip(inter, data, p)
        if "inpainting" in extra:  # stage inpainting: its reference images and masks, Fig. 6's rows
            used = extra["inpainting"]
            files[layout.INPAINTING] = used
            files[layout.INPAINTING_FIGURE] = lambda p: save_inpainting(x, used, p)
        files[layout.RESULTS] = {**extra["info"], **minfo}
        note = f"sample: {s['samples']} samples in {extra['info']['seconds']}s → {folder / layout.GRID}"
        return Outputs(files, note=note, cleanup=(shards,))  # every batch is in samples.pt then


STAGE = Sample()
