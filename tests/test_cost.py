"""file_cost (issue 22.3): every stage `repro run` computes, once per (stage, hash, seed) across a
file or sweep, the select stage included; stages complete in the runs folder marked reused.
The totals are checked against hand arithmetic from the papers' numbers; the per-image FLOPs
are the counter's (network_flops), the unit of that arithmetic."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import layout
from ncsn_core.cost import file_cost, network_flops

CIFAR = (3, 32, 32)


def test_ncsn_cifar_hand_computed():
    specs = compile_file("papers/ncsn_cifar.exp", compute_auto=True)
    fc = file_cost(specs)
    fwd = network_flops("ncsn", {"ngf": 128}, CIFAR, 10)
    fb = network_flops("ncsn", {"ngf": 128}, CIFAR, 10, backward=True)
    nfe, nfe_d = 100 * 10, 100 * 10 + 1  # T · L, and the denoised row's final step
    train = fb * 128 * 200_000  # one train hash: both experiments share it
    select = 40 * 1_000 * fwd * (nfe + nfe_d)  # 200k / 5k kept checkpoints, 1,000 samples each
    sample = 100 * fwd * (nfe + nfe_d)
    evalsamples = 50_000 * fwd * (nfe + nfe_d)  # evaluate wants more than the 100 the stage keeps
    assert fc["total_flops"] == train + select + sample + evalsamples
    kinds = [st["stage"] for st in fc["stages"]]
    assert kinds.count("train") == 1 and kinds.count("select") == 2
    tr = next(st for st in fc["stages"] if st["stage"] == "train")
    assert tr["experiments"] == ["ncsn_cifar10", "ncsn_cifar10_denoised"]
    # the select stage is about a third of the first experiment's work (the 0.79 EFLOP)
    sel = next(st for st in fc["stages"] if st["stage"] == "select")
    assert 0.78e18 < sel["flops"] < 0.80e18


def test_ncsnv2_cifar_hand_computed():
    specs = compile_file(
        "papers/ncsnv2_cifar.exp",
        experiments=["ncsnv2_cifar10", "ncsnv2_cifar10_no_denoise"],
        compute_auto=True,
    )
    fc = file_cost(specs)
    fwd = network_flops("ncsnv2", {"ngf": 128}, CIFAR, 232)
    fb = network_flops("ncsnv2", {"ngf": 128}, CIFAR, 232, backward=True)
    nfe = 5 * 232
    per_nfe = (nfe + 1) + nfe  # with and without the denoising step
    expected = fb * 128 * 300_000 + (60 * 1_000 + 100 + 50_000) * fwd * per_nfe
    assert fc["total_flops"] == expected
    assert fc["to_compute_flops"] == expected


def test_sweep_shares_train_and_reuse_from_runs(tmp_path):
    specs = compile_file(
        "papers/ncsn_cifar.exp",
        experiments=["ncsn_cifar10"],
        sets=["sample.samples=100,200"],
        compute_auto=True,
    )
    assert len(specs) == 2
    fc = file_cost(specs)
    kinds = [st["stage"] for st in fc["stages"]]
    assert kinds.count("train") == 1  # one train hash for the sweep
    assert kinds.count("select") == 1  # the selection does not depend on sample.samples
    assert kinds.count("sample") == 2
    # a complete train stage in the runs folder: reused, not counted as to compute
    tr = next(st for st in fc["stages"] if st["stage"] == "train")
    d = layout.stage_dir(layout.seed_dir(layout.run_dir(tmp_path, "other", "abc"), 0), layout.TRAIN)
    d.mkdir(parents=True)
    (d / layout.STAGE).write_text(json.dumps({"hash": tr["hash"]}))
    (d / layout.DONE).write_text("")
    fc2 = file_cost(specs, runs_dir=tmp_path)
    tr2 = next(st for st in fc2["stages"] if st["stage"] == "train")
    assert tr2["reused"] == str(d)
    assert fc2["to_compute_flops"] == fc["to_compute_flops"] - tr["flops"]
    assert fc2["total_flops"] == fc["total_flops"]


def test_compile_prints_file_cost():
    r = CliRunner().invoke(app, ["compile", "papers/ncsn_cifar.exp"])
    assert r.exit_code == 0, r.output
    assert "# file cost" in r.output
    assert "select" in r.output and "to compute: 5.09 EFLOP" in r.output


def test_select_candidates_follow_checkpoint_retention():
    from ncsn_core.checkpoint import retained_steps
    from ncsn_core.cost import _candidates

    for path in ("papers/ncsn_cifar.exp", "papers/ncsn_celeba.exp"):
        for s in compile_file(path, compute_auto=True):
            t = s.train.kwargs()
            kept = retained_steps(
                t["iterations"], t["checkpoint_every"], t["keep_checkpoints"], t.get("keep_every")
            )
            sel = s.select.kwargs()
            lo, hi = sel.get("from") or 0, sel.get("to") or 10**12
            assert _candidates(s) == sum(1 for k in kept if lo <= k <= hi) == 40
