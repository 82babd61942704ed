"""What a run costs: FLOPs per training step and per sample, counted (not estimated) with
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no arithmetic),
totals for the run, ideal hours at a device's peak, and a projection from the last
``repro bench`` on that device (docs/performance.md).

A network's FLOPs are linear in the batch (convolutions and matrix products per image), so one
image is counted and scaled. Training counts forward + backward of the network on a batch;
sampling counts one forward per network evaluation (NFE).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import torch

from ncsn_core import io as atomic
from ncsn_core import registry
from ncsn_core.values import to_json

# Dense peak TFLOP/s of known devices (bf16 / fp32 without sparsity).
PEAKS: dict[str, dict[str, float]] = {
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
}
IDEAL_DEVICE = ("H100", "bf16")


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The device's dense peak for ``precision`` (bf16 or fp32), or None when unknown."""
    for k, v in PEAKS.items():
        if k.lower() in device_name.lower():
            return v.get(precision)
    return None


@functools.lru_cache(maxsize=64)
def _count(name: str, params_json: str, shape: tuple[int, ...], levels: int, backward: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    comp = registry.lookup("network", name)
    full, errors = comp.check_params(json.loads(params_json))
    if errors:
        raise ValueError("; ".join(m for _, m in errors))
    with torch.device("meta"):
        model = comp.build(**full, shape=tuple(shape), sigmas=torch.linspace(1.0, 0.01, levels))
        x = torch.zeros(1, *shape, requires_grad=backward)
        idx = torch.zeros(1, dtype=torch.long)
        counter = FlopCounterMode(display=False)
        with counter:
            out = model(x, idx)
            if backward:
                out.sum().backward()
    return int(counter.get_total_flops())


def network_flops(
    name: str, params: dict[str, Any], shape: tuple[int, ...], levels: int, *, backward: bool = False
) -> int:
    """FLOPs per image of one forward (``backward``: forward + backward) of the network."""
    pj = json.dumps({k: to_json(v) for k, v in params.items()}, sort_keys=True)
    return _count(name, pj, tuple(int(s) for s in shape), int(levels), backward)


# ----------------------------------------------------------------------------- bench records
def bench_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "repro" / "bench.json"


def load_bench() -> dict[str, Any]:
    try:
        return json.loads(bench_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record_bench(result: dict[str, Any]) -> Path:
    """Merge one ``repro bench`` result into the cache: per device, per network and path, the
    latest images/s of a training step and network evaluations/s of a sampler step."""
    store = load_bench()
    dev = store.setdefault(result["device"], {})
    for row in result["rows"]:
        for path in ("reference", "fast"):
            r = row.get(path)
            if r:
                dev.setdefault(row["network"], {}).setdefault(row["what"], {})[path] = {
                    "per_s": r["images_per_s"],
                    "batch": row["batch"],
                    "shape": row["shape"],
                    "settings": row["settings"][path],
                    "date": result["date"],
                }
    path = bench_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(store, indent=2, sort_keys=True))
    return path


# ----------------------------------------------------------------------------- a run's cost
def run_cost(spec: Any) -> dict[str, Any]:
    """FLOPs per training step / per sample, totals, ideal hours at H100 bf16 peak, and the
    projected wall time from recorded benches (per device) for one run spec."""
    shape = tuple(registry.lookup("data", spec.data.name).facts.shape(spec.data.kwargs()))
    levels = int(spec.noise.get("levels", 1))
    out: dict[str, Any] = {"network": spec.network.name, "shape": list(shape)}
    params = spec.network.kwargs()
    fwd = network_flops(spec.network.name, params, shape, levels)
    out["fwd_flops_per_image"] = fwd
    total = 0.0
    if spec.trains and spec.weights() is None:
        t = spec.train.kwargs()
        fb = network_flops(spec.network.name, params, shape, levels, backward=True)
        out["train_step_flops"] = fb * t["batch_size"]
        out["train_flops"] = float(fb) * t["batch_size"] * t["iterations"]
        out["train_images"] = t["batch_size"] * t["iterations"]
        total += out["train_flops"]
    if spec.sample is not None and spec.stages:
        nfe = sum(registry.lookup("stage", st.name).build(**st.kwargs()).nfe(levels) for st in spec.stages)
        n = spec.sample.get("samples")
        if spec.evaluate is not None:
            n = max(n, spec.evaluate.get("samples"))
        out["nfe_per_sample"] = nfe
        out["sample_flops_per_sample"] = fwd * nfe
        out["samples"] = n
        out["sample_flops"] = float(fwd) * nfe * n
        out["sample_evals"] = nfe * n
        total += out["sample_flops"]
    out["total_flops"] = total
    peak = PEAKS[IDEAL_DEVICE[0]][IDEAL_DEVICE[1]] * 1e12
    out["ideal_hours"] = total / peak / 3600
    out["projected"] = _projection(spec.network.name, out)
    return out


def _projection(network: str, cost: dict[str, Any]) -> dict[str, float]:
    """Hours per device from its last recorded bench of this network (fast path), scaled by
    FLOPs per image when the bench ran another image size."""
    proj: dict[str, float] = {}
    for device, nets in load_bench().items():
        rec = nets.get(network)
        if not rec:
            continue
        hours = 0.0
        ok = True
        for what, units_key in (("train", "train_images"), ("sample", "sample_evals")):
            if units_key not in cost:
                continue
            r = (rec.get(what) or {}).get("fast") or (rec.get(what) or {}).get("reference")
            if not r or not r["per_s"]:
                ok = False
                break
            scale = 1.0
            if list(r["shape"]) != cost["shape"]:  # another size: scale by the per-image FLOPs
                bench_fwd = network_flops(network, {}, tuple(r["shape"]), 10)
                scale = cost["fwd_flops_per_image"] / max(bench_fwd, 1)
            hours += cost[units_key] * scale / r["per_s"] / 3600
        if ok:
            proj[device] = hours
    return proj


def fmt_flops(f: float) -> str:
    for unit, v in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if f >= v:
            return f"{f / v:.3g} {unit}"
    return f"{f:.3g} FLOP"


def sweep_note(costs: list[dict[str, Any]]) -> str:
    """The sum over a sweep's runs."""
    total = sum(c["total_flops"] for c in costs)
    hours = sum(c["ideal_hours"] for c in costs)
    devs = set.intersection(*(set(c["projected"]) for c in costs)) if costs else set()
    proj = "".join(f"; projected {sum(c['projected'][d] for c in costs):.3g} h on {d}" for d in sorted(devs))
    return f"total {fmt_flops(total)} = {hours:.3g} ideal H100-hours (bf16 peak){proj}"


def cost_note(spec: Any, c: dict[str, Any] | None = None) -> str:
    """One line for `repro compile`."""
    c = c if c is not None else run_cost(spec)
    parts = [f"{fmt_flops(c['fwd_flops_per_image'])}/image forward"]
    if "train_step_flops" in c:
        parts.append(f"train {fmt_flops(c['train_step_flops'])}/step, {fmt_flops(c['train_flops'])} in all")
    if "sample_flops" in c:
        parts.append(
            f"sample {fmt_flops(c['sample_flops_per_sample'])}/sample ({c['nfe_per_sample']} NFE), "
            f"{fmt_flops(c['sample_flops'])} for {c['samples']:,}"
        )
    parts.append(f"total {fmt_flops(c['total_flops'])} = {c['ideal_hours']:.3g} ideal H100-hours (bf16 peak)")
    for dev, h in c["projected"].items():
        parts.append(f"projected {h:.3g} h on {dev} (last repro bench)")
    return "; ".join(parts)
