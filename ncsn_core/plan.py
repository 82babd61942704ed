"""`repro plan`: what each experiment of a file needs at the paper's size, known before it runs,
without data, without a GPU and without allocating the memory (docs/scale.md).

For every run spec the real parts are built as the runner builds them (registry network at the
declared size, noise, loss, optimizer, EMA, a :class:`~ncsn_core.training.Trainer` on a stand-in
:class:`~ncsn_core.data.DataSource` of the declared shape from the data declaration's
DataFacts) inside ``torch._subclasses.FakeTensorMode``: every tensor has a shape, a dtype and a
device but no storage, so one full training step (batch, the noise's update — ANSN's covariance
— loss incl. SSM/SSM-VR's double backward, backward, clipping, optimizer, EMA) and one score
evaluation of each sample stage's batch execute on fake tensors in about a second each.
``torch.distributed._tools.mem_tracker.MemTracker`` follows every allocation of that step and
gives the peak. A shape or type mistake at paper size raises here (the CLI positions it at the
experiment's line).

The peak is what one CUDA device holds for the declared batch and precision (``precision =
auto`` is bf16 on CUDA, which is where a paper-size run goes); layout (channels_last) and
``torch.compile`` change it only a little and are not modelled (eager is the upper figure).
The micro-batch that fits a device is found from the measured step itself: the peak is affine
in the micro-batch (parameters, gradients, optimizer and EMA state are fixed; activations grow
per example), measured at two micro-batches, inverted, and the answer checked by one more
measured step.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import DataDependentOutputException

from ncsn_core import cost, registry
from ncsn_core.data import DataSource
from ncsn_core.errors import ReproError, UserError

GB = 10**9
GiB = 2**30
# Common devices' memory (what the plan says fits): name -> bytes usable by tensors. A CUDA
# context and the caching allocator's fragmentation take some; 5 % is kept back.
DEVICES: dict[str, int] = {"80GB": 80 * GB, "40GB": 40 * GB, "24GB": 24 * GB}
HEADROOM = 0.95


def parse_memory(text: str) -> int:
    """'24GB', '24 GiB', '80G', '512MB' -> bytes (GB = 10⁹, GiB = 2³⁰)."""
    t = text.strip().replace(" ", "").upper()
    units = {"GIB": GiB, "MIB": 2**20, "GB": GB, "MB": 10**6, "G": GB, "M": 10**6, "B": 1}
    for u, f in units.items():
        if t.endswith(u):
            try:
                return int(float(t[: -len(u)]) * f)
            except ValueError:
                break
    raise UserError(f"--memory {text!r}: expected a size such as 24GB, 40GiB or 512MB")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, v in (("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if n >= v:
            return f"{n / v:.3g} {unit}"
    return f"{int(n)} B"


@dataclass
class ExperimentPlan:
    experiment: str
    hash: str
    network: str | None
    shape: list[int]
    batch_size: int | None
    precision: str
    parameters: int = 0
    train_peak_bytes: int | None = None  # one training step at the declared batch
    sample_peak_bytes: int | None = None  # one score evaluation of the sample batch
    peak_bytes: int | None = None  # the larger: what one device needs
    per_example_bytes: float | None = None  # the train peak's slope in the micro-batch
    fits: dict[str, bool] = field(default_factory=dict)  # device -> fits at the declared batch
    micro_batch: dict[str, int | None] = field(default_factory=dict)  # device -> largest that fits
    train_flops: float | None = None
    total_flops: float | None = None
    ideal_hours: float | None = None
    projected_hours: dict[str, float] = field(default_factory=dict)
    released: bool = False
    note: str = ""
    error: str | None = None
    seconds: float = 0.0


@dataclass
class PlanResult:
    file: str
    experiments: list[ExperimentPlan]
    devices: dict[str, int]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def errors(self) -> list[ExperimentPlan]:
        return [e for e in self.experiments if e.error]


# ----------------------------------------------------------------------------- fake parts
def _shape(spec: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in registry.lookup("data", spec.data.name).facts.shape(spec.data.kwargs()))


def _stand_in_data(spec: Any, n: int) -> DataSource:
    """A DataSource of the declared shape with ``n`` uint8 examples (fake under FakeTensorMode:
    no storage), augmented as the declaration says."""
    facts = registry.lookup("data", spec.data.name).facts
    params = spec.data.kwargs()
    shape = _shape(spec)
    kind = "points" if facts.modality == "points" else "image"
    train = torch.zeros((n, *shape), dtype=torch.float32 if kind == "points" else torch.uint8)
    return DataSource(
        name=spec.data.name,
        kind=kind,
        shape=shape,
        train=train,
        test=None,
        identity="plan",
        flip=bool(params.get("flip", False)) and kind == "image",
        dequantize=str(params.get("dequantize", "none")),
    )


def target_settings(train: dict[str, Any]) -> dict[str, Any]:
    """The train settings as a CUDA run would resolve them, eager (what the plan measures)."""
    s = dict(train)
    prec = s.get("precision", "auto")
    s["precision"] = "bf16" if prec in ("auto", "bf16") else "fp32"
    s.update(channels_last="off", compile="off", fused_optimizer="on", data_on_device="off")
    s["tensorboard"] = False
    s["wandb"] = False
    return s


def _build(kind: str, comp: Any, **extra: Any) -> Any:
    return registry.lookup(kind, comp.name).build(**comp.kwargs(), **extra)


def real_noise(spec: Any) -> Any:
    """The noise schedule, built outside fake mode (its σ ladder is computed in Python from a
    tensor; ANSN's data diagonal from a two-example stand-in): kilobytes, not the run's memory."""
    return _build("noise", spec.noise, data=_stand_in_data(spec, 2))


class _Measured:
    """The trainer of one spec built once under fake mode; ``peak(micro)`` measures one step."""

    def __init__(self, spec: Any, batch: int, settings: dict[str, Any], noise: Any) -> None:
        from ncsn_core.training import Trainer

        self.data = _stand_in_data(spec, batch)
        model = _build("network", spec.network, shape=self.data.shape, sigmas=noise.sigmas.detach().cpu())
        self.parameters = sum(p.numel() for p in model.parameters())
        # one example's input as a micro-batched step holds it for the whole batch: the data, the
        # perturbed data and the target (float32)
        self.input_bytes = 3 * 4 * math.prod(self.data.shape)
        # Fake parameters cannot be swapped by Module.to; they are built on the plan's device.
        model.to = lambda *a, **k: model  # type: ignore[method-assign]
        self.settings = settings
        self.notes: set[str] = set()
        self.trainer = Trainer(
            model=model,
            loss=_build("loss", spec.loss),
            noise=noise,
            data=self.data,
            optimizer_factory=_build("optimizer", settings["optimizer"]),
            settings=settings,
            seed=0,
            device=torch.device("cpu"),
            folder=Path("plan-not-written"),
        )

    def steady_peak(self, batch: int) -> tuple[int, int]:
        """The peak of a step at ``batch`` once the optimizer state exists (as every step but
        the first: the state is created before the measured step, see :meth:`create_state`),
        and the bytes that stay between steps (parameters, gradients, optimizer, EMA)."""
        self.create_state()
        peak = self.step_peak(batch, None, keep_grads=True)
        tr = self.trainer
        fixed = sum(_nbytes(t) for t in _tensors(tr.opt)) + sum(_nbytes(t) for t in _tensors(tr.model))
        fixed += sum(_nbytes(p.grad) for p in tr.model.parameters() if p.grad is not None)
        fixed += sum(_nbytes(t) for t in _tensors(tr.ema.shadow if tr.ema is not None else {}))
        tr.opt.zero_grad(set_to_none=True)
        return peak, fixed

    def create_state(self) -> None:
        """The optimizer's state (Adam's exp_avg, exp_avg_sq), created by one optimizer step on
        zero gradients, outside any measurement. The state used to be created inside the measured
        step and its bytes added to that step's peak once more: right when the peak is in the
        backward pass (a conv network's activations: ncsn_digits planned = real), counted twice
        when the peak is at the optimizer step, where the state already exists (an MLP's
        parameters dominate: quickstart_digits over-predicted by 37 %). Under fake tensors
        the step changes no value; the parameters' values are put back for real tensors too."""
        tr = self.trainer
        if tr.opt.state:
            return
        params = [p for p in tr.model.parameters() if p.requires_grad]
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p in params:
                p.grad = torch.zeros_like(p)
            tr.opt.step()
            for p, v in zip(params, saved, strict=True):
                p.copy_(v)
        tr.opt.zero_grad(set_to_none=True)

    def step_peak(self, batch: int, micro: int | None, keep_grads: bool = False) -> int:
        tr = self.trainer
        tr.micro = micro
        tr.opt.zero_grad(set_to_none=True)
        pm = PeakMemory()
        pm.track(tr.model, tr.opt, None if tr.ema is None else tr.ema.shadow, tr.noise.__dict__)
        with pm:
            try:
                tr.train_step(batch)
            except DataDependentOutputException:
                # a value read back to the host (ANSN's guarded covariance update): not
                # executable on fake tensors; the step is measured without the noise's update
                # (its state is a few vectors of the data's dimension)
                for hook in ("update", "update_residual", "update_score"):  # every estimate_on
                    if hasattr(tr.noise, hook):
                        setattr(tr.noise, hook, lambda *a, **k: None)
                self.notes.add("the noise's update is not measured (it reads values on the host)")
                tr.opt.zero_grad(set_to_none=True)
                tr.train_step(batch)
        if not keep_grads:
            tr.opt.zero_grad(set_to_none=True)
        return pm.peak


class PeakMemory:
    """The peak of the bytes held by live tensor storages while the ``with`` block runs: every
    storage an operator returns is counted once, until it is freed (a weak reference's
    callback); ``track`` counts tensors that exist before (parameters, optimizer and EMA
    state). O(1) per operator (MemTracker's per-operator walk over every live storage is
    quadratic in a step's operators: minutes for a RefineNet step)."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

    def _add(self, t: Any) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key = id(st)
        if key in self.live:
            return
        n = int(st.nbytes())
        ref = weakref.ref(st, lambda _r, k=key: self._free(k))
        self.live[key] = (ref, n)
        self.current += n
        self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        item = self.live.pop(key, None)
        if item is not None:
            self.current -= item[1]

    def track(self, *objs: Any) -> None:
        for o in objs:
            for t in _tensors(o):
                self._add(t)

    def __enter__(self) -> PeakMemory:
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                for t in _tensors(out):
                    outer._add(t)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)


def _tensors(o: Any) -> list[torch.Tensor]:
    if isinstance(o, torch.Tensor):
        return [o]
    if isinstance(o, torch.nn.Module):
        return [*o.parameters(), *o.buffers()]
    if isinstance(o, torch.optim.Optimizer):
        return [t for st in o.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    if isinstance(o, dict):
        return [t for v in o.values() for t in _tensors(v)]
    if isinstance(o, (list, tuple)):
        return [t for v in o for t in _tensors(v)]
    return []


def sample_peak(model: torch.nn.Module, shape: tuple[int, ...], batch: int, bf16: bool) -> int:
    """One score evaluation of a sample batch (no gradients), as the sampler calls the network."""
    pm = PeakMemory()
    pm.track(model)
    with pm, torch.no_grad():
        x = torch.rand((batch, *shape))
        idx = torch.zeros(batch, dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, idx)
        x = x + 1e-5 * out.float() + torch.randn_like(x)
    return pm.peak


@contextlib.contextmanager
def fake_mode() -> Iterator[Any]:
    """FakeTensorMode, its own log of a failing operator silenced (the plan reports the error
    once, positioned, never a traceback)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            yield mode
    finally:
        log.setLevel(level)


# ----------------------------------------------------------------------------- the plan
def _nbytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


def _largest_fitting(m: Any, batch: int, budget: float, p_full: int, fixed: int) -> int | None:
    """The largest micro-batch whose step fits ``budget``: the affine model fixed + k·slope
    inverted, then checked with a measured step at that batch (plus the global batch's input
    rows a micro-batched step also holds), lowered by 10 % until it fits. None: none fits."""
    if p_full <= budget:
        return batch
    if fixed >= budget:
        return None
    slope = max((p_full - fixed) / batch, 1.0)
    k = int(min(batch - 1, (budget - fixed) // slope))
    while k >= 1:
        held = m.input_bytes * (batch - k)
        if m.step_peak(k, None) + held <= budget:
            return k
        k = int(k * 0.9)
    return None


def plan_spec(
    spec: Any, memory_bytes: int | None = None, *, devices: dict[str, int] | None = None
) -> ExperimentPlan:
    """Plan one run spec (see the module docstring). Raises :class:`ReproError` (or the error
    torch raises) when the network cannot run at the declared size."""
    t0 = time.perf_counter()
    devs = dict(DEVICES if devices is None else devices)
    if memory_bytes is not None:
        devs[fmt_bytes(memory_bytes).replace(" ", "")] = int(memory_bytes)
    shape = list(_shape(spec)) if spec.data is not None else []
    train = spec.train.kwargs() if spec.train is not None else {}
    out = ExperimentPlan(
        experiment=spec.experiment,
        hash=spec.hash(),
        network=None if spec.network is None else spec.network.name,
        shape=shape,
        batch_size=train.get("batch_size"),
        precision="",
        released=spec.weights() is not None,
    )
    if spec.network is None:
        out.note = "no network"
        return out
    settings = target_settings(train) if train else {}
    out.precision = settings.get("precision", "fp32")
    batch = int(train.get("batch_size", 1))
    key = _memory_key(spec, devs)
    if key in _MEMO:  # the same computation measured already (another experiment, a sweep)
        for f in ("parameters", "train_peak_bytes", "sample_peak_bytes", "per_example_bytes", "micro_batch"):
            setattr(out, f, copy.deepcopy(getattr(_MEMO[key], f)))
        return _finish(spec, out, devs, t0)
    noise = real_noise(spec)
    with fake_mode():
        torch.manual_seed(0)
        m = _Measured(spec, batch, settings, noise) if spec.trains else None
        if m is None:
            model = _build("network", spec.network, shape=tuple(shape), sigmas=noise.sigmas.detach().cpu())
            out.parameters = sum(p.numel() for p in model.parameters())
        else:
            out.parameters = m.parameters
            model = m.trainer.model
            if m.notes:
                out.note = "; ".join(sorted(m.notes))
        peaks: list[int] = []
        if m is not None and not out.released:
            p_full, fixed = m.steady_peak(batch)
            out.train_peak_bytes = p_full
            # per example: the activations (the fixed part is parameters, gradients, optimizer
            # and EMA state, counted at the step's end), plus the global batch's input tensors
            out.per_example_bytes = max(p_full - fixed, 0) / batch
            peaks.append(p_full)
            for name, cap in sorted(devs.items(), key=lambda kv: -kv[1]):
                out.micro_batch[name] = _largest_fitting(m, batch, cap * HEADROOM, p_full, fixed)
        if spec.sample is not None:
            sb = int(spec.sample.get("batch_size", 1000))
            sb = min(sb, int(spec.sample.get("samples", sb)))
            bf16 = spec.sample.get("precision", "fp32") == "bf16"
            model.eval()
            out.sample_peak_bytes = sample_peak(model, tuple(shape), sb, bf16)
            peaks.append(out.sample_peak_bytes)
    _MEMO[key] = out
    return _finish(spec, out, devs, t0)


_MEMO: dict[str, ExperimentPlan] = {}


def _memory_key(spec: Any, devs: dict[str, int]) -> str:
    """What the measured memory depends on: shape, noise, network, loss, the step's settings,
    the sample batch and precision, the devices."""
    train = spec.train.kwargs() if spec.train is not None else {}
    part = {
        "data": [spec.data.name, list(_shape(spec))],
        "noise": spec.noise.to_json() if spec.noise is not None else None,
        "network": spec.network.to_json(),
        "loss": spec.loss.to_json() if spec.loss is not None else None,
        "train": {
            k: repr(train.get(k)) for k in ("batch_size", "optimizer", "ema", "grad_clip", "precision")
        },
        "trains": spec.trains,
        "released": spec.weights() is not None,
        "sample": None
        if spec.sample is None
        else [spec.sample.get(k) for k in ("batch_size", "samples", "precision")],
        "devices": devs,
    }
    return json.dumps(part, sort_keys=True, default=repr)


def _finish(spec: Any, out: ExperimentPlan, devs: dict[str, int], t0: float) -> ExperimentPlan:
    peaks = [p for p in (out.train_peak_bytes, out.sample_peak_bytes) if p is not None]
    out.peak_bytes = max(peaks) if peaks else None
    if out.peak_bytes is not None:
        out.fits = {name: out.peak_bytes <= cap * HEADROOM for name, cap in devs.items()}
    try:
        c = cost.run_cost(spec)
        out.train_flops = c.get("train_flops")
        out.total_flops = c.get("total_flops")
        out.ideal_hours = c.get("ideal_hours")
        out.projected_hours = dict(c.get("projected", {}))
    except (ReproError, ValueError, RuntimeError) as e:
        out.note = f"cost unknown: {e}"
    out.seconds = round(time.perf_counter() - t0, 2)
    return out


def plan_specs(
    specs: list[Any], memory_bytes: int | None = None, *, file: str = "", keep_going: bool = True
) -> PlanResult:
    """Plan every spec; a spec whose step fails carries its error (``keep_going``) or raises."""
    t0 = time.perf_counter()
    devs = dict(DEVICES)
    if memory_bytes is not None:
        devs[fmt_bytes(memory_bytes).replace(" ", "")] = int(memory_bytes)
    plans = []
    for s in specs:
        try:
            plans.append(plan_spec(s, memory_bytes))
        except Exception as e:  # a shape/type mistake at paper size: reported per experiment
            if not keep_going:
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            plans.append(
                ExperimentPlan(
                    experiment=s.experiment,
                    hash=s.hash(),
                    network=None if s.network is None else s.network.name,
                    shape=[],
                    batch_size=None,
                    precision="",
                    error=f"{type(e).__name__}: {msg}",
                )
            )
    return PlanResult(file=file, experiments=plans, devices=devs, seconds=round(time.perf_counter() - t0, 2))


def plan_file(path: str | Path, memory_bytes: int | None = None, **compile_kw: Any) -> PlanResult:
    """Compile ``path`` (through the language: passed in by the caller as ``compile``, since the
    core does not import it) and plan every experiment."""
    compile_ = compile_kw.pop("compile")
    specs = compile_(path, **compile_kw)
    return plan_specs(specs, memory_bytes, file=str(path))


def check_fits(plan: ExperimentPlan, free_bytes: int) -> None:
    """None when the planned step fits ``free_bytes``; else a :class:`UserError` that says what
    is needed, what is free and which ``train.micro_batch`` would fit."""
    if plan.peak_bytes is None or plan.peak_bytes <= free_bytes * HEADROOM:
        return
    hint = ""
    if plan.train_peak_bytes is not None and plan.per_example_bytes and plan.batch_size:
        fixed = plan.train_peak_bytes - plan.per_example_bytes * plan.batch_size
        m = math.floor((free_bytes * HEADROOM - fixed) / plan.per_example_bytes)
        if m >= 1:
            hint = f"; train.micro_batch = {min(m, plan.batch_size)} would fit (about {fmt_bytes(fixed + plan.per_example_bytes * m)})"
        else:
            hint = "; no micro-batch fits: the parameters, gradients and optimizer state alone do not"
    raise UserError(
        f"experiment {plan.experiment}: one step needs {fmt_bytes(plan.peak_bytes)} of device memory "
        f"(batch {plan.batch_size}, {plan.precision}; repro plan), {fmt_bytes(free_bytes)} is free{hint}"
    )


# train.micro_batch = auto on CUDA: the share of the device's free memory (torch.cuda.mem_get_info,
# read when the train stage starts) the planned step may take. The plan counts live tensor
# storages exactly (tests/test_plan.py: planned = real step on the CPU); the remaining 15 % is
# for what it does not see: the caching allocator's rounding and fragmentation, cuDNN/cuBLAS
# workspaces, and the layout/compile settings it does not model.
AUTO_FREE_FRACTION = 0.85


@dataclass
class AutoMicroBatch:
    micro_batch: int | None  # None: the whole batch; 0: nothing fits
    batch: int
    planned_bytes: int  # the planned peak of the chosen step (micro-batched: with the batch's inputs)
    free_bytes: int

    def line(self) -> str:
        chosen = "none fits" if self.micro_batch == 0 else f"{self.micro_batch or self.batch} of {self.batch}"
        return (
            f"micro_batch auto: {chosen} (planned peak {fmt_bytes(self.planned_bytes)} of "
            f"{fmt_bytes(self.free_bytes)} free, {AUTO_FREE_FRACTION:.0%} usable)"
        )


def auto_micro_batch(spec: Any, free_bytes: int) -> AutoMicroBatch:
    """``train.micro_batch = auto``: the largest micro-batch of ``spec``'s batch whose planned
    step (the plan's fake-tensor step, as ``repro plan``) fits ``AUTO_FREE_FRACTION`` of
    ``free_bytes``. The whole batch when it fits; ``micro_batch = 0`` when not even one example
    does (the parameters, gradients and optimizer state alone)."""
    budget = int(free_bytes * AUTO_FREE_FRACTION)
    batch = int(spec.train.kwargs()["batch_size"])
    # the run's global random state is left as it was (the plan seeds and draws: fork_rng)
    with torch.random.fork_rng(devices=[]):
        return _auto(spec, batch, budget, free_bytes)


def _auto(spec: Any, batch: int, budget: int, free_bytes: int) -> AutoMicroBatch:
    noise = real_noise(spec)  # real tensors (its ladder is computed in Python)
    with fake_mode():
        torch.manual_seed(0)
        m = _Measured(spec, batch, target_settings(spec.train.kwargs()), noise)
        p_full, fixed = m.steady_peak(batch)
        k = _largest_fitting(m, batch, budget, p_full, fixed)
        if k is None:
            return AutoMicroBatch(0, batch, fixed, free_bytes)
        if k >= batch:
            return AutoMicroBatch(None, batch, p_full, free_bytes)
        return AutoMicroBatch(k, batch, m.step_peak(k, None) + m.input_bytes * (batch - k), free_bytes)


def markdown(result: PlanResult) -> str:
    """The plan as a markdown table (docs/scale.md is made of these)."""
    devs = list(result.devices)
    head = ["experiment", "network", "shape", "batch", "params", "peak"] + [f"μbatch {d}" for d in devs]
    head += ["FLOPs", "ideal h"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in result.experiments:
        if e.error:
            rows.append(f"| {e.experiment} | error: {e.error} |")
            continue
        mb = ["-" if e.micro_batch.get(d, "x") == "x" else str(e.micro_batch.get(d) or "none") for d in devs]
        cells = [
            e.experiment,
            e.network or "-",
            "×".join(map(str, e.shape)),
            str(e.batch_size or "-"),
            f"{e.parameters / 1e6:.1f}M",
            fmt_bytes(e.peak_bytes),
            *mb,
            cost.fmt_flops(e.total_flops) if e.total_flops else "-",
            f"{e.ideal_hours:.3g}" if e.ideal_hours is not None else "-",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
