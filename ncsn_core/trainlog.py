"""Training's logging (issue 16, docs/tensorboard.md): TensorBoard events and Weights & Biases,
written at the training loop's log intervals (ncsn_core.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ncsn_core import layout, progress


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
                    "(pip install 'repro[tensorboard]'; train.tensorboard = false hides this note)"
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
