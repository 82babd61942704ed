"""`repro doctor`: is this machine's fast path right and as fast as it should be? (issue 22.4,
docs/performance.md). Five parts, each guarded (a failure is recorded, the next part still
runs) and time-boxed:

1. ``cuda_tests`` — the CUDA tests of the suite (tests/test_perf.py's CUDA tests and
   tests/test_cuda_shaped.py), in a subprocess with a timeout;
2. ``bench`` — ``repro bench`` (paper sizes on CUDA) of ncsn / ncsnv2 / deeper / deepest: the
   fast path (``auto``) against the fp32-eager reference, with and without ``torch.compile``;
3. ``graphs`` — the sampler with ``sample.compile = graphs`` against eager, the same draws:
   equal within a tolerance (on the CPU, which has no CUDA graphs, eager against eager);
4. ``bf16_fid`` — a short digits run (scikit-learn's, no download) sampled with fp32 and with
   bf16 from the same seeds: FID(domain) of both, and the difference;
5. ``plan_memory`` — the plan's predicted peak (ncsn_core.plan, fake tensors) against the real
   step's ``torch.cuda.max_memory_allocated`` (on the CPU: the same tracker on real tensors):
   the plan's error.

On CUDA the parts fit in about 8 minutes on one H100/H200; ``quick`` (the default off CUDA)
runs the same code at small sizes in well under a minute, so a test keeps it from rotting.
Writes ``doctor.json`` and ``doctor.md`` to the output folder.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ncsn_core import io as atomic
from ncsn_core import registry, schema

# seconds per part: CUDA (paper sizes, ≤ 8 minutes in all) and quick
BUDGET = {"cuda_tests": 90, "bench": 210, "graphs": 40, "bf16_fid": 80, "plan_memory": 40}
QUICK_BUDGET = {"cuda_tests": 30, "bench": 40, "graphs": 15, "bf16_fid": 40, "plan_memory": 15}
GRAPHS_TOL = 1e-3  # relative max difference of compiled-graph samples against eager
PLAN_FILES = {  # the plan's check: file, experiment (paper size on CUDA; a small one quick)
    "paper": [("papers/ncsn_cifar.exp", "ncsn_cifar10"), ("papers/ncsnv2_cifar.exp", "ncsnv2_cifar10")],
    "quick": [("papers/quickstart_digits.exp", "quickstart_digits")],
}


class PartTimeout(Exception):
    """A part ran past its time box."""


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    """Raise :class:`PartTimeout` in the block after ``seconds`` (a SIGALRM timer; outside the
    main thread or without SIGALRM the block runs unbounded and the caller's deadline checks
    stop the next step)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(_sig: int, _frame: Any) -> None:
        raise PartTimeout(f"over its time box of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_doctor(
    out_dir: str | Path,
    *,
    quick: bool | None = None,
    device: str | None = None,
    compile: Callable[..., list[Any]] | None = None,
    repo: str | Path | None = None,
    parts: tuple[str, ...] = tuple(BUDGET),
    budgets: dict[str, float] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the parts, write ``doctor.json`` and ``doctor.md`` to ``out_dir``, return the result.
    ``compile(path, experiments=[...])`` compiles an .exp file (the language's, passed in: the
    core does not import it); without it the plan part is skipped. ``repo``: where tests/ and
    papers/ are (default: this package's parent folder)."""
    from ncsn_core.runner import pick_device

    dev = pick_device(device)
    quick = dev.type != "cuda" if quick is None else quick
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]
    budgets = {**(QUICK_BUDGET if quick else BUDGET), **(budgets or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from ncsn_core.bench import device_name

    result: dict[str, Any] = {
        "device": device_name(dev),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "size": "quick" if quick else "paper",
        "parts": {},
    }
    ctx = {"dev": dev, "quick": quick, "repo": repo, "compile": compile, "out": out, "log": log}
    t_all = time.perf_counter()
    for name in parts:
        fn = PARTS[name]
        log(f"doctor: {name} (time box {budgets[name]} s)")
        t0 = time.perf_counter()
        rec: dict[str, Any]
        try:
            with time_box(budgets[name]):
                rec = {"status": "ok", **fn(ctx, t0 + budgets[name])}
        except PartTimeout as e:
            rec = {"status": "timeout", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one part's failure is recorded, the rest runs
            rec = {
                "status": "error",
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                "traceback": traceback.format_exc(limit=6),
            }
        if rec["status"] == "ok" and rec.get("failed"):
            rec["status"] = "failed"
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        result["parts"][name] = rec
        log(f"doctor: {name}: {rec['status']} in {rec['seconds']} s{_brief(rec)}")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result["seconds"] = round(time.perf_counter() - t_all, 2)
    result["ok"] = all(r["status"] == "ok" for r in result["parts"].values())
    atomic.write_text(out / "doctor.json", json.dumps(result, indent=2, default=str))
    atomic.write_text(out / "doctor.md", markdown(result))
    return result


def _brief(rec: dict[str, Any]) -> str:
    if rec.get("error"):
        return f" ({rec['error']})"
    return f" ({rec['summary']})" if rec.get("summary") else ""


# ----------------------------------------------------------------------------- 1. CUDA tests
def part_cuda_tests(ctx: dict[str, Any], deadline: float) -> dict[str, Any]:
    tests = ctx["repo"] / "tests"
    if not (tests / "test_cuda_shaped.py").is_file():
        return {"summary": f"skipped: no tests/ under {ctx['repo']}"}
    cuda = ["tests/test_perf.py::test_cuda_fast_path_loss_matches_reference",
            "tests/test_perf.py::test_sampler_cuda_graphs_match_eager"]  # fmt: skip
    if ctx["quick"]:  # the CUDA tests (skipped without CUDA) and one cheap CUDA-shaped test
        args = [*cuda, "tests/test_cuda_shaped.py::test_forced_settings_resolve_on_the_cpu"]
    else:  # every CUDA-shaped test, torch.compile's included
        args = [*cuda, "tests/test_cuda_shaped.py"]
    cmd = [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ctx["repo"]), os.environ.get("PYTHONPATH", "")]))
    try:
        p = subprocess.run(
            cmd,
            cwd=ctx["repo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=max(deadline - time.perf_counter() - 2, 1),
        )
    except subprocess.TimeoutExpired as e:
        raise PartTimeout(f"pytest ran past the time box: {' '.join(cmd[3:])}") from e
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    counts = [ln for ln in lines if any(w in ln for w in (" passed", " failed", " skipped", " error"))]
    summary = counts[-1] if counts else (lines[-1] if lines else f"exit {p.returncode}")
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "returncode": p.returncode,
        "summary": summary.strip("= "),
        "tail": "\n".join(lines[-30:]),
        "failed": p.returncode not in (0, 5),
    }


# ----------------------------------------------------------------------------- 2. bench
def part_bench(ctx: dict[str, Any], deadline: float) -> dict[str, Any]:
    from ncsn_core.bench import PAPER, run_bench

    dev, quick = ctx["dev"], ctx["quick"]
    nets = ("ncsn",) if quick else tuple(PAPER)
    variants = {"auto": {}, "auto, no compile": {"compile": "off"}}
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for net in nets:
        for label, speed in variants.items():
            if time.perf_counter() > deadline - 5:
                errors[f"{net} / {label}"] = "skipped: the part's time box is spent"
                continue
            res: dict[str, Any] = {}
            try:
                for line in run_bench(
                    "all",
                    str(dev),
                    "quick" if quick else "paper",
                    networks=(net,),
                    speed=speed,
                    repeats=1 if quick else 3,
                    record=False,
                    result=res,
                ):
                    ctx["log"](f"  {line}")
            except PartTimeout:
                raise
            except Exception as e:  # noqa: BLE001 - one network's failure; the others still run
                errors[f"{net} / {label}"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for r in res.get("rows", []):
                rows.append(
                    {
                        "variant": label,
                        "what": r["what"],
                        "network": r["network"],
                        "batch": r["batch"],
                        "shape": r["shape"],
                        "reference": r["settings"]["reference"],
                        "fast": r["settings"]["fast"],
                        "reference_per_s": r["reference"]["images_per_s"],
                        "fast_per_s": r["fast"]["images_per_s"],
                        "fast_tflops": r["fast"]["tflops"],
                        "fast_peak_fraction": r["fast"]["peak_fraction"],
                        "speedup": r["speedup"],
                    }
                )
    best = max((r["speedup"] for r in rows if r["what"] == "train"), default=None)
    return {
        "rows": rows,
        "errors": errors,
        "summary": f"{len(rows)} rows, {len(errors)} errors"
        + (f", best train speed-up {best:.2f}x" if best else ""),
        "failed": bool(errors) and not rows,
    }


# ----------------------------------------------------------------------------- 3. graphs vs eager
def part_graphs(ctx: dict[str, Any], deadline: float) -> dict[str, Any]:
    from ncsn_core.bench import PAPER, QUICK, REFERENCE, make_trainer
    from ncsn_core.samplers import fast_network, sample_annealed_langevin

    dev, quick = ctx["dev"], ctx["quick"]
    shape, params, levels, batch, _ = (QUICK if quick else PAPER)["ncsn"]
    with tempfile.TemporaryDirectory(prefix="repro-doctor-") as tmp:
        model = make_trainer("ncsn", params, shape, levels, batch, REFERENCE, dev, Path(tmp)).model.eval()
    mode = "graphs" if dev.type == "cuda" else "off"  # CUDA graphs exist only on CUDA
    sig = [float(s) for s in torch.logspace(0, -2, levels)][-3:]
    steps = 2 if quick else 5

    def draw(net: Any) -> torch.Tensor:
        gen = torch.Generator(device=dev).manual_seed(0)
        x0 = torch.rand((batch, *shape), generator=gen, device=dev)

        def score(x: torch.Tensor, i: int) -> torch.Tensor:
            return net(x, torch.full((x.shape[0],), i, device=x.device, dtype=torch.long))

        with torch.inference_mode():
            return sample_annealed_langevin(
                score, x0, sig, step_size=2e-5, steps_per_level=steps, generator=gen, name="doctor"
            ).float()

    t0 = time.perf_counter()
    ref = draw(fast_network(model, "fp32", "off", dev))
    t_ref = time.perf_counter() - t0
    fast_net = fast_network(model, "fp32", mode, dev)
    draw(fast_net)  # warm-up: compilation and graph capture
    t0 = time.perf_counter()
    out = draw(fast_net)
    t_fast = time.perf_counter() - t0
    rel = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    return {
        "compile": mode,
        "network": "ncsn",
        "batch": batch,
        "steps": steps * len(sig),
        "max_rel_diff": rel,
        "tolerance": GRAPHS_TOL,
        "eager_s": round(t_ref, 4),
        "compiled_s": round(t_fast, 4),
        "summary": f"compile {mode}: max relative difference {rel:.2e} (tolerance {GRAPHS_TOL:g})",
        "failed": not rel <= GRAPHS_TOL,
    }


# ----------------------------------------------------------------------------- 4. bf16 vs fp32 FID
def part_bf16_fid(ctx: dict[str, Any], deadline: float) -> dict[str, Any]:
    from ncsn_core import evaluation
    from ncsn_core.noise import NoiseSchedule
    from ncsn_core.samplers import fast_network, sample_annealed_langevin
    from ncsn_core.training import Trainer
    from ncsn_core.values import Call

    dev, quick = ctx["dev"], ctx["quick"]
    iters, n, steps = (20, 64, 2) if quick else (3000, 1000, 100)
    data = registry.lookup("data", "digits").build(flip=False, dequantize="uniform")
    levels = 10
    sigmas = torch.logspace(0, -2, levels)
    torch.manual_seed(0)
    net = registry.lookup("network", "mlp")
    full, _ = net.check_params({"hidden": 256, "layers": 3, "conditional": True, "scale_by_sigma": True})
    model = net.build(**full, shape=(1, 8, 8), sigmas=sigmas)
    loss_c = registry.lookup("loss", "dsm")
    adam = registry.lookup("optimizer", "adam")
    settings = {p.name: p.default for p in schema.BY_NAME["train"].fields}
    settings.update(batch_size=128, iterations=iters, ema=0.0, tensorboard=False, wandb=False)
    with tempfile.TemporaryDirectory(prefix="repro-doctor-") as tmp:
        tr = Trainer(
            model=model,
            loss=loss_c.build(**loss_c.check_params({})[0]),
            noise=NoiseSchedule(sigmas).to(dev),
            data=data,
            optimizer_factory=adam.build(**adam.check_params({"lr": 1e-3})[0]),
            settings=settings,
            seed=0,
            device=dev,
            folder=Path(tmp),
        )
        tr.model.train()
        t0 = time.perf_counter()
        for _ in range(iters):
            tr.train_step(128)
        t_train = time.perf_counter() - t0
    model = tr.model.eval()
    sig = [float(s) for s in sigmas]
    fids: dict[str, float] = {}
    for prec in ("fp32", "bf16"):
        gen = torch.Generator(device=dev).manual_seed(1)
        x0 = torch.rand((n, 1, 8, 8), generator=gen, device=dev)
        f = fast_network(model, prec, "off", dev)

        def score(x: torch.Tensor, i: int, f: Any = f) -> torch.Tensor:
            return f(x, torch.full((x.shape[0],), i, device=x.device, dtype=torch.long))

        with torch.inference_mode():
            x = sample_annealed_langevin(
                score, x0, sig, step_size=2e-5, steps_per_level=steps, generator=gen, name="doctor"
            )
        m = evaluation.evaluate(
            (Call("fid_domain", ()),),
            x.float().clamp(0, 1).cpu(),
            data,
            settings={},
            run_key=f"doctor-{prec}",
            cache_dir=ctx["out"] / "cache",
            device=dev,
        )
        fids[prec] = float(m["fid_domain"])
    diff = fids["bf16"] - fids["fp32"]
    rel = abs(diff) / max(abs(fids["fp32"]), 1e-12)
    return {
        "data": "digits",
        "iterations": iters,
        "samples": n,
        "steps_per_level": steps,
        "train_s": round(t_train, 2),
        "fid_domain": fids,
        "difference": diff,
        "relative": rel,
        "summary": f"FID(domain) fp32 {fids['fp32']:.4g}, bf16 {fids['bf16']:.4g} ({rel:.1%} apart)",
    }


# ----------------------------------------------------------------------------- 5. the plan's error
def part_plan_memory(ctx: dict[str, Any], deadline: float) -> dict[str, Any]:
    compile_ = ctx["compile"]
    if compile_ is None:
        return {"summary": "skipped: no compiler passed (repro doctor passes the language's)"}
    from ncsn_core import plan as planmod

    dev = ctx["dev"]
    rows = []
    for rel_path, exp in PLAN_FILES["quick" if ctx["quick"] else "paper"]:
        if time.perf_counter() > deadline - 5:
            break
        (spec,) = compile_(ctx["repo"] / rel_path, experiments=[exp])
        p = planmod.plan_spec(spec)
        real = _real_step_peak(spec, dev)
        rows.append(
            {
                "experiment": exp,
                "batch": p.batch_size,
                "predicted_bytes": p.train_peak_bytes,
                "real_bytes": real,
                "error": None if not real else (p.train_peak_bytes or 0) / real - 1,
                "measured_by": "torch.cuda.max_memory_allocated"
                if dev.type == "cuda"
                else "tracker on real tensors",
            }
        )
    worst = max((abs(r["error"]) for r in rows if r["error"] is not None), default=None)
    return {
        "rows": rows,
        "summary": "; ".join(
            f"{r['experiment']}: predicted {planmod.fmt_bytes(r['predicted_bytes'])}, real "
            f"{planmod.fmt_bytes(r['real_bytes'])} ({r['error']:+.1%})"
            for r in rows
            if r["error"] is not None
        ),
        "worst_error": worst,
    }


def _real_step_peak(spec: Any, dev: torch.device) -> int:
    """The peak of two real training steps (the second holds the optimizer state) built as the
    plan builds them, with the plan's settings (bf16 on CUDA, eager, fused), on ``dev``."""
    from ncsn_core import plan as planmod
    from ncsn_core.training import Trainer

    train = spec.train.kwargs()
    batch = int(train["batch_size"])
    settings = planmod.target_settings(train)
    noise = planmod.real_noise(spec)
    data = planmod._stand_in_data(spec, batch)
    model = planmod._build("network", spec.network, shape=data.shape, sigmas=noise.sigmas.detach().cpu())
    tr = Trainer(
        model=model,
        loss=planmod._build("loss", spec.loss),
        noise=noise,
        data=data,
        optimizer_factory=planmod._build("optimizer", settings["optimizer"]),
        settings=settings,
        seed=0,
        device=dev,
        folder=Path(tempfile.gettempdir()) / "repro-doctor-plan",
    )
    tr.model.train()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev) - sum(
            planmod._nbytes(t) for t in planmod._tensors(tr.model) if t.device.type == "cuda"
        )
        base -= sum(planmod._nbytes(t) for t in planmod._tensors(tr.ema.shadow if tr.ema else {}))
        base -= sum(
            planmod._nbytes(t) for t in planmod._tensors(tr.noise.__dict__) if t.device.type == "cuda"
        )
        for _ in range(2):
            tr.train_step(batch)
        torch.cuda.synchronize(dev)
        peak = int(torch.cuda.max_memory_allocated(dev)) - max(base, 0)
        del tr
        return peak
    peak = 0
    for _ in range(2):
        pm = planmod.PeakMemory()
        pm.track(tr.model, tr.opt, None if tr.ema is None else tr.ema.shadow, tr.noise.__dict__)
        with pm:
            tr.train_step(batch)
        peak = max(peak, pm.peak)
    return peak


PARTS: dict[str, Callable[[dict[str, Any], float], dict[str, Any]]] = {
    "cuda_tests": part_cuda_tests,
    "bench": part_bench,
    "graphs": part_graphs,
    "bf16_fid": part_bf16_fid,
    "plan_memory": part_plan_memory,
}


# ----------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# repro doctor — {result['device']}",
        "",
        f"torch {result['torch']} (CUDA {result['cuda']}), {result['date']}, size {result['size']}, "
        f"{result.get('seconds', 0):.0f} s; {'all parts ok' if result.get('ok') else 'SOME PARTS NOT OK'}",
        "",
        "| part | status | seconds | summary |",
        "|---|---|---|---|",
    ]
    for name, r in result["parts"].items():
        s = (r.get("error") or r.get("summary") or "").replace("|", "/")
        lines.append(f"| {name} | {r['status']} | {r['seconds']} | {s} |")
    bench = result["parts"].get("bench", {})
    if bench.get("rows"):
        lines += [
            "",
            "## bench (fast path against the fp32-eager reference)",
            "",
            "| variant | what | network | batch | reference /s | fast /s | speed-up | fast TFLOP/s | of peak | fast path |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in bench["rows"]:
            pf = r["fast_peak_fraction"]
            lines.append(
                f"| {r['variant']} | {r['what']} | {r['network']} | {r['batch']} | {r['reference_per_s']:.4g} | "
                f"{r['fast_per_s']:.4g} | {r['speedup']:.2f}x | {r['fast_tflops']:.3g} | "
                f"{'-' if pf is None else f'{pf:.1%}'} | {r['fast']} |"
            )
    for k, v in bench.get("errors", {}).items():
        lines.append(f"- bench {k}: {v}")
    return "\n".join(lines) + "\n"
