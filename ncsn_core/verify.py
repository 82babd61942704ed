"""`repro verify`: recompute a run's stages from their recorded inputs and compare (docs/reproducibility.md).

Each stage is recomputed in a scratch folder (a temporary directory, removed afterwards), never
in the run: the train stage (all its steps, or the first ``steps``) from the spec alone; the
sample stage (all its batches, or the first ``batches``) from the recorded train stage's
checkpoint; the evaluate stage from the samples its metrics.json says it used. What is on disk
is read only: the run can be someone else's (a copied runs folder), a read-only mount.

The verdict of a stage (:class:`Verdict`), by the contract of docs/reproducibility.md:

- ``bit-identical``: every compared number is equal, bit for bit;
- ``equal within <tolerance>``: the environment that computed the stage (its env.json) differs
  from this one in something that moves the rounding (the thread count, the device, the torch
  build, ...; named), and every relative difference is within the stage's :data:`TOLERANCE`;
- ``differs at step/batch/metric N by X``: anything else, and always when the environment is
  the same (where the contract promises bit-identity).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import torch

import ncsn_core.layout as layout
from ncsn_core import checkpoint as ckpt
from ncsn_core import determinism, evaluation
from ncsn_core.environment import describe_differences
from ncsn_core.errors import CheckpointError, UserError
from ncsn_core.evaluation.inpainting import with_sample_stage
from ncsn_core.spec import ComponentSpec, RunSpec
from ncsn_core.stages.base import Context, load_tensors, pick_device
from ncsn_core.stages.env import environment
from ncsn_core.stages.sampling import draw, load_model
from ncsn_core.stages.train import STAGE as TRAIN_STAGE

STAGES = ("train", "sample", "evaluate")
# The largest relative difference (|a − b| / max |a|, per tensor, loss or metric) that counts as
# "equal within" when the environment differs: an order of magnitude above the drift measured
# between 1 and 2 CPU threads (docs/reproducibility.md, "Measured drift").
TOLERANCE = {"train": 1e-3, "sample": 1e-3, "evaluate": 1e-3}
_KIND = {"train": layout.TRAIN, "sample": layout.SAMPLE, "evaluate": layout.EVAL}
_UNTIMED = ("seconds", "it_s", "resumed_from", "world_size")  # results that are no result


@dataclass
class Diff:
    """One compared number (or tensor) that is not bit-identical."""

    order: int  # the step or batch, for "the first"
    where: str  # "step 20 (loss)", "batch 3", "metric fid_domain"
    absolute: float  # max |a − b| (inf: not comparable: a shape, a key, an integer state)
    relative: float  # absolute / max |a|


@dataclass
class Verdict:
    stage: str
    folder: Path | None
    result: str  # bit-identical | within | differs | skipped
    text: str
    compared: str = ""  # what was recomputed and compared
    diffs: list[Diff] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result == "differs"

    def line(self) -> str:
        return f"{self.stage}: {self.text}" + (f" [{self.compared}]" if self.compared else "")


# ---------------------------------------------------------------------------- comparisons
def _max_abs(t: torch.Tensor) -> float:
    return float(t.detach().double().abs().max()) if t.numel() else 0.0


def tensor_diff(a: Any, b: Any) -> tuple[float, float] | None:
    """None when ``a`` and ``b`` are bit-identical; else (max |a − b|, relative to max |a|);
    (inf, inf) when they cannot be compared or differ in an integer (a generator state)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return math.inf, math.inf
        if torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan()) and
                                 torch.equal(a.nan_to_num(), b.nan_to_num())):  # fmt: skip
            return None
        if not a.is_floating_point():
            return math.inf, math.inf
        d = _max_abs(a.double() - b.double())
        return d, d / max(_max_abs(a), 1e-30)
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, (int, float))
        or not isinstance(b, (int, float))
    ):
        return None if a == b else (math.inf, math.inf)
    if a == b or (math.isnan(a) and math.isnan(b)):
        return None
    d = abs(float(a) - float(b))
    return d, d / max(abs(float(a)), 1e-30)


def walk_diffs(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, float, float]]:
    """Every leaf of two nested states (dicts, lists, tensors, numbers) that differs."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                yield sub, math.inf, math.inf
            else:
                yield from walk_diffs(a[k], b[k], sub)
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            yield path, math.inf, math.inf
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from walk_diffs(x, y, f"{path}[{i}]")
        return
    d = tensor_diff(a, b)
    if d is not None:
        yield path, d[0], d[1]


# ---------------------------------------------------------------------------- the run on disk
def _read_json(path: Path) -> Any:
    """A record of the verified run (maybe someone else's): bounded, regular files only."""
    try:
        return layout.read_json(path)
    except (OSError, ValueError):  # layout.DamagedFile is a ValueError
        return None


@dataclass
class _Found:
    """The run's complete stage folders (its own, or equal ones elsewhere under the runs folder)."""

    train: Path | None
    sample: Path | None
    evaluate: Path | None

    def get(self, stage: str) -> Path | None:
        return getattr(self, stage)


def find_stages(spec: RunSpec, seed_dir: Path) -> _Found:
    """The complete stages of ``spec`` for the seed folder ``seed_dir``, found as the runner finds
    them (by their hashes, the run's own first); reading only."""
    ctx = _context(spec, seed_dir, "cpu")
    train = ctx.find_stage(layout.TRAIN, spec.train_hash()) if spec.trains else None
    sample = ctx.find_stage(layout.SAMPLE, spec.sample_hash()) if spec.sample is not None else None
    ev = None
    if spec.evaluate is not None and sample is not None:
        ev = ctx.find_stage(layout.EVAL, spec.eval_hash())
    return _Found(train, sample, ev)


def _context(spec: RunSpec, seed_dir: Path, device: str | torch.device, quiet: bool = True) -> Context:
    """A context whose run folder is the verified one (for reading: a chosen checkpoint, the
    stages it found); nothing is computed into it."""
    runs_dir = seed_dir.parent.parent.parent
    ctx = Context(spec, runs_dir, str(device), quiet=quiet)
    ctx.dir, ctx.seed_dir = seed_dir.parent, seed_dir
    return ctx


def _recorded_env(folder: Path) -> dict[str, Any] | None:
    return _read_json(folder / layout.ENV) or _read_json(folder.parent / layout.ENV)


# ---------------------------------------------------------------------------- the stages
def _evolve_iterations(spec: RunSpec, n: int) -> RunSpec:
    assert spec.train is not None
    params = tuple((k, n if k == "iterations" else v) for k, v in spec.train.params)
    return attrs.evolve(spec, train=ComponentSpec(spec.train.name, params))


def _log(path: Path, upto: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if step <= upto:
            out[step] = rec
    return out


def _train(spec: RunSpec, seed_dir: Path, folder: Path, scratch: Path, steps: int | None, device: Any,
           log: Callable[[str], None], verbose: bool) -> tuple[list[Diff], str, str | None]:  # fmt: skip
    """Recompute the train stage's first ``steps`` steps (all: None) into ``scratch``; the
    differences with ``folder``, what was compared, and a hard failure (a damaged file)."""
    assert spec.train is not None
    total = int(spec.train.kwargs()["iterations"])
    n = total if steps is None else min(int(steps), total)
    if spec.weights() is not None:
        n = total
    mine = _evolve_iterations(spec, n) if n != total else spec
    old_log, old_cks = (
        _log(folder / layout.LOG, n),
        dict(ckpt.list_checkpoints(layout.checkpoints_dir(folder))),
    )
    old_cks = {s: p for s, p in old_cks.items() if s <= n}
    if spec.weights() is None and not (set(old_log) or old_cks):
        raise UserError(
            f"{folder}: nothing on disk covers the first {n} steps (loss logged at steps "
            f"{', '.join(map(str, sorted(_log(folder / layout.LOG, total)))) or 'none'}; checkpoints kept at "
            f"{', '.join(str(s) for s, _ in ckpt.list_checkpoints(layout.checkpoints_dir(folder))) or 'none'}); "
            "choose --steps at one of them"
        )
    log(f"train: recomputing {n} of {total} steps in a scratch folder…")
    ctx = _context(mine, seed_dir, device, quiet=True)
    out = scratch / "train"
    out.mkdir(parents=True)
    with contextlib.nullcontext() if verbose else contextlib.redirect_stderr(io.StringIO()):
        result = TRAIN_STAGE.compute(ctx, out, {})  # its progress lines only when not quiet
    diffs: list[Diff] = []
    new_log = _log(out / layout.LOG, n)
    for step in sorted(set(old_log) & set(new_log)):
        for key in ("loss", "per_level"):
            a, b = old_log[step].get(key), new_log[step].get(key)
            for path, d, r in walk_diffs(a, b, key):
                diffs.append(Diff(step, f"step {step} ({path})", d, r))
    new_cks = dict(ckpt.list_checkpoints(layout.checkpoints_dir(out)))
    common = sorted(set(old_cks) & set(new_cks))
    for step in common:
        try:
            old = ckpt.load(old_cks[step], map_location="cpu")
        except CheckpointError as e:
            return diffs, "", f"differs at step {step}: {e}"
        new = ckpt.load(new_cks[step], map_location="cpu")
        for path, d, r in walk_diffs(old, new):
            diffs.append(Diff(step, f"step {step} (checkpoint {path})", d, r))
    if n == total and result is not None:
        old_res = _read_json(folder / layout.RESULTS) or {}
        new_res = result.files.get(layout.RESULTS, _read_json(out / layout.RESULTS) or {})
        for key in sorted(set(old_res) | set(new_res)):
            if key not in _UNTIMED:
                for path, d, r in walk_diffs(old_res.get(key), new_res.get(key), f"results {key}"):
                    diffs.append(Diff(n, f"step {n} ({path})", d, r))
    what = f"{n} of {total} steps: loss at {len(set(old_log) & set(new_log))} logged steps, {len(common)} checkpoints"
    return diffs, what, None


def _sample(spec: RunSpec, seed_dir: Path, folder: Path, train_dir: Path | None, scratch: Path,
            batches: int | None, device: Any, log: Callable[[str], None]) -> tuple[list[Diff], str, str | None]:  # fmt: skip
    assert spec.sample is not None
    s = spec.sample.kwargs()
    bs, total = int(s["batch_size"]), int(s["samples"])
    n = total if batches is None else min(total, int(batches) * bs)
    try:
        old = load_tensors(folder / layout.SAMPLES, "cpu")
    except Exception as e:  # noqa: BLE001 - a damaged or missing file is a difference
        return [], "", f"differs: {folder / layout.SAMPLES} cannot be read ({type(e).__name__}: {e})"
    k_total = math.ceil(total / bs)
    log(f"sample: recomputing {math.ceil(n / bs)} of {k_total} batches ({n} samples) in a scratch folder…")
    ctx = _context(spec, seed_dir, device, quiet=True)
    try:
        model, _ = load_model(ctx, train_dir, s["use_ema"], s["checkpoint"])
    except CheckpointError as e:
        return [], "", f"differs: the train stage's checkpoint: {e}"
    x, extra = draw(ctx, model, n, 0, record=True, shards=scratch / "sample" / "shards")
    assert x is not None
    diffs: list[Diff] = []
    if not isinstance(old, torch.Tensor) or old.shape[0] < n or old.shape[1:] != x.shape[1:]:
        shape = tuple(old.shape) if isinstance(old, torch.Tensor) else type(old).__name__
        return [], "", f"differs: samples.pt holds {shape}, the recomputed samples are {tuple(x.shape)}"
    for k in range(math.ceil(n / bs)):
        d = tensor_diff(old[k * bs : (k + 1) * bs], x[k * bs : (k + 1) * bs])
        if d is not None:
            diffs.append(Diff(k, f"batch {k} (samples {k * bs}–{min(n, (k + 1) * bs) - 1})", *d))
    inter = folder / layout.INTERMEDIATES
    if extra["intermediates"] and inter.exists():
        new_inter = {k: torch.stack(v) for k, v in extra["intermediates"].items()}
        old_inter = load_tensors(inter, "cpu")
        for path, d, r in walk_diffs(old_inter, new_inter):
            diffs.append(Diff(0, f"batch 0 (intermediates {path})", d, r))
    diffs.sort(key=lambda d: d.order)
    return diffs, f"{math.ceil(n / bs)} of {k_total} batches, {n} samples", None


def _evaluate(spec: RunSpec, seed_dir: Path, folder: Path, sample_dir: Path, device: Any,
              log: Callable[[str], None]) -> tuple[list[Diff], str, str | None]:  # fmt: skip
    assert spec.evaluate is not None
    old = _read_json(folder / layout.METRICS)
    if not isinstance(old, dict):
        return [], "", f"differs: {folder / layout.METRICS} cannot be read"
    e = spec.evaluate.kwargs()
    protocol = old.get("protocol") if isinstance(old.get("protocol"), dict) else {}
    run = folder.parent.parent  # the run that computed it (an equal stage may be another run's)
    source = layout.resolve(str(protocol.get("samples_from") or ""), run, run.parent.parent)
    source = source or sample_dir / layout.SAMPLES
    n = int(protocol.get("samples_used") or e["samples"])
    try:
        x = load_tensors(source, "cpu")[:n]
    except Exception as exc:  # noqa: BLE001
        return [], "", f"differs: the evaluated samples {source} cannot be read ({type(exc).__name__}: {exc})"
    log(f"evaluate: recomputing the metrics on {n} samples of {source.name}…")
    ctx = _context(spec, seed_dir, device, quiet=True)
    new = evaluation.evaluate(
        spec.evaluate.get("metrics"),
        x,
        ctx.data,
        settings=with_sample_stage(e, spec, sample_dir),
        run_key=spec.eval_hash(),
        cache_dir=layout.user_cache_dir(),
        device=ctx.device,
    )
    diffs: list[Diff] = []
    keys = [k for k in old if k != "protocol"] + [k for k in new if k != "protocol" and k not in old]
    for i, key in enumerate(keys):
        for path, d, r in walk_diffs(old.get(key), new.get(key), key):
            diffs.append(Diff(i, f"metric {path}", d, r))
    return diffs, f"{len(keys)} metrics on {n} samples", None


# ---------------------------------------------------------------------------- the verdict
def judge(stage: str, folder: Path, diffs: list[Diff], recorded: Mapping[str, Any] | None,
          now: Mapping[str, Any], what: str = "") -> Verdict:  # fmt: skip
    """The verdict of docs/reproducibility.md from the differences and the two environments."""
    env = "its env.json is missing" if recorded is None else describe_differences(recorded, now)
    if not diffs:
        return Verdict(stage, folder, "bit-identical", "bit-identical" + (f" (environment differs: {env})" if env else ""),
                       what, diffs)  # fmt: skip
    tol = TOLERANCE[stage]
    over = [d for d in diffs if not d.relative <= tol]
    worst = max(diffs, key=lambda d: (d.relative, d.absolute))
    if env and not over:
        text = (
            f"equal within {tol:g} (largest relative difference {worst.relative:.2g}, at {worst.where}) "
            f"(environment differs: {env})"
        )
        return Verdict(stage, folder, "within", text, what, diffs)
    first = (over or diffs)[0]
    by = (
        "∞ (not comparable)"
        if math.isinf(first.absolute)
        else f"{first.absolute:.3g} (relative {first.relative:.2g})"
    )
    why = (
        f"environment differs: {env}" if env else "same environment, where the contract promises bit-identity"
    )
    return Verdict(stage, folder, "differs", f"differs at {first.where} by {by} ({why})", what, diffs)


@contextmanager
def _scratch(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    d = Path(tempfile.mkdtemp(prefix="repro-verify-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def verify_seed(
    spec: RunSpec,
    seed_dir: Path,
    *,
    stages: tuple[str, ...] = STAGES,
    steps: int | None = None,
    batches: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    scratch: Path | None = None,
    log: Callable[[str], None] | None = _stderr,
) -> list[Verdict]:
    """Recompute ``stages`` of one seed of a run (``seed_dir``: ``<run>/seed-<k>``; ``spec``: its
    spec with that seed) and compare; one :class:`Verdict` per stage. ``device``: default the
    recorded device's kind when this machine has it, else the CPU; ``threads``: default this
    process's count (the recorded one is in the verdict when it differs). Deterministic
    algorithms as the stage was computed with. Nothing is written into the run."""
    say = log or (lambda _m: None)
    seed_dir = Path(seed_dir)
    found = find_stages(spec, seed_dir)
    verdicts: list[Verdict] = []
    with _scratch(scratch) as tmp:
        for stage in stages:
            folder = found.get(stage)
            if folder is None:
                why = "the spec has no such stage" if _absent(spec, stage) else "it is not complete on disk"
                verdicts.append(Verdict(stage, None, "skipped", f"not verified ({why})"))
                continue
            recorded = _recorded_env(folder)
            dev = pick_device(device or _recorded_device(recorded))
            deterministic = (recorded or {}).get("deterministic_algorithms")
            with determinism.applied(deterministic, threads, dev):
                if stage == "train":
                    diffs, what, hard = _train(
                        spec, seed_dir, folder, tmp / "t", steps, dev, say, log is not None
                    )
                elif stage == "sample":
                    diffs, what, hard = _sample(spec, seed_dir, folder, _train_of(folder, found), tmp / "s",
                                                batches, dev, say)  # fmt: skip
                else:
                    assert found.sample is not None
                    diffs, what, hard = _evaluate(spec, seed_dir, folder, found.sample, dev, say)
                now = environment(dev)
            if hard is not None:
                verdicts.append(Verdict(stage, folder, "differs", hard, what))
            else:
                verdicts.append(judge(stage, folder, diffs, recorded, now, what))
    return verdicts


def _absent(spec: RunSpec, stage: str) -> bool:
    return {"train": not spec.trains, "sample": spec.sample is None, "evaluate": spec.evaluate is None}[stage]


def _recorded_device(recorded: Mapping[str, Any] | None) -> str:
    kind = str((recorded or {}).get("device") or "cpu").split(":")[0]
    return "cuda" if kind == "cuda" and torch.cuda.is_available() else "cpu"


def _train_of(sample_dir: Path, found: _Found) -> Path | None:
    """The train stage a sample stage was drawn from: its stage.json's record, else the run's."""
    rec = (_read_json(sample_dir / layout.STAGE) or {}).get("train") or ""
    run = sample_dir.parent.parent
    return layout.resolve(str(rec), run, run.parent.parent) or found.train
