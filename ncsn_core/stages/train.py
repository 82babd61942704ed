"""The train stage: the network trained by the train block, or a released checkpoint imported.

Its folder is ``train/`` (one per seed; the train hash is in stage.json). Training resumes from
the last verified checkpoint (:class:`~ncsn_core.training.Trainer`). Concurrent runs of a
sweep that share the train hash train it once: each holds the hash's own lock besides the
folder's (:func:`~ncsn_core.layout.train_lock_stage`). With ``train.from = released(...)`` the
stage's other source, :mod:`ncsn_core.stages.released`, computes it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch

import ncsn_core.layout as layout
from ncsn_core import distributed as dist
from ncsn_core.errors import UserError
from ncsn_core.lock import stage_lock
from ncsn_core.stages import released
from ncsn_core.stages.base import Context, Done, Outputs, Stage, build
from ncsn_core.training import Trainer, plain_progress


@contextmanager
def _progress(label: str, total: int):  # type: ignore[no-untyped-def]
    """A rich progress bar on a terminal, plain periodic lines otherwise."""
    if sys.stderr.isatty() and not os.environ.get("CI"):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        ) as prog:
            task = prog.add_task(label, total=total, info="")
            t0 = [time.perf_counter(), 0]

            def update(step: int, total_: int, loss: float | None) -> None:
                now = time.perf_counter()
                rate = (step - t0[1]) / max(now - t0[0], 1e-9)
                t0[0], t0[1] = now, step
                prog.update(task, completed=step, info=f"loss {loss:.4g}  {rate:.1f} it/s")

            yield update
    else:
        yield plain_progress(label)


def _logged_loss(folder: Path, step: int) -> float | None:
    """The loss the train log recorded at ``step`` (its tail is read: bounded, our own file)."""
    from ncsn_core import io as atomic

    try:
        with atomic.open_regular(folder / layout.LOG, "train log") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read(65536).decode("utf-8", errors="replace").splitlines()
    except (OSError, UserError):
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
            if int(rec["step"]) == step and isinstance(rec["loss"], (int, float)):
                return float(rec["loss"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


class Train(Stage):
    name = "train"
    kind = layout.TRAIN

    def applies(self, ctx: Context, done: Done) -> bool:
        return ctx.spec.trains

    def hash(self, ctx: Context) -> str:
        return ctx.spec.train_hash()

    def every_rank(self, ctx: Context) -> bool:
        return ctx.spec.weights() is None  # a released checkpoint is imported by rank 0 alone

    def extra_lock(self, ctx: Context) -> AbstractContextManager[None]:
        return self._shared_lock(ctx)

    @contextmanager
    def _shared_lock(self, ctx: Context) -> Iterator[None]:
        """The lock of the train hash (:func:`layout.train_lock_stage`): concurrent runs of a
        sweep sharing the training stage train it once."""
        h = self.hash(ctx)
        if ctx.find_stage(self.kind, h) is not None:
            yield
            return

        def log(msg: str) -> None:
            if msg.startswith("waiting for"):
                ctx.log(f"train: waiting for another run training the same train stage ({h})…")

        with stage_lock(layout.train_lock_stage(ctx.runs_dir, h, ctx.spec.seed), wait=ctx.wait, log=log):
            yield

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        if ctx.spec.weights() is not None:  # a released checkpoint instead of training (issue 17)
            return released.compute(ctx, folder)
        torch.manual_seed(ctx.spec.seed)  # network initialisation
        assert ctx.spec.train is not None and ctx.spec.loss is not None
        s = ctx.spec.train.kwargs()
        if s.get("micro_batch") == "auto":  # on CUDA: the plan's largest fitting micro-batch
            s["micro_batch_fit"] = lambda batch: _auto_fit(ctx)
        model = ctx.network()
        init_hash = weights_digest(model)  # seeded: the same on resume; pairs seeds across arms
        trainer = Trainer(
            model=model,
            loss=build("loss", ctx.spec.loss),
            noise=ctx.noise(),
            data=ctx.data,
            optimizer_factory=build("optimizer", s["optimizer"]),
            settings=s,
            seed=ctx.spec.seed,
            device=ctx.device,
            folder=folder,
        )
        start = trainer.resume()
        if start:
            ctx.log(f"train: resuming from step {start}")
        t0 = time.perf_counter()
        with _progress(f"train {ctx.spec.experiment}", s["iterations"]) as prog:
            trainer.progress = prog
            result = trainer.train()
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result["resumed_from"] = start
        result["init_hash"] = init_hash
        if result.get("final_loss") is None and start:
            # Killed after the last checkpoint (while pruning, or before results.json): the
            # resumed loop trains no step, and the loss of the last one is in the log.
            result["final_loss"] = _logged_loss(folder, start)
        if dist.active():
            result["world_size"] = dist.world()
        return Outputs({layout.RESULTS: result})


def _auto_fit(ctx: Context) -> int | None:
    """``train.micro_batch = auto`` on CUDA (asked by the Trainer through microbatch.resolve):
    the plan's largest micro-batch whose step fits the device's free memory now
    (:func:`ncsn_core.plan.auto_micro_batch`, fake tensors, about a second), logged in one line;
    None: the whole batch. Data-parallel runs are not planned (the plan's step is one
    process's): the whole batch. Not hashed: a run trains the same numbers at any micro-batch."""
    from ncsn_core import microbatch
    from ncsn_core import plan as planmod

    if dist.active():
        ctx.log(f"micro_batch auto: the whole batch ({dist.world()} processes: not planned data-parallel)")
        return None
    free = microbatch.free_memory(ctx.device)
    choice = planmod.auto_micro_batch(ctx.spec, free)
    ctx.log(choice.line())
    if choice.micro_batch == 0:
        raise UserError(
            f"experiment {ctx.spec.experiment}: train.micro_batch = auto: not even one example's step "
            f"fits: the parameters, gradients and optimizer state alone are planned at "
            f"{planmod.fmt_bytes(choice.planned_bytes)}, {planmod.fmt_bytes(free)} of device memory is "
            f"free ({planmod.AUTO_FREE_FRACTION:.0%} usable; repro plan)"
        )
    return choice.micro_batch


STAGE = Train()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) of a network's weights, names and bytes in key order: two arms
    whose seed gives the same initial network record the same value, so the report pairs their
    seeds (a paired test) only where pairing holds (issue 24)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
