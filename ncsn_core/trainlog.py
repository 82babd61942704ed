"""Training's logging (issue 16, docs/tensorboard.md): TensorBoard events and Weights & Biases,
written at the training loop's log intervals (ncsn_core.training)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from ncsn_core import layout, progress


class ProgressLine:
    """The training's plain progress line (a pipe, a log file, CI), printed at each log
    interval: ``<prefix> step 200/1000 loss 0.8123 · 41.7 it/s · ETA 19s``. The rate is over the
    steps since the previous line (the first: since this object was made, from ``start``); the
    ETA is the remaining steps at that rate. Called as ``(step, total, loss)``."""

    def __init__(self, prefix: str, start: int = 0, stream: TextIO | None = None) -> None:
        self.prefix, self.stream = prefix, stream
        self.t_last, self.step_last = time.perf_counter(), start

    def __call__(self, step: int, total: int, loss: float | None) -> None:
        now = time.perf_counter()
        rate = (step - self.step_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.step_last = now, step
        line = f"{self.prefix} step {step}/{total}"
        if loss is not None:
            line += f" loss {loss:.5g}"
        if rate > 0:
            line += f" · {rate:.3g} it/s"
            if step < total:
                line += f" · ETA {progress.eta(max(total - step, 0) / rate)}"
        print(line, file=self.stream or sys.stderr, flush=True)


class TrainLogger:
    """TensorBoard events in ``train/tb/`` (``train.tensorboard``, on by default) and Weights &
    Biases (``train.wandb``), written at the loop's log intervals, where it already synchronises:
    ``loss``, ``loss/level_<i>`` (i = 1 … L, σ₁ largest), ``grad_norm``, ``lr``, ``it_per_s``.
    A missing package is one note, then nothing. A resumed run drops the events past its step
    (``purge_step``). TensorBoard appends its own event files (like log.jsonl, not through io)."""

    def __init__(self, folder: Path, settings: dict[str, Any], start: int) -> None:
        self.tb: Any = None
        self.wandb: Any = None
        if settings.get("tensorboard", True):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                progress.note(
                    "train: TensorBoard logging is off: the tensorboard package is not installed "
                    "(pip install tensorboard, a dependency of repro-ncsn; train.tensorboard = false hides this note)"
                )
            else:
                self.tb = SummaryWriter(str(layout.tensorboard_dir(folder)), purge_step=start or None)
        if settings.get("wandb", False):
            try:
                import wandb
            except ImportError:
                progress.note(
                    "train: train.wandb = true, but wandb is not installed (pip install wandb); skipped"
                )
            else:
                run = folder.parent.parent  # <experiment>/<run-hash>/seed-<k>/train
                self.wandb = wandb.init(
                    project="repro",
                    name=f"{run.parent.name}/{run.name}/{folder.parent.name}",
                    dir=str(folder),
                    resume="allow",
                )

    @property
    def active(self) -> bool:
        return self.tb is not None or self.wandb is not None

    def log(
        self, step: int, loss: float, per_level: list[float], grad_norm: float, lr: float, it_s: float
    ) -> None:
        scalars = {"loss": loss, "grad_norm": grad_norm, "lr": float(lr), "it_per_s": it_s}
        scalars |= {f"loss/level_{i + 1}": v for i, v in enumerate(per_level)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def images(self, tag: str, x: torch.Tensor, step: int) -> None:
        """A batch of images in [0, 1], N×C×H×W, as one grid."""
        if self.tb is not None:
            self.tb.add_images(tag, x, step)
            self.tb.flush()
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: [wandb.Image(im) for im in x]}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
