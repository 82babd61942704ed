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

import copy
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
from ncsn_core import layout, microbatch
from ncsn_core.errors import TrainingError
from ncsn_core.io import WriteError
from ncsn_core.trainlog import TrainLogger


class EMA:
    """Exponential moving average of parameters: θ̄ ← μ θ̄ + (1 − μ) θ (Technique 5).

    The update is two ``torch._foreach`` calls over the floating-point tensors (a copy for the
    integer buffers) instead of a Python loop of per-tensor kernels: the same elementwise
    arithmetic, bit-identical on the CPU (tests/test_perf.py). The tensor lists are bound on the
    first update; the model's tensors are updated in place from then on (``load_state_dict``
    copies in place), so they stay valid.
    """

    def __init__(self, model: torch.nn.Module, rate: float) -> None:
        self.rate = rate
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._bound: tuple[
            Any, list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]
        ]
        self._bound = (None, [], [], [])

    def _bind(self, model: torch.nn.Module) -> None:
        sf, mf, other = [], [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                sf.append(self.shadow[k])
                mf.append(v.detach())
            else:
                other.append((self.shadow[k], v))
        self._bound = (model, sf, mf, other)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        if self._bound[0] is not model:
            self._bind(model)
        _, sf, mf, other = self._bound
        if sf:
            torch._foreach_mul_(sf, self.rate)
            torch._foreach_add_(sf, mf, alpha=1.0 - self.rate)
        for s, v in other:
            s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


# ----------------------------------------------------------------------------- speed settings
# How fast a step runs, not what it computes (schema.TRAIN_SPEED; in no hash). "auto" is the
# fast path on CUDA and the reference path (fp32, eager, single-tensor optimizer, data on the
# host: the official code's arithmetic, bit-identical to earlier versions) on the CPU.
def _switch(settings: dict[str, Any], key: str, device: torch.device) -> bool:
    v = settings.get(key, "auto")
    return device.type == "cuda" if v == "auto" else v == "on"


class FastPath:
    """The resolved speed settings of one training run (or one sampler: ``for_sampling``)."""

    def __init__(self, settings: dict[str, Any], device: torch.device) -> None:
        prec = settings.get("precision", "auto")
        self.device = device
        self.bf16 = prec == "bf16" or (prec == "auto" and device.type == "cuda")
        self.channels_last = _switch(settings, "channels_last", device)
        self.compile = _switch(settings, "compile", device)
        self.fused = _switch(settings, "fused_optimizer", device)
        # auto: on with CUDA; "on" forces it on any device (on the CPU the resident path runs as
        # it would on a GPU, so its code is exercised by CPU tests)
        on = settings.get("data_on_device", "auto")
        self.data_on_device = (device.type == "cuda" and on != "off") or on == "on"
        self.force_data_on_device = settings.get("data_on_device", "auto") == "on"

    @property
    def reference(self) -> bool:
        return not (self.bf16 or self.channels_last or self.compile or self.fused)

    def describe(self) -> str:
        on = [n for n in ("bf16", "channels_last", "compile", "fused") if getattr(self, n)]
        return "+".join(on) if on else "fp32 eager (reference)"

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Convert the model's layout in place (before the optimizer and EMA bind its tensors)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def forward_module(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the loss calls: the model itself on the reference path, else a wrapper that
        casts the input's layout, runs the network under bf16 autocast and returns float32."""
        if not (self.bf16 or self.channels_last or self.compile):
            return model
        net: torch.nn.Module = _Fast(model, self.bf16, self.channels_last, self.device.type)
        if self.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        return net

    def configure_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """Fused kernels (CUDA, or a CPU build that has them) or foreach lists; called again after
        a checkpoint's optimizer state is loaded (its param groups carry the saver's flags)."""
        for g in opt.param_groups:
            if "fused" in g:
                g["fused"] = None
            if "foreach" in g:
                g["foreach"] = None
            if not self.fused:
                continue
            if "fused" in g and _fused_ok(opt, self.device):
                g["fused"] = True
            elif "foreach" in g:
                g["foreach"] = True


def _fused_ok(opt: torch.optim.Optimizer, device: torch.device) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return isinstance(opt, torch.optim.Adam | torch.optim.AdamW | torch.optim.SGD) and (
        device.type in _get_fused_kernels_supported_devices()
    )


class _Fast(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, bf16: bool, channels_last: bool, device_type: str) -> None:
        super().__init__()
        self.model, self.bf16, self.cl, self.dt = model, bf16, channels_last, device_type

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.cl and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.dt, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(x, idx)
        return out.float().contiguous() if self.bf16 or self.cl else out


class DeviceData:
    """The training set where the steps run: the uint8 tensor moved to the GPU once, batches
    gathered, flipped and dequantised there from a device generator (checkpointed with the
    trainer); or, when it does not fit, batches built on the host into pinned memory and copied
    without blocking. On the CPU it is the data source itself (the reference path), unless
    data_on_device = on forces the resident path there too."""

    def __init__(self, data: Any, fast: FastPath, device: torch.device, seed: int) -> None:
        self.device = device
        self.resident: Any = None
        self.gen: torch.Generator | None = None
        self.pinned = False
        if fast.data_on_device:  # off the GPU only when forced (data_on_device = on)
            need = data.train.numel() * data.train.element_size()
            if fast.force_data_on_device or need < torch.cuda.mem_get_info(device)[0] // 4:
                self.resident = copy.copy(data)
                object.__setattr__(self.resident, "train", data.train.to(device))
                self.gen = torch.Generator(device=device).manual_seed(seed)
                return
        self.pinned = device.type == "cuda"

    def batch(self, data: Any, idx: torch.Tensor, gen_host: torch.Generator) -> torch.Tensor:
        if self.resident is not None:
            return self.resident.batch(idx.to(self.device, non_blocking=True), self.gen)
        x = data.batch(idx, gen_host)
        if self.pinned:
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)


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
        self.fast = FastPath(settings, device)
        self.model = self.fast.prepare_model(model.to(device))
        self.net = self.fast.forward_module(self.model)  # what the loss calls (speed settings)
        self.loss = loss
        self.noise = noise
        self.data = data
        self.opt = optimizer_factory(self.model.parameters())
        self.fast.configure_optimizer(self.opt)
        self.s = settings
        self.device = device
        self.folder = folder
        self.ckdir = layout.checkpoints_dir(folder)
        self.ema = EMA(self.model, settings["ema"]) if settings["ema"] > 0 else None
        self.order = DataOrder(len(data), seed * 7919 + 1)
        # Separate streams: data augmentation (CPU) and noise/projections (device).
        self.gen_data = torch.Generator().manual_seed(seed * 7919 + 2)
        self.gen_noise = torch.Generator(device=device).manual_seed(seed * 7919 + 3)
        self.placed = DeviceData(data, self.fast, device, seed * 7919 + 4)
        self.step = 0
        self.progress = progress
        self.grad_norm: torch.Tensor | None = None  # the last step's (with grad_clip), on the device
        # ddp: this rank's rows of each global batch (None: one process, the whole batch)
        self.part = dist.part(settings["batch_size"])
        # train.micro_batch (None: the whole batch); "auto" on CUDA: settings' micro_batch_fit
        self.micro = microbatch.resolve(
            settings.get("micro_batch"), settings["batch_size"], device, settings.get("micro_batch_fit")
        )
        if self.part is not None or self.micro is not None:
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
            return self.loss(self.net, x, self.noise, self.gen_noise)
        return self._loss_part(x, self.part)

    def _loss_part(self, x: torch.Tensor, part: slice) -> Any:
        return self.loss(self.net, x, self.noise, self.gen_noise, part=part)

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
            **({} if self.placed.gen is None else {"gen_data_device": _gen_state(self.placed.gen)}),
        }

    def load(self, st: dict[str, Any]) -> None:
        self.step = int(st["step"])
        self.model.load_state_dict(st["model"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["optimizer"])
        self.fast.configure_optimizer(self.opt)
        self.noise.load_state_dict(st["noise"])
        self.order.load_state_dict(st["order"])
        self.gen_data.set_state(st["gen_data"])
        self.gen_noise.set_state(
            st["gen_noise"].to("cpu") if hasattr(st["gen_noise"], "to") else st["gen_noise"]
        )
        torch.set_rng_state(st["torch_rng"])
        if self.placed.gen is not None and st.get("gen_data_device") is not None:
            self.placed.gen.set_state(st["gen_data_device"].to("cpu"))

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
        ckpt.prune(self.ckdir, self.s["keep_checkpoints"], self.s.get("keep_every"))
        return path

    # ---- one step (what `repro bench train` times)
    def train_step(self, bs: int) -> Any:
        """One optimizer step: batch, the noise's update, loss, backward, clipping, optimizer,
        EMA. No host synchronisation (the loop syncs at log intervals)."""
        idx = self.order.next(bs)
        x = self.placed.batch(self.data, idx, self.gen_data)
        self.noise.update(x)
        if self.micro is None:
            out = self._loss(x)
            self.opt.zero_grad(set_to_none=True)
            out.loss.backward()
        else:  # train.micro_batch: the rank's rows in slices, gradients accumulated
            self.opt.zero_grad(set_to_none=True)
            rows = self.part or slice(0, x.shape[0])
            out = microbatch.loss_backward(self._loss_part, x, self.gen_noise, rows, self.micro)
        self._average_gradients()  # ddp
        if self.s["grad_clip"] > 0:  # the norm before clipping, kept on the device for the log
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s["grad_clip"])
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return out

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
        board = TrainLogger(self.folder, self.s, self.step) if dist.is_main() else None
        try:
            self.model.train()
            while self.step < iters:
                out = self.train_step(bs)
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
                    if board is not None and board.active:  # at the log interval's sync only
                        board.log(
                            self.step,
                            loss_v,
                            per,
                            self._grad_norm_now(),
                            self.opt.param_groups[0]["lr"],
                            it_s,
                        )
                    if self.progress is not None and dist.is_main():
                        self.progress(self.step, iters, loss_v)
                    acc.zero_()
                    acc_lv.zero_()
                    cnt_lv.zero_()
                    n_acc = 0
                    t_last, step_last = now, self.step
                if board is not None and board.active and self._preview_due(at_ck):
                    board.images(
                        "samples/ema" if self.ema is not None else "samples/model", self.preview(), self.step
                    )
                if at_ck:
                    self.save()
        finally:
            logf.close()
            if board is not None:
                board.close()
        return {"iterations": self.step, "final_loss": last_loss}

    # ---- previews (train.preview_samples / preview_every; logging only)
    def _preview_due(self, at_ck: bool) -> bool:
        n, every = self.s.get("preview_samples", 0), self.s.get("preview_every", 0)
        if n <= 0 or len(getattr(self.data, "shape", ())) != 3 or not getattr(self.noise, "perturbs", False):
            return False
        return at_ck if every <= 0 else self.step % every == 0 or self.step == self.s["iterations"]

    @torch.no_grad()
    def preview(self) -> torch.Tensor:
        """``preview_samples`` images from the EMA weights (the model's without EMA), clamped
        to [0, 1]: NCSN Alg. 1 with T = 1 and ε = σ_L² (so α_i = σ_i², a step that moves a
        σ_i-noisy point to the data as far as one step can), then the denoising step
        x + σ_L²·s(x, σ_L) (NCSNv2). With ANSN's noise Σ_i = σ_i²Ĉ the steps are Ĉ-preconditioned
        (α_i/2·Ĉs + √α_i·Ĉ^{1/2}z, and x + σ_L²·Ĉs: an isotropic step would diverge along Ĉ's
        thin directions). Not the experiment's sampler (the sample stage is what is evaluated);
        drawn from its own generator, seed 0, so previews at different steps start from the same
        noise and the training's streams are untouched."""
        from torch.func import functional_call

        from .samplers import sample_annealed_langevin

        weights = self.ema.state_dict() if self.ema is not None else None
        was_training = self.model.training
        self.model.eval()
        # ANSN: the preconditioned score Ĉs from the output (u itself with output = preconditioned)
        to_step = getattr(self.noise, "preconditioned_of", None)
        noise_transform = getattr(self.noise, "precondition_sqrt", None)

        def step_dir(x: torch.Tensor, i: int) -> torch.Tensor:
            idx = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            out = self.model(x, idx) if weights is None else functional_call(self.model, weights, (x, idx))
            return out if to_step is None else to_step(out, i)

        try:
            gen = torch.Generator(device=self.device).manual_seed(0)
            sigmas = [float(s) for s in self.noise.sigmas.detach().cpu().tolist()]
            shape = (self.s["preview_samples"], *self.data.shape)
            x = torch.rand(shape, generator=gen, device=self.device)
            x = sample_annealed_langevin(
                step_dir,
                x,
                sigmas,
                step_size=sigmas[-1] ** 2,
                steps_per_level=1,
                generator=gen,
                noise_transform=noise_transform,
                name="preview",
            )
            x = x + sigmas[-1] ** 2 * step_dir(x, len(sigmas) - 1)
        finally:
            self.model.train(was_training)
        return x.clamp(0.0, 1.0).float().cpu()

    def _grad_norm_now(self) -> float:
        """The last step's gradient norm (before clipping): called at log intervals only."""
        if self.grad_norm is not None:
            return float(self.grad_norm)
        norms = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def plain_progress(prefix: str) -> Callable[[int, int, float | None], None]:
    """The training progress line with it/s and ETA (:class:`ncsn_core.trainlog.ProgressLine`)."""
    from ncsn_core.trainlog import ProgressLine

    return ProgressLine(prefix)
