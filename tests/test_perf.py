"""Speed settings (issue 13): each fast path's effect on the loss measured against the reference
path (fp32 eager, the official code's arithmetic) on a fixed batch; speed settings in no hash;
the EMA and ANSN changes bit-identical; FLOPs counted. Nothing here is timed (`repro bench`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dsl.compiler import compile_file
from ncsn_core import schema
from ncsn_core.bench import REFERENCE, make_trainer
from ncsn_core.training import EMA, FastPath

ROOT = Path(__file__).resolve().parents[1]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SHAPE, PARAMS, LEVELS, BATCH = (3, 8, 8), {"ngf": 8}, 10, 8


def _hashes(path: Path, sets: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    specs = compile_file(path, sets=sets, compute_auto=False)
    return [(s.hash(), s.train_hash(), s.sample_hash(), s.eval_hash()) for s in specs]


SPEED_SETS = (
    "train.precision = bf16",
    "train.channels_last = on",
    "train.compile = on",
    "train.fused_optimizer = on",
    "train.data_on_device = off",
    "sample.precision = bf16",
    "sample.compile = graphs",
)


@pytest.mark.parametrize("path", sorted((ROOT / "papers").glob("*.exp")), ids=lambda p: p.name)
def test_speed_settings_change_no_hash(path: Path) -> None:
    spec = compile_file(path, compute_auto=False)[0]
    sets = tuple(
        s for s in SPEED_SETS if getattr(spec, s.split(".")[0]) is not None
    )  # only blocks the file has
    assert _hashes(path, sets) == _hashes(path)


def test_speed_fields_are_declared_and_unhashed() -> None:
    train = {p.name: p.default for p in schema.BY_NAME["train"].fields}
    sample = {p.name: p.default for p in schema.BY_NAME["sample"].fields}
    for f in schema.UNHASHED["train"]:
        assert f in train
    for f in schema.UNHASHED["sample"]:
        assert f in sample
    assert sample["precision"] == "fp32" and sample["compile"] == "off"


def test_cpu_defaults_are_the_reference_path() -> None:
    defaults = {p.name: p.default for p in schema.TRAIN_SPEED}
    fp = FastPath(defaults, torch.device("cpu"))
    assert fp.reference and not fp.data_on_device


# ---------------------------------------------------------------------------- EMA
def _ema_loop(shadow: dict, model: torch.nn.Module, rate: float) -> None:  # the previous update
    for k, v in model.state_dict().items():
        s = shadow[k]
        if v.dtype.is_floating_point:
            s.mul_(rate).add_(v.detach(), alpha=1.0 - rate)
        else:
            s.copy_(v)


def test_foreach_ema_is_bit_identical_to_the_loop() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(6, 2))
    ema = EMA(model, 0.999)
    ref = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].num_batches_tracked += 1
        ema.update(model)
        _ema_loop(ref, model, 0.999)
    for k in ref:
        assert torch.equal(ema.shadow[k], ref[k]), k


# ---------------------------------------------------------------------------- the loss, fast vs reference
def _loss_and_grad(speed: dict[str, str], tmp: Path, device: str = "cpu") -> tuple[float, torch.Tensor]:
    tr = make_trainer("ncsn", PARAMS, SHAPE, LEVELS, BATCH, speed, torch.device(device), tmp, ema=0.999)
    tr.model.train()
    out = tr.train_step(BATCH)  # the real step: data, noise, loss, backward, optimizer, EMA
    g = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
    return float(out.loss.detach()), g.cpu()


# Tolerances from measurements on this batch (relative loss difference): channels_last 0,
# bf16 autocast 9.9e-4 (CPU), fused/foreach Adam 0 (weights after the step within 1e-6).
TOL = {"channels_last": 1e-5, "bf16": 5e-3, "fused": 1e-6}


@pytest.mark.parametrize(
    "name,speed",
    [
        ("channels_last", {"channels_last": "on"}),
        ("bf16", {"precision": "bf16"}),
        ("fused", {"fused_optimizer": "on"}),
    ],
)
def test_fast_path_loss_matches_reference_on_cpu(name: str, speed: dict, tmp_path: Path) -> None:
    ref, w_ref = _loss_and_grad(REFERENCE, tmp_path / "a")
    fast, w_fast = _loss_and_grad(REFERENCE | speed, tmp_path / "b")
    rel = abs(fast - ref) / abs(ref)
    print(f"{name}: loss {ref:.6g} vs {fast:.6g}, relative {rel:.2e}")
    assert rel <= TOL[name]
    if name == "fused":  # the weights after one step
        assert torch.allclose(w_fast, w_ref, rtol=0, atol=1e-6)


def test_default_speed_settings_are_bit_identical_on_cpu(tmp_path: Path) -> None:
    auto = {k: "auto" for k in REFERENCE}
    a, wa = _loss_and_grad(REFERENCE, tmp_path / "a")
    b, wb = _loss_and_grad(auto, tmp_path / "b")
    assert a == b and torch.equal(wa, wb)


@CUDA
def test_cuda_fast_path_loss_matches_reference(tmp_path: Path) -> None:
    ref, _ = _loss_and_grad(REFERENCE, tmp_path / "a", "cuda")
    fast, _ = _loss_and_grad(
        {k: "auto" for k in REFERENCE} | {"data_on_device": "on"}, tmp_path / "b", "cuda"
    )
    assert abs(fast - ref) / abs(ref) <= TOL["bf16"]


# ---------------------------------------------------------------------------- sampler
def test_sampler_bf16_score_close_and_graphs_compile_off_cuda() -> None:
    from ncsn_core.samplers import fast_network

    tr_model = torch.nn.Conv2d(3, 3, 3, padding=1)

    def model(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return tr_model(x)

    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    idx = torch.zeros(4, dtype=torch.long)
    with torch.inference_mode():
        ref = fast_network(model)(x, idx)
        bf = fast_network(model, "bf16")(x, idx)
    assert bf.dtype == torch.float32
    assert (bf - ref).abs().max() / ref.abs().max() < 2e-2
    # graphs = torch.compile(mode = "reduce-overhead"): off CUDA it compiles without graphs
    # (issue 22: CUDA-shaped paths run on the CPU); compiling is lazy, so nothing runs here
    graphs = fast_network(model, "fp32", "graphs", "cpu")
    assert graphs is not model and callable(graphs)


@CUDA
def test_sampler_cuda_graphs_match_eager() -> None:
    from ncsn_core.samplers import fast_network

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1).cuda()

    def model(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return net(x)

    x = torch.randn(4, 3, 8, 8, device="cuda")
    idx = torch.zeros(4, dtype=torch.long, device="cuda")
    with torch.inference_mode():
        ref = model(x, idx)
        g = fast_network(model, "fp32", "graphs", "cuda")
        for _ in range(3):
            out = g(x, idx)
    assert torch.allclose(out, ref, atol=1e-5)


# ---------------------------------------------------------------------------- ANSN
def test_ansn_estimate_cached_and_unchanged() -> None:
    from ncsn_core.ansn import AdaptiveConfig, AdaptiveNoise, floor_diagonal, floor_full, floor_lowrank

    g = torch.Generator().manual_seed(0)
    d = torch.rand(12, dtype=torch.float64, generator=g)
    assert torch.equal(floor_diagonal(d, 0.3), d.clamp(min=0.3 * float(d.mean())))
    a = torch.randn(12, 12, dtype=torch.float64, generator=g)
    m = a @ a.T
    lam, vec = torch.linalg.eigh((m + m.T) / 2)
    old = (vec * lam.clamp(min=0.2 * float(lam.mean()))) @ vec.T
    assert torch.equal(floor_full(m, 0.2), old)
    w = torch.randn(12, 3, dtype=torch.float64, generator=g)
    mean = float(d.sum() + (w * w).sum()) / 12
    assert torch.equal(floor_lowrank(d, w, 0.5)[0], d.clamp(min=0.5 * mean))

    noise = AdaptiveNoise(torch.tensor([1.0, 0.1]), 12, AdaptiveConfig(form="full", floor=0.01))
    for _ in range(4):
        noise.update(torch.randn(16, 12, generator=g))
    noise._refresh()  # Ĉ from the points so far
    before = noise.cov
    noise._refresh()  # no new points: the cached factor, not a new one
    assert noise.cov is before
    fresh = noise.estimate()
    noise.update(torch.randn(16, 12, generator=g))  # Ĉ_t from the points so far
    assert torch.equal(noise.cov.t["chol"], fresh.t["chol"])
    assert torch.equal(noise.cov.t["c"], fresh.t["c"])


# ---------------------------------------------------------------------------- FLOPs
def test_flops_counted_match_reference_md() -> None:
    from ncsn_core.cost import network_flops

    f = network_flops("ncsn", {"ngf": 128}, (3, 32, 32), 10)
    fb = network_flops("ncsn", {"ngf": 128}, (3, 32, 32), 10, backward=True)
    assert math.isclose(f, 19.79e9, rel_tol=1e-3)  # reference.md: 19.79 GFLOP per image
    assert math.isclose(fb / f, 3.00, rel_tol=1e-3)
    assert math.isclose(network_flops("ncsn", {"ngf": 64}, (1, 28, 28), 10), 3.79e9, rel_tol=2e-3)
