"""`repro bench train|sample|all`: the real training step and the real sampler step, timed.

For each network the papers use (``ncsn``, ``ncsnv2``, ``ncsnv2_deeper``, ``ncsnv2_deepest``)
a :class:`~ncsn_core.training.Trainer` is built as the runner builds one (registry network,
loss ``dsm``, Adam, EMA for NCSNv2) on synthetic uint8 data of the right shape, and
``Trainer.train_step`` is timed; the sampler step is ``sample_annealed_langevin`` itself (one
level, several steps) around the score network as the runner calls it
(``samplers.fast_network`` under ``torch.inference_mode``). The reference path (fp32, eager,
no compile, single-tensor optimizer, host data: the official code's arithmetic) and the fast
path (the speed settings, by default ``auto`` for the device) run in the same process,
interleaved (A B A B …), and each prints min/median seconds per step over the repeats,
images/s, achieved TFLOP/s (FLOPs counted with FlopCounterMode, ncsn_core/cost.py), its
fraction of the device's peak, peak memory and the speed-up. ``--size paper`` uses the papers'
image sizes and batches; ``--quick`` small ones (under a minute on a 2-core CPU). Tests never
time anything; the figures in docs/performance.md come from here.
"""

from __future__ import annotations

import datetime
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ncsn_core import cost, registry, schema
from ncsn_core.data import DataSource
from ncsn_core.errors import ReproError
from ncsn_core.noise import NoiseSchedule
from ncsn_core.runner import pick_device
from ncsn_core.samplers import fast_network, sample_annealed_langevin
from ncsn_core.training import FastPath, Trainer

# network -> (shape, params, levels, batch, ema, sampler step_lr); the papers' settings
# (reference.md): NCSN CIFAR-10; NCSNv2 CIFAR-10; Deeper on church (96); Deepest on FFHQ (256).
PAPER: dict[str, tuple[tuple[int, int, int], dict[str, Any], int, int, float]] = {
    "ncsn": ((3, 32, 32), {"ngf": 128}, 10, 128, 0.0),
    "ncsnv2": ((3, 32, 32), {"ngf": 128}, 232, 128, 0.999),
    "ncsnv2_deeper": ((3, 96, 96), {"ngf": 128}, 788, 128, 0.999),
    "ncsnv2_deepest": ((3, 256, 256), {"ngf": 128}, 2311, 32, 0.999),
}
QUICK: dict[str, tuple[tuple[int, int, int], dict[str, Any], int, int, float]] = {
    "ncsn": ((3, 8, 8), {"ngf": 8}, 10, 4, 0.0),
    "ncsnv2": ((3, 8, 8), {"ngf": 8}, 10, 4, 0.999),
    "ncsnv2_deeper": ((3, 16, 16), {"ngf": 4}, 10, 2, 0.999),
    "ncsnv2_deepest": ((3, 16, 16), {"ngf": 4}, 10, 2, 0.999),
}
REFERENCE = {
    "precision": "fp32",
    "channels_last": "off",
    "compile": "off",
    "fused_optimizer": "off",
    "data_on_device": "off",
}
SAMPLE_REFERENCE = {"precision": "fp32", "compile": "off"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu ({torch.get_num_threads()} threads)"


def synthetic_data(shape: tuple[int, ...], n: int, seed: int = 0) -> Any:
    """A DataSource of random uint8 images (flip and dequantisation on, as the papers train)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return DataSource(
        name="synthetic",
        kind="image",
        shape=tuple(shape),
        train=x,
        test=None,
        identity=f"synthetic-{shape}-{n}-{seed}",
        flip=True,
        dequantize="uniform",
    )


def make_trainer(
    network: str,
    params: dict[str, Any],
    shape: tuple[int, ...],
    levels: int,
    batch: int,
    speed: dict[str, str],
    device: torch.device,
    folder: Path,
    *,
    ema: float = 0.0,
    seed: int = 0,
    lr: float = 1e-4,
) -> Any:
    """A Trainer as the runner builds one (registry network, dsm loss, Adam, the train block's
    defaults with ``speed`` over them) on synthetic data of ``shape``."""
    torch.manual_seed(seed)
    sigmas = torch.logspace(0, -2, levels)
    net = registry.lookup("network", network)
    full, errs = net.check_params(params)
    if errs:
        raise ReproError("; ".join(m for _, m in errs))
    model = net.build(**full, shape=tuple(shape), sigmas=sigmas)
    loss_c = registry.lookup("loss", "dsm")
    loss = loss_c.build(**loss_c.check_params({})[0])
    adam = registry.lookup("optimizer", "adam")
    opt = adam.build(**adam.check_params({"lr": lr})[0])
    settings = {p.name: p.default for p in schema.BY_NAME["train"].fields}
    settings.update(batch_size=batch, ema=ema, iterations=10**9, **speed)
    return Trainer(
        model=model,
        loss=loss,
        noise=NoiseSchedule(sigmas).to(device),
        data=synthetic_data(shape, max(4 * batch, 64), seed),
        optimizer_factory=opt,
        settings=settings,
        seed=seed,
        device=device,
        folder=folder,
    )


def _peak_memory(dev: torch.device) -> float:
    """CUDA: bytes allocated at the peak since the last reset; CPU: the process's peak RSS."""
    if dev.type == "cuda":
        return float(torch.cuda.max_memory_allocated(dev))
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _seconds(fn: Callable[[], None], n: int, dev: torch.device) -> float:
    """Wall seconds of ``n`` calls of ``fn``, the device synchronised before and after."""
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(dev)
    return time.perf_counter() - t0


def _interleave(
    steps: dict[str, Callable[[], None]], dev: torch.device, warmup: int, repeats: int, per: int
) -> dict[str, dict[str, float]]:
    """Warm each path up (its peak memory measured there), then time ``per`` steps of each path
    in turn (A B A B …) ``repeats`` times; seconds per step."""
    out: dict[str, dict[str, float]] = {}
    for name, fn in steps.items():
        _reset_peak(dev)
        out[name] = {"warmup_s": _seconds(fn, warmup, dev), "peak_memory": _peak_memory(dev)}
    times: dict[str, list[float]] = {n: [] for n in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            times[name].append(_seconds(fn, per, dev) / per)
    for name, ts in times.items():
        out[name].update(min_s=min(ts), median_s=statistics.median(ts))
    return out


def _row(
    what: str,
    network: str,
    cfg: tuple[Any, ...],
    dev: torch.device,
    speed: dict[str, str],
    sample_speed: dict[str, str],
    timing: tuple[int, int, int],
    peak: float | None,
    folder: Path,
) -> dict[str, Any]:
    shape, params, levels, batch, ema = cfg
    fwd = cost.network_flops(network, params, shape, levels)
    paths: dict[str, Callable[[], None]] = {}
    settings: dict[str, Any] = {}
    if what == "train":
        flops = cost.network_flops(network, params, shape, levels, backward=True) * batch
        for name, sp in (("reference", REFERENCE), ("fast", speed)):
            tr = make_trainer(network, params, shape, levels, batch, sp, dev, folder / name, ema=ema)
            tr.model.train()
            paths[name] = lambda tr=tr: tr.train_step(batch)  # type: ignore[misc]
            settings[name] = tr.fast.describe()
        precision = "bf16" if FastPath(speed, dev).bf16 else "fp32"
    else:
        flops = fwd * batch
        tr = make_trainer(network, params, shape, levels, batch, REFERENCE, dev, folder / "s")
        model = tr.model.eval()
        sig = [float(s) for s in torch.logspace(0, -2, levels)][:1]
        gen = torch.Generator(device=dev).manual_seed(0)
        for name, sp in (("reference", SAMPLE_REFERENCE), ("fast", sample_speed)):
            net = fast_network(model, sp["precision"], sp["compile"], dev)
            x0 = torch.rand(batch, *shape, device=dev)
            per = timing[2]

            def step(net: Any = net, x0: torch.Tensor = x0, per: int = per) -> None:
                def score(x: torch.Tensor, i: int) -> torch.Tensor:
                    return net(x, torch.full((x.shape[0],), i, device=x.device, dtype=torch.long))

                with torch.inference_mode():
                    sample_annealed_langevin(
                        score, x0, sig, step_size=1e-9, steps_per_level=per, generator=gen, name="bench"
                    )

            paths[name] = step
            settings[name] = f"{sp['precision']}, compile {sp['compile']}, inference_mode"
        precision = sample_speed["precision"]
    warm, reps, per = timing
    res = _interleave(paths, dev, warm, reps, 1 if what == "sample" else per)
    if what == "sample":  # one call ran `per` sampler steps
        for r in res.values():
            for k in ("min_s", "median_s"):
                r[k] /= per
    row: dict[str, Any] = {
        "what": what,
        "network": network,
        "shape": list(shape),
        "levels": levels,
        "batch": batch,
        "flops_per_step": flops,
        "settings": settings,
    }
    for name, r in res.items():
        tf = flops / r["min_s"] / 1e12
        pk = (
            peak
            if peak is not None
            else cost.peak_tflops(device_name(dev), "fp32" if name == "reference" else precision)
        )
        row[name] = {
            **{k: round(v, 6) for k, v in r.items()},
            "images_per_s": batch / r["median_s"],
            "tflops": tf,
            "peak_fraction": None if pk is None else tf / pk,
        }
    row["speedup"] = res["reference"]["median_s"] / res["fast"]["median_s"]
    return row


def _fmt_row(r: dict[str, Any], dev: torch.device) -> Iterator[str]:
    yield (
        f"{r['what']:6s} {r['network']:15s} {'x'.join(map(str, r['shape']))} L={r['levels']} batch {r['batch']}"
        f"  {cost.fmt_flops(r['flops_per_step'])}/step"
    )
    for name in ("reference", "fast"):
        p = r[name]
        frac = "peak unknown" if p["peak_fraction"] is None else f"{100 * p['peak_fraction']:.1f}% of peak"
        mem = p["peak_memory"] / 2**20
        memlabel = "max allocated" if dev.type == "cuda" else "process peak RSS"
        yield (
            f"    {name:9s} min {p['min_s'] * 1e3:9.2f} ms  median {p['median_s'] * 1e3:9.2f} ms  "
            f"{p['images_per_s']:9.1f} img/s  {p['tflops']:.4f} TFLOP/s ({frac})  "
            f"{memlabel} {mem:.0f} MiB  warm-up {p['warmup_s']:.2f} s  [{r['settings'][name]}]"
        )
    yield f"    speed-up {r['speedup']:.2f}x (median, fast over reference)"


def run_bench(
    what: str = "all",
    device: str | None = None,
    size: str = "quick",
    *,
    networks: tuple[str, ...] = (),
    speed: dict[str, str] | None = None,
    sample_speed: dict[str, str] | None = None,
    peak: float | None = None,
    repeats: int | None = None,
    record: bool = True,
    result: dict[str, Any] | None = None,
) -> Iterator[str]:
    """Yield the report's lines; ``result`` (a dict) receives the JSON object."""
    if what not in ("train", "sample", "all"):
        raise ReproError(f"unknown bench '{what}': use train, sample, all or cli")
    if size not in ("quick", "paper"):
        raise ReproError(f"unknown bench size '{size}': use quick or paper")
    dev = pick_device(device)
    table = PAPER if size == "paper" else QUICK
    nets = networks or tuple(table)
    for n in nets:
        if n not in table:
            raise ReproError(f"unknown bench network '{n}': use one of {', '.join(table)}")
    speed = {k: "auto" for k in REFERENCE} | (speed or {})
    sample_speed = {"precision": "fp32", "compile": "off"} | (sample_speed or {})
    timing = (2, repeats or 5, 3) if size == "paper" else (1, repeats or 3, 1)
    if dev.type == "cuda":
        timing = (5, repeats or 10, 10) if size == "paper" else (3, repeats or 5, 5)
    name = device_name(dev)
    out: dict[str, Any] = {
        "device": name,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "size": size,
        "peak_tflops": peak,
        "rows": [],
    }
    yield f"repro bench {what} --size {size} on {name}, torch {torch.__version__}, {out['date']}"
    if peak is None and cost.peak_tflops(name, "fp32") is None:
        yield "    (peak unknown: pass --peak TFLOP/s for the fraction of peak)"
    with tempfile.TemporaryDirectory(prefix="repro-bench-") as tmp:
        for n in nets:
            for w in ("train", "sample") if what == "all" else (what,):
                row = _row(w, n, table[n], dev, speed, sample_speed, timing, peak, Path(tmp) / n / w)
                out["rows"].append(row)
                yield from _fmt_row(row, dev)
                sys.stdout.flush()
    if record:
        path = cost.record_bench(out)
        yield f"recorded in {path} (repro compile projects wall time from it)"
    if result is not None:
        result.update(out)
