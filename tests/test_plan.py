"""`repro plan` (ncsn_core/plan.py): a training step on fake tensors at the declared size gives
the peak memory of the real step; a shape error at that size is an error at the experiment's
line; check_fits says what would fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from conftest import BASE
from typer.testing import CliRunner

from dsl.commands.plan import register
from dsl.compiler import compile_file
from ncsn_core import plan
from ncsn_core.errors import UserError

MLP = BASE.replace(
    "network ncsn { ngf = 8 }", "network mlp { hidden = 256, layers = 3, act = elu, conditional = true }"
).replace(
    "train { iterations = 10, batch_size = 8 }",
    "train { iterations = 10, batch_size = 512, precision = fp32, ema = 0.9 }",
)


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command("noop")
    def _noop() -> None:  # a second command, so typer keeps `plan` as a subcommand
        pass

    return a


# The quickstart's shape (papers/quickstart_digits.exp): an MLP whose parameters, gradients and
# Adam state outweigh its activations, so the step's peak is at the optimizer step.
QUICK = BASE.replace(
    "network ncsn { ngf = 8 }",
    "network mlp { hidden = 512, layers = 4, act = elu, conditional = true, scale_by_sigma = true }",
).replace("batch_size = 8 }", "batch_size = 128 }")
# A conv network (NCSN's RefineNet, small): its peak is in the backward pass (activations).
CONV = BASE.replace("batch_size = 8 }", "batch_size = 16, ema = 0.9 }")


def _real_peak(spec, batch: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The same Trainer's real CPU step's peak, measured by torch's own MemTracker (an
    independent accounting of every live storage), at the second step (optimizer state present)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    m = plan._Measured(spec, batch, plan.target_settings(spec.train.kwargs()), plan.real_noise(spec))
    tr = m.trainer
    tr.train_step(batch)  # creates the optimizer state
    tr.opt.zero_grad(set_to_none=True)
    mt = MemTracker()
    # the EMA's shadow is a dict of tensors (not a module): named, or MemTracker leaves it out
    # (the "9.6 %" this test once measured for the MLP was that shadow, not the plan)
    mt.track_external(tr.model, tr.opt, *(tr.ema.shadow.values() if tr.ema is not None else ()))
    with mt:
        tr.train_step(batch)
    assert tr.opt.state
    peak = max(v[k] for v in mt.get_tracker_snapshot("peak").values() for k in v if str(k).endswith("Total"))
    return peak, sum(p.numel() for p in tr.model.parameters())


@pytest.mark.parametrize(
    ("name", "text", "batch"), [("mlp", MLP, 512), ("quickstart-mlp", QUICK, 128), ("conv", CONV, 16)]
)
def test_the_planned_peak_is_the_real_steps_peak(tmp_path: Path, monkeypatch, name, text, batch) -> None:  # type: ignore[no-untyped-def]
    """The plan (fake tensors, bf16/fp32 as declared) against the same Trainer's real CPU step
    at the same batch. Measured (the plan's optimizer state created before its measured step):
    planned/real 1.000 for all three (before, when the state was added to the first step's
    peak: 1.37 for the quickstart, whose peak is at the optimizer step, where the state was
    already counted). The tolerance leaves room for the allocator-free accounting's few bytes."""
    monkeypatch.setattr(plan, "_MEMO", {})
    f = tmp_path / "e.exp"
    f.write_text(text, encoding="utf-8")
    (spec,) = compile_file(f)
    planned = plan.plan_spec(spec)
    assert planned.batch_size == batch
    real, parameters = _real_peak(spec, batch)
    ratio = planned.train_peak_bytes / real
    print(f"{name}: planned {planned.train_peak_bytes:,} B, real CPU step {real:,} B: ratio {ratio:.3f}")
    assert abs(ratio - 1) < 0.02
    assert planned.parameters == parameters


def test_a_shape_error_at_paper_size_names_the_experiment_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real_build = plan._build

    def broken(kind, comp, **extra):  # type: ignore[no-untyped-def]
        net = real_build(kind, comp, **extra)
        if kind == "network":
            inner = net.forward
            net.forward = lambda x, idx: inner(x.reshape(x.shape[0], -1)[:, :5].reshape(x.shape[0], 5), idx)
        return net

    monkeypatch.setattr(plan, "_build", broken)
    monkeypatch.setattr(plan, "_MEMO", {})  # measured again, with the broken network
    f = tmp_path / "e.exp"
    f.write_text("# a comment\n\n" + MLP, encoding="utf-8")
    res = CliRunner().invoke(app(), ["plan", str(f)])
    assert res.exit_code == 2, res.output
    assert f"{f}:3:1" in res.output and "experiment e cannot take one training step" in res.output
    assert "Traceback" not in res.output


def test_plan_cli_json_and_check_fits(tmp_path: Path) -> None:
    f = tmp_path / "e.exp"
    f.write_text(MLP, encoding="utf-8")
    res = CliRunner().invoke(app(), ["plan", str(f), "--json", "--memory", "1MB"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    (e,) = doc["experiments"]
    assert e["parameters"] > 0 and e["peak_bytes"] > 10**6
    assert e["fits"]["80GB"] and not e["fits"]["1MB"]
    p = plan.ExperimentPlan(**e)
    plan.check_fits(p, 10**9)
    with pytest.raises(UserError, match="micro_batch = "):
        plan.check_fits(p, int(e["train_peak_bytes"] * 0.8))


PAPERS = Path(__file__).resolve().parents[1] / "papers"


def test_every_papers_experiment_plans_at_full_size() -> None:
    """Issue 22: each papers/*.exp experiment takes one fake-tensor training step (and a sample
    batch's score evaluation) at the paper's size, with no data and no GPU. Experiments sharing a
    train hash are planned once; those whose σ ladder is `auto` need the data and are skipped."""
    planned: dict[str, plan.ExperimentPlan] = {}
    skipped: list[str] = []
    for f in sorted(PAPERS.glob("*.exp")):
        for spec in compile_file(f, compute_auto=False):
            if "auto" in json.dumps(spec.canonical()["noise"]):
                skipped.append(spec.experiment)
                continue
            key = spec.train_hash()
            if key not in planned:
                planned[key] = plan.plan_spec(spec)
    assert len(planned) >= 30, (len(planned), skipped)
    for p in planned.values():
        assert p.error is None, (p.experiment, p.error)
        if p.network is None:  # an exact score (Fig. 3): nothing to train
            continue
        assert p.peak_bytes and p.peak_bytes > 0 and p.parameters > 0, p
    # the papers' largest networks were planned, and NCSNv2 on 256×256 FFHQ needs > 24 GB at batch 32
    ffhq = [p for p in planned.values() if p.experiment.startswith("ncsnv2_ffhq")]
    assert ffhq and ffhq[0].peak_bytes > 24e9
