"""ANSN's paper reading (``estimate_on = score``) under data parallelism and micro-batches: the
loss's score estimates of batch t are gathered from every rank in rank order and merged once,
so every rank's Ĉ (and so the model) is the one-process Ĉ of the same global batch, and
micro-batches merge as the whole batch (docs/ansn.md, "Readings")."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dsl.compiler import compile_file
from ncsn_core import checkpoint as ckpt
from ncsn_core import distributed as dist
from ncsn_core import microbatch
from ncsn_core.ansn import AdaptiveConfig, AdaptiveNoise, ansn_dsm
from ncsn_core.runner import run_spec

ROOT = Path(__file__).resolve().parent.parent
D, L, B, STEPS = 6, 3, 8, 5


class Net(nn.Module):
    """A tiny conditional score network (x, level) -> output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.e = nn.Linear(D, 16), nn.Linear(16, D), nn.Embedding(L, 16)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x) + self.e(idx)))


def train(rank: int, world: int, form: str, micro: int | None, out: str, init: str) -> None:
    """STEPS steps of ansn_dsm on a global batch of B rows as the trainer does them (the noise's
    update with the global batch, the loss on this rank's rows, gradients averaged over ranks);
    saves this rank's running moments, Ĉ and weights to ``out``."""
    torch.set_num_threads(1)
    if world > 1:
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{init}", rank=rank, world_size=world
        )
        dist._STATE.update(world=world, rank=rank, local_rank=rank, backend="gloo")
    try:
        torch.manual_seed(0)
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        cfg = AdaptiveConfig(form=form, rank=2, estimate_on="score", normalize="trace", output="score")
        noise = AdaptiveNoise(torch.tensor([1.0, 0.5, 0.1]), D, cfg)
        loss = ansn_dsm("eq31")
        g = torch.Generator().manual_seed(5)
        xs = torch.randn(STEPS * B, D, generator=g) @ torch.randn(D, D, generator=g) + 2.0
        gen = torch.Generator().manual_seed(7)
        part = dist.part(B)
        for t in range(STEPS):
            x = xs[t * B : (t + 1) * B]
            noise.update(x)
            opt.zero_grad(set_to_none=True)
            if micro is None:
                loss(model, x, noise, gen, part=part).loss.backward()
            else:
                call = lambda x, p: loss(model, x, noise, gen, part=p)  # noqa: E731
                microbatch.loss_backward(call, x, gen, part or slice(0, B), micro)
            dist.all_reduce_mean_([p.grad for p in model.parameters()])
            opt.step()
        noise.update(xs[:B])  # Ĉ from every batch's score estimates
        torch.save({"noise": noise.state_dict(), "model": model.state_dict()}, out)
    finally:
        dist.shutdown()


def run(tmp: Path, name: str, world: int, form: str, micro: int | None = None) -> list[dict]:
    outs = [str(tmp / f"{name}-{r}.pt") for r in range(world)]
    if world == 1:
        train(0, 1, form, micro, outs[0], "")
    else:
        ctx = mp.get_context("spawn")
        init = str(tmp / f"{name}.init")
        ps = [ctx.Process(target=train, args=(r, world, form, micro, outs[r], init)) for r in range(world)]
        for p in ps:
            p.start()
        for p in ps:
            p.join(120)
            assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    return [torch.load(o, weights_only=True) for o in outs]


def tensors(s: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state dict, by path."""
    got: dict[str, torch.Tensor] = {}
    for k, v in s.items():
        if isinstance(v, dict):
            got.update(tensors(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor) and v.is_floating_point():
            got[prefix + k] = v
    return got


def max_rel(a: dict, b: dict) -> float:
    """max over tensors of max|a − b| / max|a| (Ĉ's moments, Ĉ, the weights)."""
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys() and ta
    return max(float((ta[k].double() - tb[k].double()).abs().max() / ta[k].double().abs().max().clamp(min=1e-300))
               for k in ta)  # fmt: skip


@pytest.mark.parametrize("form", ["full", "lowrank"])
def test_two_ranks_estimate_the_one_process_covariance(tmp_path: Path, form: str) -> None:
    (one,) = run(tmp_path, "one", 1, form)
    r0, r1 = run(tmp_path, "two", 2, form)
    n = one["noise"]["stats"]["n"]
    assert n == r0["noise"]["stats"]["n"] == r1["noise"]["stats"]["n"] == STEPS * B  # every row once
    assert one["noise"]["residual_batches"] == r0["noise"]["residual_batches"] == STEPS
    between = max_rel(r0, r1)
    vs_one = max(max_rel(one, r0), max_rel(one, r1))
    print(f"{form}: rank 0 vs rank 1 {between:.2e}, 2 ranks vs 1 process {vs_one:.2e} (max relative)")
    assert between == 0.0  # the same gathered rows on every rank: the same Ĉ bit for bit
    assert vs_one < 1e-5
    # Ĉ moved away from C_0 = I: the score estimates were merged.
    assert not torch.allclose(one["noise"]["stats"]["m2_diag"], torch.zeros(D, dtype=torch.float64))


@pytest.mark.parametrize("form", ["full", "lowrank"])
def test_micro_batches_estimate_the_whole_batch_covariance(tmp_path: Path, form: str) -> None:
    (one,) = run(tmp_path, "one", 1, form)
    (mic,) = run(tmp_path, "micro", 1, form, micro=3)  # 3 + 3 + 2 rows per step
    assert mic["noise"]["stats"]["n"] == STEPS * B and mic["noise"]["residual_batches"] == STEPS
    d = max_rel(one, mic)
    print(f"{form}: micro_batch 3 vs whole batch {d:.2e} (max relative)")
    assert d < 1e-5
    r0, r1 = run(tmp_path, "two-micro", 2, form, micro=3)  # each rank's 4 rows as 3 + 1
    d2 = max(max_rel(one, r0), max_rel(r0, r1))
    print(f"{form}: 2 ranks × micro_batch 3 vs 1 process {d2:.2e} (max relative)")
    assert d2 < 1e-5 and max_rel(r0, r1) == 0.0


EXP = """\
experiment e {
    data digits { }
    noise adaptive { sigma_max = 1.0, sigma_min = 0.01, levels = 10, form = full, output = score, normalize = trace, jitter = 1e-6 }
    network mlp { hidden = 32, layers = 2, conditional = true }
    loss ansn_dsm { }
    train { iterations = 8, batch_size = 8, checkpoint_every = 8, log_every = 4 }
    sample { stage annealed_langevin { steps_per_level = 2 } }
}
"""


def test_repro_run_with_two_processes_estimates_the_one_process_covariance(tmp_path: Path) -> None:
    """The trainer's path (`repro run --nproc 2`), estimate_on = score (the default): rank 0's
    checkpoint holds the one-process Ĉ and weights. output = score: with the default
    sigma_score, digits' constant pixels make Ĉ nearly singular (score estimates ~1e6), and the
    rounding of a 4-row vs an 8-row forward grows to ~1e-4 relative in 8 steps (conditioning,
    the same with any exact reduction)."""
    f = tmp_path / "e.exp"
    f.write_text(EXP, encoding="utf-8")
    (spec,) = compile_file(f)
    assert spec.noise.get("estimate_on") == "score"  # the default: the paper reading
    run_spec(spec, runs_dir=tmp_path / "one", device="cpu", until="train", quiet=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dsl.cli", "run", str(f), "--runs", str(tmp_path / "two")]
    p = subprocess.run([*cmd, "--device", "cpu", "--nproc", "2", "--until", "train"],
                       cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr

    def final(runs: Path) -> dict:
        folder = runs / spec.experiment / spec.hash() / f"seed-{spec.seed}" / "train" / "checkpoints"
        return torch.load(ckpt.list_checkpoints(folder)[-1][1], weights_only=True)

    a, b = final(tmp_path / "one"), final(tmp_path / "two")
    assert a["noise"]["stats"]["n"] == b["noise"]["stats"]["n"] == 8 * 8
    dn, dm = max_rel(a["noise"], b["noise"]), max_rel(a["model"], b["model"])
    print(f"repro run: 2 processes vs 1 after 8 steps: Ĉ state {dn:.2e}, model {dm:.2e} (max relative)")
    assert dn < 1e-5 and dm < 1e-5
