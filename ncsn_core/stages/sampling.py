"""Drawing samples from a trained model, shared by the select, sample and evaluate stages.

:func:`load_model` loads a kept checkpoint (the last, a step, or the one the select stage
chose); :func:`draw` runs the sample block's init and sampler stages in batches, each batch
from its own seeded generator and written to a shard as it finishes, spread over the
data-parallel ranks (docs/scale.md).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import ncsn_core.layout as layout
from ncsn_core import checkpoint as ckpt
from ncsn_core import distributed as dist
from ncsn_core import progress
from ncsn_core.errors import ReproError, RunError, SamplerDiverged, UserError
from ncsn_core.samplers import SampleContext, fast_network, on_level_end
from ncsn_core.stages.base import Context, build, load_tensors, mkdir, save_tensors


def chosen_step(ctx: Context) -> int:
    """The step the select stage chose (``sample.checkpoint = best``)."""
    path = layout.stage_dir(ctx.seed_dir, layout.SELECT, ctx.spec.select_hash()) / layout.SELECTION
    if ctx.spec.select is None:
        raise UserError("sample.checkpoint = best needs a select block")
    try:
        chosen = json.loads(path.read_text(encoding="utf-8"))["best"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(
            f"sample.checkpoint = best: the select stage has not chosen a checkpoint ({path} is "
            "missing or incomplete); run the experiment again to finish it"
        ) from None
    return int(chosen)


def load_model(ctx: Context, train_dir: Path | None, use_ema: bool, which: Any) -> tuple[Any, dict[str, Any]]:
    """The network with a kept checkpoint's weights (EMA when asked and kept) and the noise
    schedule's state; and what the sample stage's results.json says of it."""
    if train_dir is None:
        return None, {}
    ckdir = layout.checkpoints_dir(train_dir)
    cks = ckpt.list_checkpoints(ckdir)
    if not cks:
        raise ReproError(f"no checkpoint in {ckdir}; run the train stage first")
    if which == "best":  # the checkpoint the select stage chose
        which = chosen_step(ctx)
    if which == "last":
        step, path = cks[-1]
    else:
        match = [c for c in cks if c[0] == which]
        if not match:
            raise ReproError(
                f"sample.checkpoint = {which}: no such checkpoint in {ckdir} "
                f"(kept: {', '.join(str(c[0]) for c in cks)})"
            )
        step, path = match[0]
    ctx.log(f"sampling: loading {ctx.shown(path)} (step {step})")
    st = ckpt.load(path, map_location=ctx.device)
    model = ctx.network().to(ctx.device)
    weights = st["ema"] if (use_ema and st.get("ema") is not None) else st["model"]
    model.load_state_dict(weights)
    model.eval()
    noise = ctx.noise()
    noise.load_state_dict(st["noise"])  # ANSN: the covariance learned in training
    return model, {
        "checkpoint": ctx.record(path),
        "step": step,
        "ema": bool(use_ema and st.get("ema") is not None),
    }


def draw(
    ctx: Context,
    model: Any,
    n: int,
    seed_offset: int,
    record: bool,
    shards: Path,
    batch_size: int | None = None,
    label: str = "sampling",
) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """Run init + stages for n samples in batches; returns samples (CPU, on rank 0; None on
    other ranks) and info.

    Batch ``k`` draws from its own generator seeded by (seed, seed_offset, k)
    (:func:`ncsn_core.distributed.batch_seed`; batch 0 as the one generator of old), so a
    sample depends on its global index only: the batches go to the ranks round-robin and
    their union is the one-process result whatever the process count. Each batch is
    written to ``shards`` as it finishes; batches already there are not drawn again.
    """
    assert ctx.spec.sample is not None
    s = ctx.spec.sample.kwargs()
    noise = ctx.noise()
    init = build("init", s["init"])
    stages = [(st.name, build("stage", st)) for st in ctx.spec.stages]
    mixture = getattr(ctx.data, "mixture", None)
    bs = batch_size or s["batch_size"]
    n_batches = math.ceil(n / bs)
    t0 = time.perf_counter()
    drawn = 0

    # noise adaptive with output = preconditioned: the network gives Ĉs, the score is Ĉ⁻¹ of it
    converts = bool(getattr(noise, "preconditioned_output", False))

    def score(x: torch.Tensor, i: int) -> torch.Tensor:
        out = output(x, i)
        return noise.score_of(out, i) if converts else out

    def output(x: torch.Tensor, i: int) -> torch.Tensor:  # the network's output (not always the score)
        if model is None:
            raise ReproError("this experiment has no network; its sampler stages must use the exact score")
        idx = torch.full((x.shape[0],), int(i) % noise.num_levels, device=x.device, dtype=torch.long)
        return net(x, idx)

    # speed settings (not hashed): bf16 autocast, a compiled / CUDA-graph score step
    net = (
        None
        if model is None
        else fast_network(model, s.get("precision", "fp32"), s.get("compile", "off"), ctx.device)
    )
    mkdir(shards)
    mine = list(dist.my_batches(n_batches))
    bar = progress.Bar(label, sum(min(bs, n - k * bs) for k in mine), unit="samples")
    where = {"batch": 0, "stage": 0, "done": 0, "b": 0}

    def level_end(stage_name: str, i: int, levels: int) -> None:  # after the level's host sync
        part = (where["stage"] + (i + 1) / max(levels, 1)) / max(len(stages), 1)
        bar.update(
            where["done"] + where["b"] * part,
            f"batch {where['batch'] + 1}/{len(mine)} · {stage_name} level {i + 1}/{levels}",
        )

    with torch.inference_mode(), on_level_end(level_end), bar:
        for pos, k in enumerate(mine):
            where["batch"] = pos
            shard = layout.shard_file(shards, k)
            if shard.exists():
                where["done"] += min(bs, n - k * bs)
                continue
            gen = torch.Generator(device=ctx.device).manual_seed(
                dist.batch_seed(ctx.spec.seed, seed_offset, k)
            )
            lo = k * bs
            b = min(bs, n - lo)
            where["b"] = b
            x = init(b, tuple(ctx.data.shape), gen, ctx.device, ctx.data)
            intermediates: dict[str, list[torch.Tensor]] = {}

            def rec(name: str, x_: torch.Tensor, first: bool = k == 0, into: dict = intermediates) -> None:
                if first and record:
                    into.setdefault(name, []).append(x_[:8].detach().cpu())

            for j, (name, stage) in enumerate(stages):
                where["stage"] = j
                sample_ctx = SampleContext(
                    score=score,
                    noise=noise,
                    generator=gen,
                    record=rec,
                    exact_score=None if mixture is None else mixture.score,
                    data=ctx.data,
                    stage_name=name,
                    first_index=lo,
                    seed=ctx.spec.seed,
                    output=output if converts else None,
                )
                try:
                    x = stage.run(x, sample_ctx)
                except SamplerDiverged as e:  # named with the run, the seed and the samples
                    raise SamplerDiverged(
                        f"sampling {ctx.spec.experiment} (seed {ctx.spec.seed}, samples {lo}–{lo + b} "
                        f"of {n}): {e} No samples were written and the stage is not marked done."
                    ) from None
            shard_data: dict[str, Any] = {"x": x.detach().cpu(), "intermediates": intermediates}
            for _, stage in stages:
                if hasattr(stage, "rows_of_call"):  # inpainting: what this batch used, by image
                    shard_data["inpainting"] = stage.rows_of_call()
                    shard_data["inpainting_repeats"] = stage.repeats
            save_tensors(shard, shard_data)
            drawn += 1
            where["done"] += b
    dist.barrier()
    L = noise.num_levels
    info = {
        "samples": n,
        "seconds": round(time.perf_counter() - t0, 3),
        "nfe_per_sample": sum(st.nfe(L) for _, st in stages),
        "device": str(ctx.device),
    }
    if dist.active():
        info["world_size"] = dist.world()
    if not dist.is_main():
        return None, {"info": info, "intermediates": {}}
    parts = [load_tensors(layout.shard_file(shards, k)) for k in range(n_batches)]
    if drawn < n_batches and not dist.active():
        ctx.log(f"sample: {n_batches - drawn} of {n_batches} batches were already drawn; drew the rest")
    extra = {"info": info, "intermediates": parts[0]["intermediates"]}
    rows = {r: v for p in parts for r, v in p.get("inpainting", {}).items()}  # stage inpainting
    if rows:  # its reference images and masks, one row per image (NCSN Fig. 6), from every shard
        keys = sorted(rows)
        extra["inpainting"] = {
            "reference": torch.stack([rows[r][0] for r in keys]),
            "mask": torch.stack([rows[r][1] for r in keys]),
            "repeats": int(parts[0]["inpainting_repeats"]),
        }
    return torch.cat([p["x"] for p in parts]), extra
