"""Sampler stages and initial samples (NCSN Eq. 4, Alg. 1, Alg. 2; final denoising).

Filled in by the samplers' owner; :class:`SampleContext` is the shared contract.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import torch

from ncsn_core.declarations.samplers import unstable_step
from ncsn_core.errors import ReproError, SamplerDiverged
from ncsn_core.noise import NoiseSchedule


@attrs.define
class SampleContext:
    """What a sampler stage may use.

    ``score(x, i)`` evaluates the score model at level index ``i`` (an int; the stage
    passes the whole batch). ``exact_score(x, sigma)`` exists for toy data with a known
    density. ``record(name, x)`` stores intermediate samples when recording is on.
    """

    score: Callable[[torch.Tensor, int], torch.Tensor]
    noise: NoiseSchedule
    generator: torch.Generator | None = None
    record: Callable[[str, torch.Tensor], None] | None = None
    exact_score: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    data: Any = None
    stage_name: str = ""
    # The global index of the batch's first sample (the runner's batches are drawn in any order,
    # on any process), and the run's seed: what a stage keyed by sample index may depend on.
    first_index: int | None = None
    seed: int = 0
    # The network's raw output at (x, i) where it is not the score (noise adaptive with
    # output = preconditioned gives u = Ĉs; ``score`` is then Ĉ⁻¹u); None: the output is the score.
    output: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    @property
    def sigmas(self) -> torch.Tensor:
        return self.noise.sigmas


# ----------------------------------------------------------------------------- speed settings
def fast_network(
    model: torch.nn.Module, precision: str = "fp32", compile: str = "off", device: Any = "cpu"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The score network as the sampler calls it, per ``sample.precision`` / ``sample.compile``
    (schema.SAMPLE_SPEED; in no hash). fp32 + off is the model itself (the reference path);
    bf16 runs it under autocast and returns float32; ``compile = on`` wraps it in torch.compile,
    ``graphs`` in torch.compile(mode = "reduce-overhead"), which captures CUDA graphs (one per
    batch shape: the level index is a tensor input, so every noise level replays the same
    graph). Off CUDA the same mode compiles without graphs (so the path runs in CPU tests).
    Callers run it under ``torch.inference_mode()``."""
    dev = torch.device(device)
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = model
    if precision == "bf16":

        def fn(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                out = model(x, idx)
            return out.float()

    if compile == "on":
        fn = torch.compile(fn)
    elif compile == "graphs":
        fn = torch.compile(fn, mode="reduce-overhead")
    return fn


# ----------------------------------------------------------------------------- helpers
_LEVEL_HOOK: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar(
    "repro_level_hook", default=None
)


@contextmanager
def on_level_end(hook: Callable[[str, int, int], None]) -> Iterator[None]:
    """Call ``hook(stage, i, levels)`` after each noise level of every stage run inside (at
    :func:`check_finite`, the host sync a level already has: progress adds none)."""
    token = _LEVEL_HOOK.set(hook)
    try:
        yield
    finally:
        _LEVEL_HOOK.reset(token)


def check_finite(
    flag: torch.Tensor, stage: str, i: int, sigma: float, cause: str = "", levels: int = 0
) -> None:
    """One host sync per noise level: raise if any non-finite value appeared; then tell the
    level-end hook (:func:`on_level_end`), if any, that level ``i`` of ``levels`` is done."""
    hook = _LEVEL_HOOK.get()
    if not bool(flag):
        if hook is not None:
            hook(stage, i, levels or i + 1)
        return
    raise SamplerDiverged(
        f"{stage} diverged at noise level {i + 1} (σ = {sigma:.4g}): non-finite values in the samples. "
        + (cause or "Lower step_size (or check the score model).")
    )


def standard_normal(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like x (its device and dtype), drawn from ``gen``."""
    return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def nonfinite(x: torch.Tensor) -> torch.Tensor:
    """A 0-d bool on x's device: does x hold a NaN or an infinity? (no host sync)"""
    return ~torch.isfinite(x).all()


def host_sigmas(ctx: SampleContext) -> list[float]:
    """σ₁ … σ_L as Python floats: one transfer per run, none per step."""
    return [float(s) for s in ctx.sigmas.detach().cpu().tolist()]


def stage_score(
    ctx: SampleContext, use_exact: bool, sigmas: list[float]
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``score(x, i)``: the network at level i, or with ``use_exact`` the data's exact score at σ_i."""
    if not use_exact:
        return ctx.score
    exact = _exact_score(ctx)
    return lambda x, i: exact(x, sigmas[i])


def _exact_score(ctx: SampleContext) -> Callable[[torch.Tensor, float], torch.Tensor]:
    if ctx.exact_score is None:
        raise ReproError(
            f"{ctx.stage_name or 'this stage'}: use_exact = true needs data with a known density (mixture2d)"
        )
    return ctx.exact_score


class KnownPixels:
    """Alg. 2's known pixels for :func:`sample_annealed_langevin`: the reference x_ref and the
    mask m (1 = known). At the start of level i, y = x_ref + σ_i·z̃ is drawn (lines 4-5); after
    every step x ← x ⊙ (1 − m) + y ⊙ m (line 9), done with ``where`` so that the known pixels
    equal y exactly. With ``at_level_start`` (the official code) line 9's replacement is also
    done right after lines 4-5, before the level's first step (line 8) sees x, so that every
    score evaluation of level i sees known pixels at σ_i; without it (Alg. 2 as printed) the
    first step of level i sees the previous level's y (or, at i = 1, the initial x̃₀).
    """

    def __init__(self, reference: torch.Tensor, mask: torch.Tensor, at_level_start: bool = True) -> None:
        self.reference, self.known, self.at_level_start = reference, mask.bool(), at_level_start
        self.y = reference

    def begin_level(self, x: torch.Tensor, sigma: float, gen: torch.Generator | None) -> torch.Tensor:
        self.y = self.reference + sigma * standard_normal(self.reference, gen)  # Alg. 2, lines 4-5
        return self.project(x) if self.at_level_start else x  # line 9, before line 8's first step

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.known, self.y, x)  # Alg. 2, line 9


def sample_annealed_langevin(
    score: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    sigmas: list[float],
    *,
    step_size: float,
    steps_per_level: int,
    generator: torch.Generator | None = None,
    score_scale: Callable[[int, float], float] | None = None,
    precondition: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    noise_transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    known: KnownPixels | None = None,
    record: Callable[[str, torch.Tensor], None] | None = None,
    record_every: int = 0,
    name: str = "annealed_langevin",
    before_last_step: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (NCSN Alg. 1), the one loop every annealed sampler runs:

        α_i = ε·σ_i²/σ_L²;  x ← x + α_i/2·k_i·P_i(s(x, i)) + √α_i·N_i(z),  T steps per level,

    for the host list ``sigmas`` = σ₁ … σ_L and ``score(x, i)`` the model at level index i.
    Hooks (all optional; without them this is Alg. 1 as printed):

    - ``score_scale(i, σ_i)`` = k_i (1 by default; ANSN's ``divide_sigma`` is 1/σ_i);
    - ``precondition(s, i)`` = P_i, applied to the score (ANSN: Ĉ s);
    - ``noise_transform(z, i)`` = N_i, applied to z ~ N(0, I) (ANSN: Ĉ^{1/2} z);
    - ``known``: Alg. 2's known pixels (:class:`KnownPixels`): ``begin_level`` before the
      level's first step (it draws y), ``project`` after every step.

    Random draws, in order: per level whatever ``known.begin_level`` draws, then one z per step
    (after the step's score evaluation). ``record_every`` = k > 0 calls ``record`` after every
    k-th step counted over all levels, named ``{name}:level{i}`` at a level's last step and
    ``{name}:level{i}.step{t}`` otherwise. The host synchronises once per level (a non-finite
    value raises :class:`SamplerDiverged` naming ``name``, the level and σ_i).
    ``before_last_step`` returns the state before the very last update (every draw and network
    evaluation still made): the official NCSN code's last image (anneal_runner.py keeps
    clamp(x) before each step, so its final sample has had L·T − 1 updates).
    """
    t_all = 0
    prev = x
    for i, sigma in enumerate(sigmas):
        alpha = step_size * sigma**2 / sigmas[-1] ** 2  # Alg. 1, line 3
        coef = 0.5 * alpha * (1.0 if score_scale is None else score_scale(i, sigma))
        if known is not None:
            x = known.begin_level(x, sigma, generator)
        bad = torch.zeros((), dtype=torch.bool, device=x.device)
        for t in range(steps_per_level):
            prev = x
            s = score(x, i)
            if precondition is not None:
                s = precondition(s, i)
            z = standard_normal(x, generator)
            if noise_transform is not None:
                z = noise_transform(z, i)
            x = x + coef * s + alpha**0.5 * z  # Alg. 1, line 6
            if known is not None:
                x = known.project(x)
            bad |= nonfinite(x)  # no host sync per step
            t_all += 1
            if record_every and record and t_all % record_every == 0:
                suffix = "" if t + 1 == steps_per_level else f".step{t + 1}"
                record(f"{name}:level{i + 1}{suffix}", x)
        why = unstable_step(step_size, sigmas)
        check_finite(bad, name, i, sigma, f"The likely cause: {why}" if why else "", levels=len(sigmas))
    return prev if before_last_step else x


# ----------------------------------------------------------------------------- stages
class Langevin:
    """Langevin dynamics, Eq. 4: x ← x + ε/2·s(x) + √ε·z, T steps at one fixed noise level.

    ``level`` picks the network's level (Python indexing: −1 is σ_L). With ``use_exact`` the
    chain uses the data's own exact score (σ = 0), NCSN Fig. 3(b). The single-σ baseline of
    App. B.2 is this stage with T = 1000, ε = 2e-5 on a one-level ladder.
    """

    def __init__(self, steps: int, step_size: float, level: int, use_exact: bool, record_every: int) -> None:
        self.steps, self.eps, self.level = steps, step_size, level
        self.use_exact, self.record_every = use_exact, record_every

    def _level(self, L: int) -> int:
        if not -L <= self.level < L:
            raise ReproError(
                f"stage langevin: level = {self.level} is outside the {L} noise level(s) "
                f"(use 0 … {L - 1}, or −1 for the last)"
            )
        return self.level % L

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        sig = host_sigmas(ctx)
        i = self._level(len(sig))
        name = ctx.stage_name or "langevin"
        exact = _exact_score(ctx) if self.use_exact else None
        bad = torch.zeros((), dtype=torch.bool, device=x.device)
        for t in range(self.steps):
            s = ctx.score(x, i) if exact is None else exact(x, 0.0)
            x = x + 0.5 * self.eps * s + self.eps**0.5 * standard_normal(x, ctx.generator)  # Eq. 4
            bad |= nonfinite(x)
            if self.record_every and ctx.record and (t + 1) % self.record_every == 0:
                ctx.record(f"{name}:step{t + 1}", x)
        check_finite(bad, name, i, 0.0 if self.use_exact else sig[i], levels=len(sig))
        return x

    def nfe(self, num_levels: int) -> int:
        return 0 if self.use_exact else self.steps


@attrs.define
class AnnealedLangevin:
    """Annealed Langevin dynamics, Alg. 1 exactly as written:
    α_i = ε·σ_i²/σ_L²;  x ← x + α_i/2·s(x, σ_i) + √α_i·z,  T steps for each i = 1 … L.

    The official code's step_lr equals ε/2: its update is x + step·s + √(2·step)·z with
    step = step_lr·(σ_i/σ_L)², which is Alg. 1 with α_i = 2·step. So the official
    step_lr = 2e-5 is ε = 4e-5 here, and the paper's printed ε = 2e-5 is step_lr = 1e-5.

    ``record_every`` = k > 0 records the batch after every k-th step (counted over all levels,
    so k = T records the end of each level, NCSN Fig. 4). The host synchronises once per level.
    """

    T: int  # steps per level
    eps: float  # ε
    use_exact: bool
    record_every: int
    final: str = "after_last_step"  # before_last_step: the official NCSN code's last image

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        sig = host_sigmas(ctx)
        return sample_annealed_langevin(
            stage_score(ctx, self.use_exact, sig), x, sig, step_size=self.eps, steps_per_level=self.T,
            generator=ctx.generator, record=ctx.record, record_every=self.record_every,
            name=ctx.stage_name or "annealed_langevin", before_last_step=self.final == "before_last_step",
        )  # fmt: skip

    def nfe(self, num_levels: int) -> int:
        return 0 if self.use_exact else self.T * num_levels


class Denoise:
    """Final denoising: x + σ_L²·s(x, σ_L), Tweedie's formula for E[x | x̃] at the last level
    (the NCSNv2 paper's "w/ denoising"; Jolicoeur-Martineau et al.). One network evaluation."""

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        sig = host_sigmas(ctx)
        L = len(sig)
        x = x + sig[-1] ** 2 * ctx.score(x, L - 1)
        check_finite(nonfinite(x), ctx.stage_name or "denoise", L - 1, sig[-1], levels=L)
        return x

    def nfe(self, num_levels: int) -> int:
        return 1


def make_mask(
    shape: tuple[int, ...], kind: str, fraction: float, gen: torch.Generator | None, device: Any
) -> torch.Tensor:
    """Alg. 2's m for one image of ``shape`` (C, H, W): 1 where pixels are known, 0 where occluded.

    Each name says what is occluded:
    ``right``: the right ``fraction`` of the columns (0.5: the right half, the left half known;
    the official NCSN inpainting);
    ``bottom``: the bottom ``fraction`` of the rows (0.5: the lower half);
    ``center``: a centred rectangle with ``fraction`` of the area;
    ``random``: each pixel (all channels together) with probability ``fraction``.
    Older names: ``half`` = ``bottom``, ``left`` = ``right`` (it named the known part).
    """
    c, h, w = shape
    m = torch.zeros(shape, device=device)
    if kind in ("bottom", "half"):
        m[:, : int(round(h * (1 - fraction))), :] = 1
    elif kind in ("right", "left"):
        m[:, :, : int(round(w * (1 - fraction)))] = 1
    elif kind == "center":
        m[:] = 1
        ch, cw = int(round(h * fraction**0.5)), int(round(w * fraction**0.5))
        t, l_ = (h - ch) // 2, (w - cw) // 2
        m[:, t : t + ch, l_ : l_ + cw] = 0
    elif kind == "random":
        u = torch.rand((1, h, w), generator=gen, device=device)
        m = (u >= fraction).to(torch.float32).expand(c, h, w).clone()
    else:
        raise ValueError(f"unknown mask {kind!r}")
    return m


def reference_images(data: Any, split: str, start: int, n: int) -> torch.Tensor:
    """Images ``start … start + n − 1`` of ``split`` (cycling if the split is shorter), as
    float32 in [0, 1] without augmentation; only those rows are converted."""
    raw = getattr(data, split, None)
    if not isinstance(raw, torch.Tensor):
        full = data.as_float(split)  # a source without raw tensors
        return full[(torch.arange(n) + start) % full.shape[0]]
    rows = raw[(torch.arange(n) + start) % raw.shape[0]]
    if raw.dtype == torch.uint8:
        return rows.float() / 255.0
    return rows.float()


class Inpainting:
    """Alg. 2: annealed Langevin dynamics (Alg. 1's α_i and update) where, after every step, the
    known pixels are replaced by the reference image perturbed at the current level:
    y = x_ref + σ_i·z̃ (drawn once per level, lines 4-5), x ← x ⊙ (1 − m) + y ⊙ m (line 9).
    So at the end the known pixels equal y of the last level exactly (x_ref + σ_L·z̃).
    ``at_level_start`` (default, the official code): line 9's replacement is also done at the
    start of each level, before its first step (line 8); false: Alg. 2 as printed. The default
    mask is the official one, the right half occluded (``make_mask``).

    Reference images: sample j of a sampling run (counted over the stage's calls: the runner
    calls a stage once per batch) completes image j // ``repeats`` of ``split`` (the test split
    by default), so ``repeats`` consecutive samples are completions of one image (NCSN Fig. 6's
    rows) and, with ``repeats = 1``, the samples are the inpaintings of the split's first images,
    in order. One mask per call, shared by its batch; with ``mask = random`` and ``repeats > 1``
    one mask per reference image instead (drawn from a generator seeded by the run's generator
    seed and the image's index), so that every completion of an image has the same occlusion
    whatever the batches. ``last_mask`` and ``last_reference`` keep what the last call used
    (per sample); :meth:`used` gives, per reference image, the image and its mask (the runner
    saves them as ``inpainting.pt``).
    """

    def __init__(
        self,
        steps_per_level: int,
        step_size: float,
        mask: str,
        mask_fraction: float,
        split: str,
        at_level_start: bool = True,
        repeats: int = 1,
    ) -> None:
        self.T, self.eps, self.mask, self.fraction, self.split = (
            steps_per_level,
            step_size,
            mask,
            mask_fraction,
            split,
        )
        self.at_level_start = at_level_start
        self.repeats = int(repeats)
        self._offset = 0
        self.last_mask: torch.Tensor | None = None
        self.last_reference: torch.Tensor | None = None
        self._rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # image index → (image, mask)
        self._call_rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # the last call's

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        if x.dim() != 4:
            raise ReproError("stage inpainting needs image data (samples shaped C × H × W)")
        if ctx.data is None:
            raise ReproError("stage inpainting needs the experiment's data for its reference images")
        n, k = x.shape[0], self.repeats
        start = self._offset if ctx.first_index is None else ctx.first_index
        rows = [(start + i) // k for i in range(n)]  # the reference image of each sample
        first = rows[0]
        ref = reference_images(ctx.data, self.split, first, rows[-1] - first + 1)[torch.tensor(rows) - first]
        ref = ref.to(device=x.device, dtype=x.dtype)
        self._offset += n
        shape = tuple(x.shape[1:])
        if self.mask == "random" and k > 1:  # one mask per reference image, whatever the batches
            seed = ctx.seed  # the run's, not the batch's generator: one mask per image whatever the batches
            per_row = {
                r: make_mask(
                    shape, "random", self.fraction, torch.Generator().manual_seed(seed * 1_000_003 + r), "cpu"
                )
                for r in sorted(set(rows))
            }
            m = torch.stack([per_row[r] for r in rows]).to(device=x.device, dtype=x.dtype)
        else:
            m = make_mask(shape, self.mask, self.fraction, ctx.generator, x.device).to(x.dtype)
        self.last_mask, self.last_reference = m, ref
        ms = m.expand_as(ref)
        self._call_rows = {}
        for i, r in enumerate(rows):
            if r not in self._call_rows:
                self._call_rows[r] = (ref[i].detach().cpu(), ms[i].detach().cpu())
        self._rows.update(self._call_rows)
        name = ctx.stage_name or "inpainting"
        if ctx.record:
            ctx.record(f"{name}:occluded", ref * m)
        return sample_annealed_langevin(
            ctx.score, x, host_sigmas(ctx), step_size=self.eps, steps_per_level=self.T,
            generator=ctx.generator, known=KnownPixels(ref, m, self.at_level_start), name=name,
        )  # fmt: skip

    def nfe(self, num_levels: int) -> int:
        return self.T * num_levels

    def rows_of_call(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The last call's reference images and masks by image index (the runner stores them with
        the batch's samples and joins every batch's rows)."""
        return dict(self._call_rows)

    def used(self) -> dict[str, Any]:
        """What the calls so far used, one row per reference image in order: ``reference``
        (R × C × H × W in [0, 1]), ``mask`` (R × C × H × W, 1 = known) and ``repeats`` (sample
        j completes row j // repeats)."""
        keys = sorted(self._rows)
        return {
            "reference": torch.stack([self._rows[r][0] for r in keys]) if keys else torch.zeros(0),
            "mask": torch.stack([self._rows[r][1] for r in keys]) if keys else torch.zeros(0),
            "repeats": self.repeats,
        }


InitFn = Callable[[int, tuple[int, ...], "torch.Generator | None", Any, Any], torch.Tensor]
"""An initialiser: ``init(n, shape, generator, device, data) -> x`` of shape [n, *shape]."""


# ----------------------------------------------------------------------------- builders
def langevin(steps: int, step_size: float, level: int, use_exact: bool, record_every: int) -> Langevin:
    return Langevin(steps, step_size, level, use_exact, record_every)


def annealed_langevin(
    steps_per_level: int, step_size: float, use_exact: bool, record_every: int, final: str = "after_last_step"
) -> AnnealedLangevin:
    return AnnealedLangevin(steps_per_level, step_size, use_exact, record_every, final)


def inpainting(
    steps_per_level: int,
    step_size: float,
    mask: str,
    mask_fraction: float,
    split: str,
    at_level_start: bool,
    repeats: int = 1,
) -> Inpainting:
    return Inpainting(steps_per_level, step_size, mask, mask_fraction, split, at_level_start, repeats)


def denoise() -> Denoise:
    return Denoise()


def uniform(low: float, high: float) -> InitFn:
    def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
        return low + (high - low) * torch.rand((n, *shape), generator=gen, device=device)

    return init


def gaussian(mean: float, std: float) -> InitFn:
    def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
        return mean + std * torch.randn((n, *shape), generator=gen, device=device)

    return init


def data_noise(std: float) -> InitFn:
    def init(n: int, shape: tuple[int, ...], gen: Any, device: Any, data: Any) -> torch.Tensor:
        cpu = torch.Generator().manual_seed(
            int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=device))
        )
        idx = torch.randint(0, len(data), (n,), generator=cpu)
        x = data.batch(idx, cpu).to(device)
        return x + std * torch.randn(x.shape, generator=gen, device=device)

    return init
