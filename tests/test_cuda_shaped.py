"""CUDA-shaped code run on the CPU device (issue 22.5): the branches that `auto` takes only on
CUDA — bf16 autocast, the fused optimizer, torch.compile of the training step and of the
sampler's score step, resident data — forced on with the CPU device wherever torch allows, so
they run in every CI job. Where the code hard-wires CUDA the test is a strict xfail naming the
line, so it turns into a failure (and is removed) once the branch runs on the CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from ncsn_core.bench import REFERENCE, make_trainer, synthetic_data
from ncsn_core.samplers import fast_network
from ncsn_core.training import DeviceData, FastPath

CPU = torch.device("cpu")
SHAPE, PARAMS, LEVELS, BATCH = (3, 8, 8), {"ngf": 8}, 10, 4


def _trainer(speed: dict[str, str], tmp: Path, net: str = "ncsn"):  # type: ignore[no-untyped-def]
    params = PARAMS if net == "ncsn" else {"hidden": 16, "layers": 2}
    return make_trainer(net, params, SHAPE, LEVELS, BATCH, REFERENCE | speed, CPU, tmp, ema=0.999)


def _step(speed: dict[str, str], tmp: Path, net: str = "ncsn") -> tuple[float, torch.Tensor]:
    tr = _trainer(speed, tmp, net)
    tr.model.train()
    out = tr.train_step(BATCH)
    w = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
    return float(out.loss.detach()), w


def test_forced_settings_resolve_on_the_cpu() -> None:
    on = {"precision": "bf16", "channels_last": "on", "compile": "on", "fused_optimizer": "on"}
    fp = FastPath(on, CPU)
    assert (fp.bf16, fp.channels_last, fp.compile, fp.fused) == (True, True, True, True)
    assert not fp.reference
    # auto is the reference path on the CPU, the fast path on CUDA
    auto = {k: "auto" for k in REFERENCE}
    assert FastPath(auto, CPU).reference
    cuda = FastPath(auto, torch.device("cuda"))
    assert (cuda.bf16, cuda.compile, cuda.fused, cuda.data_on_device) == (True, True, True, True)


def test_fused_adam_runs_on_the_cpu(tmp_path: Path) -> None:
    tr = _trainer({"fused_optimizer": "on"}, tmp_path / "f")
    assert all(g.get("fused") is True for g in tr.opt.param_groups)  # the fused kernel, not foreach
    loss_f, w_f = _step({"fused_optimizer": "on"}, tmp_path / "a")
    loss_r, w_r = _step({}, tmp_path / "b")
    assert loss_f == loss_r
    assert torch.allclose(w_f, w_r, rtol=0, atol=1e-6)
    assert not torch.equal(w_r, torch.cat([p.detach().flatten() for p in tr.model.parameters()]))


def test_bf16_autocast_runs_the_network_in_bf16_on_the_cpu(tmp_path: Path) -> None:
    tr = _trainer({"precision": "bf16"}, tmp_path)
    seen: list[torch.dtype] = []
    conv = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = tr.train_step(BATCH)
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_sampler_bf16_on_the_cpu() -> None:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    seen: list[torch.dtype] = []
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, idx = torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)
    with torch.inference_mode():
        out = fast_network(lambda x, i: net(x), "bf16", "off", "cpu")(x, idx)
    assert seen == [torch.bfloat16] and out.dtype == torch.float32


def test_resident_data_path_on_the_cpu() -> None:
    """What DeviceData does with data on the device (a copy whose uint8 set lives there, batches
    gathered with a generator of that device), on the CPU device: same shapes, reproducible."""
    data = synthetic_data(SHAPE, 32)
    resident = copy.copy(data)
    object.__setattr__(resident, "train", data.train.to(CPU))
    idx = torch.arange(8)
    a = resident.batch(idx, torch.Generator(device=CPU).manual_seed(1))
    b = resident.batch(idx, torch.Generator(device=CPU).manual_seed(1))
    assert a.shape == (8, *SHAPE) and a.dtype == torch.float32 and torch.equal(a, b)


def test_data_on_device_on_forced_on_the_cpu() -> None:
    fp = FastPath(REFERENCE | {"data_on_device": "on"}, CPU)
    dd = DeviceData(synthetic_data(SHAPE, 32), fp, CPU, seed=0)
    assert dd.resident is not None


def test_sampler_graphs_mode_on_the_cpu() -> None:
    fast_network(torch.nn.Identity(), "fp32", "graphs", "cpu")


@pytest.mark.slow
def test_compile_on_the_cpu(tmp_path: Path) -> None:
    """torch.compile (inductor, C++ on the CPU) of the training step's network (a small MLP:
    RefineNet's compile takes minutes of CPU) and of the sampler's score step: the same numbers
    as eager within float rounding."""
    pytest.importorskip("torch._inductor")
    torch._dynamo.reset()
    loss_c, w_c = _step({"compile": "on"}, tmp_path / "c", "mlp")
    loss_r, w_r = _step({}, tmp_path / "r", "mlp")
    assert abs(loss_c - loss_r) <= 1e-4 * abs(loss_r)
    assert torch.allclose(w_c, w_r, rtol=0, atol=1e-5)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ELU(), torch.nn.Conv2d(8, 3, 1))
    x, idx = torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)
    with torch.inference_mode():
        ref = net(x)
        out = fast_network(lambda x, i: net(x), "fp32", "on", "cpu")(x, idx)
    assert torch.allclose(out, ref, atol=1e-5)
