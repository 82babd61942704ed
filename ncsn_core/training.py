"""The training loop: DSM/SSM over the noise levels, Adam, optional EMA (NCSNv2 Technique 5),
atomic checkpoints and exact resumption.

Resumption restores model, optimizer, EMA, step, every RNG stream and the data order, so a
resumed run ends bit-identical (on the CPU) to one that was never interrupted. The host
synchronises only at log and checkpoint intervals.

Data-parallel (docs/scale.md): with ``WORLD_SIZE`` > 1 every rank draws the global batch's
random numbers (data order, augmentation, levels, noise) from identically seeded generators
and trains on its slice; gradients are averaged over ranks before clipping and the optimizer
step (what DDP does), so the optimisation is that of one device with the same global batch,
and the checkpoint state is the same on every rank whatever the count (a run resumes on any
count). Rank 0 alone writes checkpoints and the log. The parts for it are marked ``# ddp``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ncsn_core import checkpoint as ckpt
from ncsn_core import distributed as dist
from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.errors import TrainingError
from ncsn_core.io import WriteError


class EMA:
    """Exponential moving average of parameters: θ̄ ← μ θ̄ + (1 − μ) θ (Technique 5)."""

    def __init__(self, model: torch.nn.Module, rate: float) -> None:
        self.rate = rate
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(self.rate).add_(v.detach(), alpha=1.0 - self.rate)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


class DataOrder:
    """Epoch-wise random permutations of the training set (as a shuffling DataLoader)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next(self, b: int) -> torch.Tensor:
        out = []
        need = b
        while need > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.gen)
                self.pos = 0
            take = min(need, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm = s["perm"].clone()
        self.pos = int(s["pos"])


def _gen_state(g: torch.Generator) -> torch.Tensor:
    return g.get_state()


class Trainer:
    def __init__(
        self,
        *,
        model: torch.nn.Module,
        loss: Callable[..., Any],
        noise: Any,
        data: Any,
        optimizer_factory: Callable[..., torch.optim.Optimizer],
        settings: dict[str, Any],
        seed: int,
        device: torch.device,
        folder: Path,
        progress: Callable[[int, int, float | None], None] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.loss = loss
        self.noise = noise
        self.data = data
        self.opt = optimizer_factory(self.model.parameters())
        self.s = settings
        self.device = device
        self.folder = folder
        self.ckdir = layout.checkpoints_dir(folder)
        self.ema = EMA(self.model, settings["ema"]) if settings["ema"] > 0 else None
        self.order = DataOrder(len(data), seed * 7919 + 1)
        # Separate streams: data augmentation (CPU) and noise/projections (device).
        self.gen_data = torch.Generator().manual_seed(seed * 7919 + 2)
        self.gen_noise = torch.Generator(device=device).manual_seed(seed * 7919 + 3)
        self.step = 0
        self.progress = progress
        # ddp: this rank's rows of each global batch (None: one process, the whole batch)
        self.part = dist.part(settings["batch_size"])
        if self.part is not None:
            self._check_loss_takes_part()

    # ---- ddp
    def _check_loss_takes_part(self) -> None:
        import inspect

        try:
            ok = "part" in inspect.signature(self.loss).parameters
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise TrainingError(
                f"the loss {type(self.loss).__name__} cannot train data-parallel: its __call__ takes no "
                f"`part` (this rank's rows of the global batch, docs/scale.md); run it with one process"
            )

    def _loss(self, x: torch.Tensor) -> Any:
        if self.part is None:
            return self.loss(self.model, x, self.noise, self.gen_noise)
        return self.loss(self.model, x, self.noise, self.gen_noise, part=self.part)

    def _average_gradients(self) -> None:
        if self.part is not None:
            dist.all_reduce_mean_([p.grad for p in self.model.parameters() if p.grad is not None])

    # ---- state
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "noise": self.noise.state_dict(),
            "order": self.order.state_dict(),
            "gen_data": _gen_state(self.gen_data),
            "gen_noise": _gen_state(self.gen_noise),
            "torch_rng": torch.get_rng_state(),
        }

    def load(self, st: dict[str, Any]) -> None:
        self.step = int(st["step"])
        self.model.load_state_dict(st["model"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["optimizer"])
        self.noise.load_state_dict(st["noise"])
        self.order.load_state_dict(st["order"])
        self.gen_data.set_state(st["gen_data"])
        self.gen_noise.set_state(
            st["gen_noise"].to("cpu") if hasattr(st["gen_noise"], "to") else st["gen_noise"]
        )
        torch.set_rng_state(st["torch_rng"])

    def resume(self) -> int:
        """Load the newest checkpoint that verifies (a damaged newer one is reported on stderr
        and skipped) and drop the log lines past it; returns its step (0: none)."""
        found = ckpt.newest_loadable(
            self.ckdir, self.device, warn=lambda m: print(m, file=sys.stderr, flush=True)
        )
        if found is None:
            return 0
        step, _, state = found
        self.load(state)
        if dist.is_main():  # ddp: rank 0 owns the log
            self._trim_log(step)
        return step

    def _trim_log(self, step: int) -> None:
        """Keep the log lines up to ``step``: the steps after it are trained again."""
        log = self.folder / layout.LOG
        try:
            lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
        except FileNotFoundError:
            return
        kept = []
        for line in lines:
            try:
                if int(json.loads(line)["step"]) > step:
                    break
            except (ValueError, KeyError, TypeError):
                break  # a line cut off by a crash: it and anything after it go
            kept.append(line)
        if len(kept) != len(lines):
            atomic.write_text(log, "".join(kept))

    def save(self) -> Path:
        path = ckpt.checkpoint_path(self.ckdir, self.step)
        if not dist.is_main():  # ddp: rank 0 writes; every rank holds the same state
            return path
        ckpt.save(path, self.state())
        ckpt.prune(self.ckdir, self.s["keep_checkpoints"])
        return path

    # ---- loop
    def train(self) -> dict[str, Any]:
        iters = self.s["iterations"]
        bs = self.s["batch_size"]
        log_every = self.s["log_every"]
        ck_every = self.s["checkpoint_every"]
        L = self.noise.num_levels
        log_path = self.folder / layout.LOG
        try:  # appended line by line (a crash cuts at most the last line; resume trims it)
            logf = open(log_path if dist.is_main() else os.devnull, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise WriteError(log_path, e) from None
        acc = torch.zeros((), device=self.device)
        acc_lv = torch.zeros(L, device=self.device)
        cnt_lv = torch.zeros(L, device=self.device)
        n_acc = 0
        t_last = time.perf_counter()
        step_last = self.step
        last_loss: float | None = None
        try:
            self.model.train()
            while self.step < iters:
                idx = self.order.next(bs)
                x = self.data.batch(idx, self.gen_data).to(self.device, non_blocking=True)
                self.noise.update(x)
                out = self._loss(x)
                self.opt.zero_grad(set_to_none=True)
                out.loss.backward()
                self._average_gradients()
                if self.s["grad_clip"] > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s["grad_clip"])
                self.opt.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                self.step += 1
                acc += out.loss.detach()
                acc_lv += out.per_level_sum.detach()
                cnt_lv += out.per_level_count.detach()
                n_acc += 1
                at_ck = self.step % ck_every == 0 or self.step == iters
                if self.step % log_every == 0 or at_ck:
                    if self.part is not None:  # ddp: the global batch's figures
                        dist.all_reduce_mean_([acc])
                        dist.all_reduce_sum_([acc_lv, cnt_lv])
                    loss_v = (acc / n_acc).item()  # the one host sync per log interval
                    if not math.isfinite(loss_v):
                        raise TrainingError(
                            f"the training loss became {loss_v} between steps {self.step - n_acc + 1} and "
                            f"{self.step}; stopping. The last good checkpoint in {self.ckdir} is kept. "
                            f"Lower the learning rate or enable train.grad_clip."
                        )
                    per = (acc_lv / cnt_lv.clamp(min=1)).tolist()
                    now = time.perf_counter()
                    it_s = (self.step - step_last) / max(now - t_last, 1e-9)
                    rec = {"step": self.step, "loss": loss_v, "per_level": per, "it_s": round(it_s, 3)}
                    try:
                        logf.write(json.dumps(rec) + "\n")
                        logf.flush()
                    except OSError as e:
                        raise WriteError(log_path, e) from None
                    last_loss = loss_v
                    if self.progress is not None and dist.is_main():
                        self.progress(self.step, iters, loss_v)
                    acc.zero_()
                    acc_lv.zero_()
                    cnt_lv.zero_()
                    n_acc = 0
                    t_last, step_last = now, self.step
                if at_ck:
                    self.save()
        finally:
            logf.close()
        return {"iterations": self.step, "final_loss": last_loss}


def plain_progress(prefix: str) -> Callable[[int, int, float | None], None]:
    def report(step: int, total: int, loss: float | None) -> None:
        print(f"{prefix} step {step}/{total} loss {loss:.5g}", file=sys.stderr, flush=True)

    return report
