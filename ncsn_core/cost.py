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
from ncsn_core.errors import ReproError
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
        nfe = _stage_nfe(spec, levels)
        stages = {st["stage"]: st for st in spec_stages(spec)}
        n = spec.sample.get("samples")
        if spec.evaluate is not None:
            n = max(n, spec.evaluate.get("samples"))
        out["nfe_per_sample"] = nfe
        out["sample_flops_per_sample"] = fwd * nfe
        out["samples"] = n
        # the sample stage's and the evaluation's own samples
        out["sample_flops"] = sum(stages[k]["flops"] for k in ("sample", "evalsamples") if k in stages)
        out["sample_evals"] = sum(stages[k]["units"] for k in ("sample", "evalsamples") if k in stages)
        out["samples"] = out["sample_evals"] // nfe if nfe else n
        total += out["sample_flops"]
        if "select" in stages:
            out["select_flops"] = stages["select"]["flops"]
            out["select_evals"] = stages["select"]["units"]
            out["select_detail"] = stages["select"]["detail"]
            total += out["select_flops"]
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
        for what, units_key in (
            ("train", "train_images"),
            ("sample", "sample_evals"),
            ("sample", "select_evals"),
        ):
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
    if "select_flops" in c:
        parts.append(f"select {fmt_flops(c['select_flops'])} ({c['select_detail']})")
    parts.append(f"total {fmt_flops(c['total_flops'])} = {c['ideal_hours']:.3g} ideal H100-hours (bf16 peak)")
    for dev, h in c["projected"].items():
        parts.append(f"projected {h:.3g} h on {dev} (last repro bench)")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- a file's cost
def _stage_nfe(spec: Any, levels: int) -> int:
    return sum(registry.lookup("stage", st.name).build(**st.kwargs()).nfe(levels) for st in spec.stages)


def _candidates(spec: Any) -> int:
    """How many checkpoints the select stage scores: those a finished training keeps that the
    select block's from/to/every admit (a released checkpoint: one)."""
    if spec.weights() is not None or spec.train is None:
        return 1
    t = spec.train.kwargs()
    sel = spec.select.kwargs()
    lo, hi, every = sel.get("from"), sel.get("to"), sel.get("every")
    # checkpoint.retained_steps (a sibling layer, not imported): the keep_checkpoints newest of
    # those written, and every multiple of keep_every
    it, ce, keep, ke = t["iterations"], t["checkpoint_every"], t["keep_checkpoints"], t.get("keep_every")
    written = sorted({*range(ce, it + 1, ce), it} - {0})
    steps = sorted(set(written[-keep:]) | {s for s in written if ke and s % int(ke) == 0})
    return sum(
        1
        for s in steps
        if (lo is None or s >= lo) and (hi is None or s <= hi) and (every is None or s % every == 0)
    )


def spec_stages(spec: Any) -> list[dict[str, Any]]:
    """Every stage ``repro run`` computes for one spec, with its key (kind, hash, seed: what the
    runs folder finds it by), the network evaluations it makes and their FLOPs: training
    (forward + backward per example), the select stage (candidates × select.samples × NFE), the
    sample stage (sample.samples × NFE) and the evaluation's own samples (evaluate.samples × NFE,
    drawn only when the sample stage keeps fewer). The metrics' networks (Inception, the domain
    classifier) are not counted."""
    from ncsn_core.spec import digest

    if spec.network is None or spec.data is None:
        return []
    shape = tuple(registry.lookup("data", spec.data.name).facts.shape(spec.data.kwargs()))
    levels = int(spec.noise.get("levels", 1))
    params = spec.network.kwargs()
    fwd = network_flops(spec.network.name, params, shape, levels)
    out: list[dict[str, Any]] = []
    base = {
        "experiment": spec.experiment,
        "network": spec.network.name,
        "shape": list(shape),
        "seed": spec.seed,
    }
    trains = spec.trains and spec.weights() is None
    if trains:
        t = spec.train.kwargs()
        fb = network_flops(spec.network.name, params, shape, levels, backward=True)
        n = t["batch_size"] * t["iterations"]
        out.append(
            {**base, "stage": "train", "hash": spec.train_hash(), "units": n, "unit": "images",
             "flops": float(fb) * n, "detail": f"{t['iterations']:,} steps × batch {t['batch_size']}"}
        )  # fmt: skip
    if spec.sample is None or not spec.stages:
        return out
    nfe = _stage_nfe(spec, levels)
    if spec.select is not None and (trains or spec.weights() is not None):
        k, n = _candidates(spec), int(spec.select.get("samples"))
        out.append(
            {**base, "stage": "select", "hash": spec.select_hash(), "units": k * n * nfe, "unit": "evals",
             "flops": float(fwd) * k * n * nfe, "detail": f"{k} candidates × {n:,} samples × {nfe} NFE"}
        )  # fmt: skip
    n = int(spec.sample.get("samples"))
    out.append(
        {**base, "stage": "sample", "hash": spec.sample_hash(), "units": n * nfe, "unit": "evals",
         "flops": float(fwd) * n * nfe, "detail": f"{n:,} samples × {nfe} NFE"}
    )  # fmt: skip
    if spec.evaluate is not None and int(spec.evaluate.get("samples")) > n:
        m = int(spec.evaluate.get("samples"))
        out.append(
            {**base, "stage": "evalsamples", "hash": digest([spec.sample_hash(), m]), "units": m * nfe,
             "unit": "evals", "flops": float(fwd) * m * nfe, "detail": f"{m:,} evaluation samples × {nfe} NFE"}
        )  # fmt: skip
    return out


def _reused(runs_dir: Path, st: dict[str, Any]) -> str | None:
    """The complete stage folder (or evaluation-samples file) of the runs folder that holds
    this stage already, or None."""
    from ncsn_core import layout

    if st["stage"] == "evalsamples":
        for p in layout.eval_samples_anywhere(runs_dir, st["seed"], st["hash"]):
            if p.is_file():
                return str(p)
        return None
    kind = {"train": layout.TRAIN, "select": layout.SELECT, "sample": layout.SAMPLE}[st["stage"]]
    for d in layout.stage_dirs_anywhere(runs_dir, st["seed"], kind, st["hash"]):
        if layout.is_complete_stage(d, st["hash"]):
            return str(d)
    return None


def file_cost(specs: list[Any], runs_dir: str | Path | None = None) -> dict[str, Any]:
    """The cost of running ``specs`` (a file, a sweep): every stage ``repro run`` would compute,
    counted once per (stage, hash, seed) however many experiments share it, those already
    complete in ``runs_dir`` marked reused (and not in ``to_compute_flops``). Per stage: which
    experiments share it, its FLOPs, ideal H100-hours and projected hours per benched device."""
    stages: dict[tuple[str, str, int], dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            rows = spec_stages(spec)
        except (ReproError, ValueError, RuntimeError, KeyError) as e:
            errors[spec.experiment] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            continue
        for st in rows:
            key = (st["stage"], st["hash"], st["seed"])
            if key in stages:
                stages[key]["experiments"].append(st["experiment"])
                continue
            st = {**st, "experiments": [st.pop("experiment")]}
            st["reused"] = (
                _reused(Path(runs_dir), st) if runs_dir is not None and Path(runs_dir).is_dir() else None
            )
            stages[key] = st
    peak = PEAKS[IDEAL_DEVICE[0]][IDEAL_DEVICE[1]] * 1e12
    bench = load_bench()
    rows = list(stages.values())
    for st in rows:
        st["ideal_hours"] = st["flops"] / peak / 3600
        st["projected"] = _stage_projection(bench, st)
    todo = [st for st in rows if not st["reused"]]
    devs = set.intersection(*(set(st["projected"]) for st in todo)) if todo else set()
    return {
        "stages": rows,
        "total_flops": sum(st["flops"] for st in rows),
        "to_compute_flops": sum(st["flops"] for st in todo),
        "ideal_hours": sum(st["ideal_hours"] for st in todo),
        "projected": {d: sum(st["projected"][d] for st in todo) for d in sorted(devs)},
        "errors": errors,
    }


def _stage_projection(bench: dict[str, Any], st: dict[str, Any]) -> dict[str, float]:
    what = "train" if st["stage"] == "train" else "sample"
    proj: dict[str, float] = {}
    for device, nets in bench.items():
        r = (nets.get(st["network"]) or {}).get(what) or {}
        r = r.get("fast") or r.get("reference")
        if not r or not r.get("per_s"):
            continue
        scale = 1.0
        if list(r["shape"]) != st["shape"]:
            bench_fwd = network_flops(st["network"], {}, tuple(r["shape"]), 10)
            own = st["flops"] / max(st["units"], 1) / (3 if what == "train" else 1)
            scale = own / max(bench_fwd, 1)
        proj[device] = st["units"] * scale / r["per_s"] / 3600
    return proj


def file_cost_lines(fc: dict[str, Any]) -> list[str]:
    """`repro compile`'s summary of :func:`file_cost`: one line per stage, then the total."""
    lines = []
    for st in fc["stages"]:
        who = ", ".join(st["experiments"])
        reuse = f"; reused: {st['reused']}" if st["reused"] else ""
        lines.append(
            f"#   {st['stage']} {st['hash']} (seed {st['seed']}; {who}): {fmt_flops(st['flops'])}, "
            f"{st['detail']}{reuse}"
        )
    for exp, why in fc["errors"].items():
        lines.append(f"#   {exp}: cost unknown ({why})")
    n = sum(1 for st in fc["stages"] if st["reused"])
    proj = "".join(f"; projected {h:.3g} h on {d}" for d, h in fc["projected"].items())
    lines.append(
        f"# to compute: {fmt_flops(fc['to_compute_flops'])} of {fmt_flops(fc['total_flops'])} "
        f"({len(fc['stages'])} stages, {n} reused) = {fc['ideal_hours']:.3g} ideal H100-hours (bf16 peak){proj}"
    )
    return lines
