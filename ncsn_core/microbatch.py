"""Micro-batches (``train.micro_batch``, not hashed; docs/scale.md): one optimizer step over the
global batch computed in slices, the gradients accumulated, so a batch larger than a device's
memory trains with the same arithmetic.

The slices are those of the data-parallel path (docs/scale.md), in one process: the loss draws
the global batch's random numbers (levels, noise, projections) and evaluates the model on one
slice (``part``); before each slice the noise generator is put back where it was, so every
slice sees the same draws as a one-process full-batch step and the generator ends where that
step leaves it. Each slice's mean loss is weighted by its share of the rank's rows, so the
accumulated gradient is the gradient of the batch mean (equal to the full-batch step's within
float rounding: sums in another order).
"""

from __future__ import annotations

from typing import Any

import torch


class Combined:
    """The micro-batches' LossOut summed: ``loss`` the rank's batch mean (detached: the
    gradients are already accumulated), per-level sums and counts."""

    def __init__(
        self, loss: torch.Tensor, per_level_sum: torch.Tensor, per_level_count: torch.Tensor
    ) -> None:
        self.loss = loss
        self.per_level_sum = per_level_sum
        self.per_level_count = per_level_count


def slices(rows: slice, micro: int) -> list[slice]:
    """``rows`` (this rank's part of the global batch) cut into consecutive slices of ``micro``."""
    return [slice(a, min(a + micro, rows.stop)) for a in range(rows.start, rows.stop, micro)]


def on_cuda(device: torch.device) -> bool:
    """Whether ``auto`` plans for ``device`` (a function, so a CPU test can say yes)."""
    return device.type == "cuda"


def free_memory(device: torch.device) -> int:
    """The device's free memory in bytes (``torch.cuda.mem_get_info``; patched in CPU tests)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def resolve(setting: Any, batch: int, device: torch.device, free_fit: Any = None) -> int | None:
    """The micro-batch a run uses: None (the whole batch) for unset, ``auto`` on the CPU, or a
    value not below the batch; ``auto`` on CUDA asks ``free_fit(batch)`` (the train stage passes
    the plan's largest micro-batch that fits the free memory, ncsn_core.plan.auto_micro_batch;
    None: the whole batch)."""
    if setting is None:
        return None
    if setting == "auto":
        if not on_cuda(device) or free_fit is None:
            return None
        m = free_fit(batch)
        return None if m is None or m >= batch else int(m)
    m = int(setting)
    return None if m >= batch else m


def loss_backward(call: Any, x: torch.Tensor, gen: torch.Generator, rows: slice, micro: int) -> Combined:
    """Forward and backward of every micro-batch of ``rows``; ``call(x, part)`` is the loss."""
    state = gen.get_state()
    n = rows.stop - rows.start
    total = None
    ps = pc = None
    for k, part in enumerate(slices(rows, micro)):
        if k:
            gen.set_state(state)
        out = call(x, part)
        w = (part.stop - part.start) / n
        (out.loss * w).backward()
        lv = out.loss.detach() * w
        total = lv if total is None else total + lv
        ps = out.per_level_sum if ps is None else ps + out.per_level_sum
        pc = out.per_level_count if pc is None else pc + out.per_level_count
    return Combined(total, ps, pc)  # type: ignore[arg-type]
