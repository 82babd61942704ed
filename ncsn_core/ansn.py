"""ANSN (Shen, "Adaptive Noise Score Networks"): noise with an adaptively estimated covariance.

The paper's reading is the default (docs/ansn.md, "Readings"): Haario's running covariance
(Eq. 2.5-2.6) Ĉ_0 = C_0, Ĉ_t = s_d·cov(X_0, …, X_{t−1}) + s_d·ε·I, s_d = 2.4²/d, t counting
training batches, of the *score* (§2.2: "an empirical estimate of score variance"; here X are
the network's score estimates σ_i·ŝ(x̃) of each batch, ``estimate_on = score``); noise levels
Σ_i = σ_i²·Ĉ, x̃ = x + Σ_i^{1/2}z; the loss Eq. 3.1 exactly, ½‖Σ_i⁻¹s_θ(x̃) + Σ_i⁻¹(x̃ − x)‖², so
the network outputs s_θ ≈ Σ_i·∇log q (``output = sigma_score``); sampling by Alg. 1 as printed
(:mod:`ncsn_core.ansn_sampling`). The project's constructions are named switches: trace
normalisation, the eigenvalue floor, covariance of the clean data (``estimate_on = data``), a
network giving the score or Ĉ·score, the whitened / σ² weightings and the Ĉ-preconditioned
sampler.

The running moments are float64 and merged per batch with Chan, Golub & LeVeque's pairwise
update, which equals the covariance of every point seen (Eq. 2.6 in closed form; for batches
of one point it is Haario et al.'s recursion, Eq. 2.8 with its (t + 1) term, docs/ansn.md).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from ncsn_core import distributed as dist
from ncsn_core.ansn_covariance import (
    Covariance,
    RunningCovariance,
    floor_diagonal,
    floor_full,
    floor_lowrank,
)
from ncsn_core.ansn_sampling import (
    AnnealedLangevinAlg1,
    PreconditionedLangevin,
    ansn_langevin,
    preconditioned_langevin,
)
from ncsn_core.declarations.ansn import FULL_MAX_DIM
from ncsn_core.errors import ReproError, TrainingError
from ncsn_core.losses import DSM, SIGMA_SQUARED, LossOut, _per_level
from ncsn_core.noise import NoiseSchedule

__all__ = [
    "ANSNDSM",
    "AdaptiveConfig",
    "AdaptiveNoise",
    "AnnealedLangevinAlg1",
    "Covariance",
    "PreconditionedLangevin",
    "RunningCovariance",
    "adaptive",
    "ansn_dsm",
    "ansn_langevin",
    "data_diagonal",
    "floor_diagonal",
    "floor_full",
    "floor_lowrank",
    "geometric_ladder",
    "preconditioned_langevin",
]


def geometric_ladder(sigma_max: float, sigma_min: float, levels: int) -> torch.Tensor:
    """σ_i = σ_max·(σ_min/σ_max)^{(i−1)/(L−1)}, i = 1 … L (NCSN §4.1), computed in float64 with
    exact ends; one level gives [σ_min] (NCSN's single-σ baseline)."""
    if levels == 1:
        return torch.tensor([float(sigma_min)])
    t = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    s = sigma_max * (sigma_min / sigma_max) ** t
    s[0], s[-1] = sigma_max, sigma_min
    return s.to(torch.float32)


# ----------------------------------------------------------------------------- the noise
@attrs.frozen
class AdaptiveConfig:
    """The noise's settings. These Python defaults are the project's construction, kept for
    code that builds a noise by hand; what an .exp file gets by default is the paper's reading
    (declarations/ansn.py: normalize = none, estimate_on = score, jitter = 0,
    output = sigma_score)."""

    form: str = "diagonal"
    rank: int = 16
    s_d: float = 0.0  # 0: Haario's 2.4²/d
    eps: float = 1e-5
    c0: str = "identity"
    normalize: str = "trace"
    estimate_on: str = "data"
    jitter: float = 1e-6
    warmup: int = 0
    floor: float = 0.0  # eigenvalues of Ĉ below floor·(mean eigenvalue) raised to it (0 = off)
    # What the network outputs: score: s; preconditioned: u = Ĉs; sigma_score: Σ_i·s (Eq. 3.1).
    output: str = "score"


class AdaptiveNoise(NoiseSchedule):
    """Noise levels Σ_i = σ_i²·Ĉ_t with Ĉ_t estimated from the training batches before batch t.

    The trainer calls ``update(x)`` with every clean batch before perturbing it: Ĉ_t is built
    from batches 0 … t−1 (Eq. 2.5) and then batch t joins the estimate. ``cov`` is the Ĉ the
    current batch is perturbed with; after training it is the one the last batch used, and it
    is what the preconditioned sampler uses.
    """

    def __init__(
        self, sigmas: torch.Tensor, dim: int, config: AdaptiveConfig, c0: Covariance | None = None
    ) -> None:
        super().__init__(sigmas)
        self.dim, self.cfg = dim, config
        self.s_d = config.s_d or 2.4**2 / dim  # Haario's s_d = 2.4²/d (Eq. 2.5)
        self.host_sigmas = [float(v) for v in self.sigmas.tolist()]  # no host sync per step
        self.device: Any = "cpu"
        self.stats = RunningCovariance(dim, config.form, config.rank)
        self.c0 = c0 if c0 is not None else Covariance.identity(dim)
        self.cov = self.c0
        self.batches = 0  # t: clean batches seen
        self.residual_batches = 0
        self._gen: torch.Generator | None = None  # estimate_on = perturbed: its own, checkpointed stream
        # estimate_on = score / residual: the rows the loss reports for batch t, held until this
        # rank's whole part of the batch is in (``_expect`` rows; micro-batches report slices),
        # then gathered from every rank in rank order and merged once, as one process merges
        # the whole batch (so Ĉ is the one-process Ĉ for any process count or micro-batch).
        self._pending: list[tuple[torch.Tensor, str]] = []
        self._expect: int | None = None
        # Ĉ (with its Cholesky factor for form = full) from the running moments of n points: the
        # factorisation runs once per covariance update, on the noise's device, and is reused
        # until new points join (a refresh without new points costs nothing).
        self._estimated: tuple[int, Covariance] | None = None

    def to(self, device: Any) -> AdaptiveNoise:
        super().to(device)
        self.device = device
        self.stats.to(device)
        self.c0, self.cov = self.c0.to(device), self.cov.to(device)
        return self

    # ---- Eq. 2.5
    def _normalised(self, total: torch.Tensor) -> torch.Tensor:
        """The divisor making Ĉ's mean eigenvalue trace(Ĉ)/D equal 1 (normalize = trace)."""
        return total / self.dim if self.cfg.normalize == "trace" else torch.ones_like(total)

    def estimate(self) -> Covariance:
        """Ĉ = s_d·cov(points so far) + s_d·ε·I, normalised, plus jitter on the diagonal."""
        c, st, sd = self.cfg, self.stats, self.s_d
        if c.form == "full":
            m = sd * st.covariance() + sd * c.eps * torch.eye(self.dim, dtype=torch.float64, device=st.device)
            m = floor_full(m / self._normalised(torch.trace(m)), c.floor)
            return Covariance.full(m + c.jitter * torch.eye(self.dim, dtype=torch.float64, device=st.device))
        var = st.variances()
        if c.form == "diagonal":
            d = sd * var + sd * c.eps
            return Covariance.diagonal(floor_diagonal(d / self._normalised(d.sum()), c.floor) + c.jitter)
        w = st.lowrank_factor()
        # The diagonal part is what the rank-k part leaves of the exact variances, so diag(Ĉ) is exact.
        d = sd * (var - (w * w).sum(1)).clamp(min=0) + sd * c.eps
        w = math.sqrt(sd) * w
        scale = self._normalised(d.sum() + (w * w).sum())
        d, w = floor_lowrank(d / scale, w / scale.sqrt(), c.floor)
        return Covariance.lowrank(d + c.jitter, w)

    def _refresh(self) -> None:
        # Ĉ_t = C_0 for t ≤ warmup (Eq. 2.5's t = 0 case, extended) and while cov(·) is undefined.
        if self.batches <= self.cfg.warmup or self.stats.n < 2:
            self.cov = self.c0
        else:
            if self._estimated is None or self._estimated[0] != self.stats.n:
                self._estimated = (self.stats.n, self.estimate().to(self.device))
            self.cov = self._estimated[1]

    def update(self, x: torch.Tensor) -> None:
        """Called with clean batch t before it is perturbed: Ĉ_t from batches 0 … t−1, then
        batch t (clean or perturbed with Ĉ_t, per ``estimate_on``) joins the estimate."""
        on = self.cfg.estimate_on
        if self._pending:  # fewer rows than the batch's were reported: merge what came
            self._flush()
        # The rows this rank's loss evaluates of batch t (x is the global batch, docs/scale.md).
        self._expect = x.shape[0] // dist.world()
        if on in ("residual", "score") and self.batches >= 1 and self.residual_batches == 0:
            what = "residuals" if on == "residual" else "score estimates"
            raise ReproError(
                f"noise adaptive: estimate_on = {on} needs the model's {what}, which loss ansn_dsm "
                "reports (update_residual, update_score); use loss ansn_dsm, or estimate_on = data"
            )
        self._refresh()
        if on == "data":
            self._guarded_update(x, "training batch", self.batches + 1)
        elif on == "perturbed":
            if self._gen is None:
                self._gen = torch.Generator(device=x.device).manual_seed(0x5EED)
            idx = torch.randint(0, self.num_levels, (x.shape[0],), device=x.device, generator=self._gen)
            self._guarded_update(
                x + self.sample_noise(x, idx, self._gen), "perturbed batch", self.batches + 1
            )
        self.batches += 1

    def _guarded_update(self, x: torch.Tensor, what: str, step: int) -> None:
        """Merge a batch into the running covariance unless it holds a NaN or an infinity: then
        the estimate is left as it was and training stops, naming the step (one host sync per
        batch, ANSN only)."""
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = x[~finite]
            raise TrainingError(
                f"noise adaptive: the {what} of step {step} holds {int(bad.numel())} non-finite "
                f"value(s) (e.g. {float(bad[0])}); the running covariance was not updated with it. "
                f"Stopping; the last good checkpoint is kept."
            )
        self.stats.update(x)

    def _report(self, rows: torch.Tensor, what: str) -> None:
        """Hold a slice of batch t's rows [b, D] (detached); once this rank's part of the batch
        is in, merge the rows of every rank (in rank order: the global batch's order) at once."""
        self._pending.append((rows.detach(), what))
        held = sum(int(r.shape[0]) for r, _ in self._pending)
        if self._expect is None or held >= self._expect:
            self._flush()

    def _flush(self) -> None:
        """Merge the held rows: gathered from every rank (a collective: every rank flushes at
        the same point of the step, its part of the batch being the same size), then one
        guarded update of the running moments."""
        what = self._pending[0][1]
        rows = torch.cat([r for r, _ in self._pending], 0)
        self._pending = []
        self._guarded_update(dist.all_gather_rows(rows), what, self.batches)
        self.residual_batches += 1

    def update_residual(self, r: torch.Tensor, idx: torch.Tensor | None = None) -> None:
        """Optional hook (loss ansn_dsm calls it after perturbing batch t): with
        estimate_on = residual, the score residuals r = s − target join the estimate, scaled to
        σ_i·r when ``idx`` is given (NCSN's level-free scale). A no-op otherwise."""
        if self.cfg.estimate_on != "residual":
            return
        r = self.score_residual(r.detach(), idx).reshape(r.shape[0], -1)
        if idx is not None:
            r = r * self.scale(idx).to(r.dtype)[:, None]
        self._report(r, "score residual")

    def update_score(self, out: torch.Tensor, idx: torch.Tensor) -> None:
        """Hook (loss ansn_dsm calls it with the network's output on perturbed batch t): with
        estimate_on = score (§2.2, the default), the model's score estimates in NCSN's level-free
        scale, σ_i·ŝ(x̃) with ŝ the score read off the output (``score_of``), join the estimate,
        so Ĉ_{t+1} = s_d·cov(every score estimate so far) + s_d·ε·I. A no-op otherwise. The
        rows of micro-batches and of every data-parallel rank are merged as the one-process
        batch (``_report``)."""
        if self.cfg.estimate_on != "score":
            return
        flat = out.detach().reshape(out.shape[0], -1)
        s = self._score_flat(flat, idx)
        self._report(s * self.scale(idx).to(s.dtype)[:, None], "score estimate")

    # ---- what the network outputs
    @property
    def preconditioned_output(self) -> bool:
        """Is the network's output something other than the score (``output`` = preconditioned or
        sigma_score)? The runner then reads the score off it with :meth:`score_of` and gives
        stages the raw output too (SampleContext.output)."""
        return self.cfg.output != "score"

    def _score_flat(self, flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The score from output rows [B, D] at levels ``idx`` [B]: out, Ĉ⁻¹u, or
        Σ_i⁻¹u = Ĉ⁻¹u/σ_i² (``output = sigma_score``)."""
        o = self.cfg.output
        if o == "score":
            return flat
        s = self.cov.solve(flat)
        if o == "sigma_score":
            s = s / (self.scale(idx).to(s.dtype) ** 2)[:, None]
        return s

    def score_residual(self, r: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The score's residual ŝ − t from the output's residual r = out − target_out (the map
        from output to score is linear): r, Ĉ⁻¹r, or Σ_i⁻¹r (``output = sigma_score``)."""
        return self._score_flat(r.reshape(r.shape[0], -1), idx).view_as(r)

    # ---- the NoiseSchedule interface
    def sample_noise(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Σ_i^{1/2} z = σ_i·M z, shaped like x (D standard normals per sample, as isotropic noise)."""
        z = torch.randn((x.shape[0], self.dim), generator=generator, device=x.device, dtype=x.dtype)
        return (self.scale(idx)[:, None] * self.cov.sqrt_mul(z)).view_as(x)

    def perturb(
        self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̃ = x + σ_i M z and the target of the network's output, computed from z without
        forming Σ_i⁻¹: for the score (``output = score``) ∇_x̃ log N(x̃; x, Σ_i) = −Σ_i⁻¹(x̃ − x)
        = −M^{−T}z/σ_i (§3.1); for u = Ĉs (``preconditioned``) −(x̃ − x)/σ_i² = −Mz/σ_i; for
        Σ_i·s (``sigma_score``, Eq. 3.1's minimiser) −(x̃ − x) = −σ_i·Mz."""
        z = torch.randn((x.shape[0], self.dim), generator=generator, device=x.device, dtype=x.dtype)
        sig = self.scale(idx)[:, None]
        m_z = self.cov.sqrt_mul(z)
        noise = sig * m_z
        o = self.cfg.output
        if o == "sigma_score":
            target = -noise
        elif o == "preconditioned":
            target = -m_z / sig
        else:
            target = -self.cov.inv_sqrt_t_mul(z) / sig
        return x + noise.view_as(x), target.view_as(x)

    def score_of(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """The score from the network's output at level i: out, Ĉ⁻¹u, or Σ_i⁻¹u."""
        if not self.preconditioned_output:
            return out
        idx = torch.full((out.shape[0],), int(i), device=out.device, dtype=torch.long)
        return self._score_flat(out.reshape(out.shape[0], -1), idx).view_as(out)

    def preconditioned_of(self, out: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉs from the network's output: Ĉ·out, u itself (``preconditioned``: no solve), or
        u/σ_i² (``sigma_score``: Σ_i s/σ_i²)."""
        o = self.cfg.output
        if o == "preconditioned":
            return out
        if o == "sigma_score":
            return out / self.host_sigmas[i] ** 2
        return self.precondition(out, i)

    def quad(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(s − t)ᵀΣ_i(s − t) per sample from the output's residual v (the score's residual
        itself for ``output = score``; else converted by :meth:`score_residual`)."""
        flat = self.score_residual(v, idx).reshape(v.shape[0], -1)
        w = self.cov.sqrt_t_mul(flat)
        return self.scale(idx) ** 2 * (w * w).sum(1)

    def whiten(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Σ_i^{T/2} v = σ_i·Mᵀv (so ‖whiten(v)‖² = vᵀΣ_i v), shaped like v."""
        return (self.scale(idx)[:, None] * self.cov.sqrt_t_mul(v.reshape(v.shape[0], -1))).view_as(v)

    def precondition(self, v: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉ v (the same Ĉ for every level)."""
        return self.cov.mul(v.reshape(v.shape[0], -1)).view_as(v)

    def precondition_sqrt(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Ĉ^{1/2} z (= M z, so a standard normal z gives covariance Ĉ)."""
        return self.cov.sqrt_mul(z.reshape(z.shape[0], -1)).view_as(z)

    def draw_preconditioned(
        self, shape: torch.Size | tuple[int, ...], device: Any, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Ĉ^{1/2}z for fresh standard normal z, shaped ``shape``."""
        z = torch.randn(tuple(shape), generator=gen, device=device)
        return self.precondition_sqrt(z, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "stats": self.stats.state_dict(),
            "batches": self.batches,
            "residual_batches": self.residual_batches,
            "cov": self.cov.state_dict(),  # the Ĉ the last batch used (not recomputable from stats)
            "c0": self.c0.state_dict(),
            "gen": None if self._gen is None else self._gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.stats.load_state_dict(state["stats"])
        self._estimated = None
        self.batches = int(state["batches"])
        self.residual_batches = int(state.get("residual_batches", 0))
        if "c0" in state:
            self.c0 = Covariance.from_state(state["c0"], self.device)
        if "cov" in state:
            self.cov = Covariance.from_state(state["cov"], self.device)
        else:  # an older checkpoint: the estimate from every batch seen
            self.cov = self.c0 if self.stats.n < 2 else self.estimate().to(self.device)
        if state.get("gen") is not None:
            self._gen = torch.Generator(device=self.device)
            self._gen.set_state(state["gen"].to("cpu"))


def data_diagonal(
    data: Any, dim: int, s_d: float, eps: float, normalize: str, jitter: float, floor: float = 0.0
) -> Covariance:
    """C_0 = s_d·(diag(var of the training set) + ε·I), normalised as Ĉ: Eq. 2.5's form with the
    whole training set's per-coordinate variances (no augmentation), read in chunks."""
    st = RunningCovariance(dim, "diagonal")
    raw = data.train
    for k in range(0, int(raw.shape[0]), 4096):
        chunk = raw[k : k + 4096]
        st.update(chunk.double() / 255.0 if chunk.dtype == torch.uint8 else chunk.double())
    d = s_d * st.variances() + s_d * eps
    if normalize == "trace":
        d = d / d.mean()
    return Covariance.diagonal(floor_diagonal(d, floor) + jitter)


def adaptive(
    sigma_max: float,
    sigma_min: float,
    levels: int,
    form: str,
    rank: int,
    s_d: float,
    eps: float,
    c0: str,
    normalize: str,
    estimate_on: str,
    jitter: float,
    warmup: int,
    floor: float = 0.0,
    output: str = "score",
    data: Any = None,
) -> AdaptiveNoise:
    if levels > 1 and sigma_max <= sigma_min:
        raise ReproError(f"noise adaptive: sigma_max ({sigma_max:g}) must exceed sigma_min ({sigma_min:g})")
    if data is None:
        raise ReproError("noise adaptive needs the data (its dimension)")
    dim = math.prod(data.shape)
    if form == "full" and dim > FULL_MAX_DIM:
        raise ReproError(
            f"noise adaptive: form = full needs a {dim}×{dim} matrix factorised every batch; "
            f"use form = lowrank (or diagonal) for D = {dim}"
        )
    cfg = AdaptiveConfig(form, rank, s_d, eps, c0, normalize, estimate_on, jitter, warmup, floor, output)
    noise = AdaptiveNoise(geometric_ladder(sigma_max, sigma_min, levels), dim, cfg)
    if c0 == "data_diag":
        noise.c0 = noise.cov = data_diagonal(data, dim, noise.s_d, eps, normalize, jitter, floor)
    return noise


# ----------------------------------------------------------------------------- the loss
class ANSNDSM(DSM):
    """DSM with a covariance noise (§3.1). Weightings of the residual r = out − target_out:

    * ``eq31`` (the paper): Eq. 3.1 as written, ½‖Σ_i⁻¹s_θ(x̃) + Σ_i⁻¹(x̃ − x)‖². Its minimiser
      is s_θ = −E[x̃ − x | x̃] = Σ_i·∇log q_Σ(x̃), so with ŝ = Σ_i⁻¹s_θ it is ½‖ŝ − t‖², plain DSM
      with λ = 1 in the score; computed as that (``noise.score_residual``), whatever the output
      reading. With ``output = sigma_score`` this is Eq. 3.1 on the network's output exactly.
    * ``whitened`` (the project's): ½(ŝ − t)ᵀΣ_i(ŝ − t), NCSN's λ = σ² generalised;
    * ``sigma2`` (the project's): ½σ_i²‖out − target_out‖² on the raw output.

    For isotropic noise eq31 is ½‖s − t‖² and whitened / sigma2 are NCSN's ½σ²‖s − t‖². The
    loss hands the output to the noise (``update_score``) and the residual (``update_residual``)
    for ``estimate_on`` = score / residual."""

    def __init__(self, weighting: str) -> None:
        super().__init__(SIGMA_SQUARED)
        self.weighting = weighting

    def loss(
        self, model: Any, x: torch.Tensor, idx: torch.Tensor, noise: NoiseSchedule, gen: Any, part: Any
    ) -> LossOut:
        if not getattr(noise, "perturbs", True):
            return super().loss(model, x, idx, noise, gen, part)  # its error
        x_t, target = noise.perturb(x, idx, gen)
        if part is not None:
            x_t, target, idx = x_t[part], target[part], idx[part]
        out = model(x_t, idx)
        report = getattr(noise, "update_score", None)
        if report is not None:  # estimate_on = score: batch t's score estimates join Ĉ_{t+1}
            report(out, idx)
        per = self.per_sample(out - target, idx, noise)
        ps, pc = _per_level(per, idx, noise.num_levels)
        return LossOut(per.mean(), ps, pc)

    def per_sample(self, r: torch.Tensor, idx: torch.Tensor, noise: NoiseSchedule) -> torch.Tensor:
        report = getattr(noise, "update_residual", None)
        if report is not None:  # estimate_on = residual: batch t's residuals join Ĉ_{t+1}
            report(r, idx)
        if self.weighting == "eq31":
            to_score = getattr(noise, "score_residual", None)
            v = r if to_score is None else to_score(r, idx)
            return 0.5 * v.reshape(v.shape[0], -1).pow(2).sum(1)
        quad = getattr(noise, "quad", None)
        if self.weighting == "whitened" and quad is not None:
            return 0.5 * quad(r, idx)
        return super().per_sample(r, idx, noise)  # isotropic noise: Σ = σ²I, the same value


def ansn_dsm(weighting: str) -> ANSNDSM:
    return ANSNDSM(weighting)
