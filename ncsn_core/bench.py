"""`repro bench`: speed figures (training steps/s, images/s; sampler network evaluations/s).

Benchmarks print what they measure; tests never time anything. ``size = tiny`` uses a
small network on 8×8 digits-like data (CI-sized); ``cifar10`` the paper's NCSN network
(30.1M parameters) on 3×32×32 random inputs, which needs a GPU to be meaningful.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from ncsn_core import registry


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bench(what: str = "all", device: str | None = None, size: str = "tiny") -> Iterator[str]:
    from ncsn_core.runner import pick_device

    dev = pick_device(device)
    if size == "tiny":
        shape, ngf, batch, steps = (1, 8, 8), 16, 64, 20
    elif size == "cifar10":
        shape, ngf, batch, steps = (3, 32, 32), 128, 128, 20
    else:
        from ncsn_core.errors import ReproError

        raise ReproError(f"unknown bench size '{size}': use tiny or cifar10")
    L = 10
    sigmas = torch.logspace(0, -2, L)
    net_c = registry.lookup("network", "ncsn")
    params, _ = net_c.check_params({"ngf": ngf})
    model = net_c.builder(**params, shape=shape, sigmas=sigmas).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    yield f"device {dev}  network ncsn ngf={ngf} shape={shape}  {n_params:,} parameters"
    from ncsn_core.noise import NoiseSchedule

    noise = NoiseSchedule(sigmas).to(dev)
    if what in ("train", "all"):
        loss_c = registry.lookup("loss", "dsm")
        lp, _ = loss_c.check_params({})
        loss = loss_c.builder(**lp)
        adam = registry.lookup("optimizer", "adam")
        opt = adam.builder(**adam.check_params({})[0])(model.parameters())
        gen = torch.Generator(device=dev).manual_seed(0)
        x = torch.rand(batch, *shape, device=dev)
        for i in range(steps + 3):
            if i == 3:  # warm-up done
                _sync(dev)
                t0 = time.perf_counter()
            out = loss(model, x, noise, gen)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
        _sync(dev)
        dt = time.perf_counter() - t0
        yield f"train: {steps / dt:.2f} steps/s, {steps * batch / dt:.1f} images/s (batch {batch})"
    if what in ("sample", "all"):
        model.eval()
        x = torch.rand(batch, *shape, device=dev)
        idx = torch.zeros(batch, dtype=torch.long, device=dev)
        with torch.no_grad():
            for i in range(steps + 3):
                if i == 3:
                    _sync(dev)
                    t0 = time.perf_counter()
                x = x + 1e-5 * model(x, idx)
        _sync(dev)
        dt = time.perf_counter() - t0
        yield f"sample: {steps * batch / dt:.1f} network evaluations/s (batch {batch})"
