"""Checkpoint selection as the papers did it (issue 11.6): `train.keep_every` keeps the
candidates, a `select { }` block scores each with the experiment's sampler and picks the best,
`sample.checkpoint = best` samples it; resumable, hashed as its own stage, shown by compile and
the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from ncsn_core import checkpoint as ckpt
from ncsn_core import evaluation, layout
from ncsn_core.runner import run_spec
from reports.reporter import collect, render

SELECT = """\
experiment sel {
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 5 }
    network mlp { hidden = 32, layers = 2 }
    loss dsm { }
    train { iterations = 12, batch_size = 16, checkpoint_every = 2, keep_checkpoints = 1, keep_every = 4, log_every = 2 }
    select { metric = fid_domain, samples = 24, batch_size = 12 }
    sample { samples = 8, checkpoint = best, stage annealed_langevin { steps_per_level = 2 } }
}
"""


def one(path: Path, **kw):  # type: ignore[no-untyped-def]
    specs = compile_file(path, **kw)
    assert len(specs) == 1
    return specs[0]


def _count_evaluations(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Patch evaluation.evaluate to record the sample count of every call."""
    calls: list[int] = []
    real = evaluation.evaluate

    def counting(metrics, samples, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(int(samples.shape[0]))
        return real(metrics, samples, *a, **kw)

    monkeypatch.setattr(evaluation, "evaluate", counting)
    return calls


def test_retained_steps_and_prune_keep_multiples_of_keep_every(tmp_path: Path) -> None:
    assert ckpt.retained_steps(12, 2, 1, 4) == [4, 8, 12]
    assert ckpt.retained_steps(12, 2, 2, None) == [10, 12]
    assert ckpt.retained_steps(200_000, 5_000, 3, 5_000) == list(range(5_000, 200_001, 5_000))
    folder = tmp_path / "checkpoints"
    for step in range(2, 13, 2):  # what Trainer.save does after each checkpoint
        ckpt.save(ckpt.checkpoint_path(folder, step), {"step": step, "model": {"w": torch.zeros(1)}})
        ckpt.prune(folder, 1, 4)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [4, 8, 12]
    assert sorted(v["step"] for v in ckpt.read_manifest(folder).values()) == [4, 8, 12]


def test_select_picks_the_best_candidate_and_sample_uses_it(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = write("sel.exp", SELECT)
    spec = one(f)
    runs = tmp_path / "runs"
    calls = _count_evaluations(monkeypatch)
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    seed = runs / "sel" / spec.hash() / "seed-0"
    # keep_every kept 4 and 8 after pruning, keep_checkpoints = 1 the last
    kept = [s for s, _ in ckpt.list_checkpoints(seed / "train" / "checkpoints")]
    assert kept == [4, 8, 12]
    folder = seed / f"select-{spec.select_hash()}"
    sel = json.loads((folder / layout.SELECTION).read_text())
    assert [c["step"] for c in sel["candidates"]] == [4, 8, 12]
    assert calls == [24, 24, 24]  # each candidate evaluated once, on select.samples samples
    values = {c["step"]: c["value"] for c in sel["candidates"]}
    assert all(c["samples"] == 24 and c["metric"] == "fid_domain" for c in sel["candidates"])
    best = min(values, key=lambda s: values[s])  # fid_domain: lower is better
    assert sel["best"] == {"step": best, "value": values[best]} and sel["better"] == "lower"
    for step, v in values.items():  # one atomic record per candidate, the same values
        assert json.loads(layout.candidate_file(folder, step).read_text())["value"] == v
    assert not list((folder / layout.CANDIDATES).glob("*.shards"))  # shards removed once scored
    res = json.loads((seed / f"sample-{spec.sample_hash()}" / "results.json").read_text())
    assert res["step"] == best and res["checkpoint"].endswith(f"step-{best:08d}.pt")
    # the report: the curve's table, the winner, and the protocol's checkpoint text
    md = render(collect(runs), "md")
    assert "**Checkpoint selection** (sel)" in md and f"step {best:,} (fid_domain" in md
    for step in values:
        assert f"| {step:<6} |" in md or f"| {step} " in md
    assert "(chosen)" in md
    rec = collect(runs)[0]
    assert rec.checkpoint == "best of 3 checkpoints by fid_domain on 24 samples"
    html = render(collect(runs), "html")
    assert 'class="selection"' in html and "checkpoint selection" in html


def test_select_resumes_without_recomputing_finished_candidates(write, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = write("sel.exp", SELECT)
    spec = one(f)
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True, until="select")
    folder = runs / "sel" / spec.hash() / "seed-0" / f"select-{spec.select_hash()}"
    before = json.loads((folder / layout.SELECTION).read_text())
    # As if killed after two candidates: no DONE, no selection.json, the last record missing.
    (folder / layout.DONE).unlink()
    (folder / layout.SELECTION).unlink()
    layout.candidate_file(folder, 12).unlink()
    kept = {s: layout.candidate_file(folder, s).stat().st_mtime_ns for s in (4, 8)}
    calls = _count_evaluations(monkeypatch)
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True, until="select")
    assert calls == [24]  # only the missing candidate
    assert {s: layout.candidate_file(folder, s).stat().st_mtime_ns for s in (4, 8)} == kept
    after = json.loads((folder / layout.SELECTION).read_text())
    assert after["best"] == before["best"]  # the same seeds per candidate: the same values
    assert [c["value"] for c in after["candidates"]] == [c["value"] for c in before["candidates"]]
    # Complete: a third run evaluates nothing.
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True, until="select")
    assert calls == [24]


def test_select_hash_stage(write) -> None:  # type: ignore[no-untyped-def]
    f = write("sel.exp", SELECT)
    spec = one(f)
    other = one(f, sets=["select.samples=30"])
    assert other.train_hash() == spec.train_hash()
    assert other.select_hash() != spec.select_hash() and other.sample_hash() != spec.sample_hash()
    # The sampler's stages are the selection's sampler too.
    stages = one(f, sets=["sample.annealed_langevin.steps_per_level=3"])
    assert stages.select_hash() != spec.select_hash()
    # The sample block's own count is not.
    more = one(f, sets=["sample.samples=16"])
    assert more.select_hash() == spec.select_hash() and more.sample_hash() != spec.sample_hash()
    # Without a select block nothing of it is in the spec (the hashes are what they were).
    plain = one(
        write(
            "plain.exp",
            SELECT.replace("    select { metric = fid_domain, samples = 24, batch_size = 12 }\n", "").replace(
                "checkpoint = best", "checkpoint = last"
            ),
        )
    )
    canon = plain.canonical()
    assert "select" not in canon and "select_hash" not in canon
    assert "select" in spec.canonical() and spec.canonical()["select_hash"] == spec.select_hash()


def test_best_without_select_is_a_positioned_error(write) -> None:  # type: ignore[no-untyped-def]
    src = SELECT.replace("    select { metric = fid_domain, samples = 24, batch_size = 12 }\n", "")
    f = write("nosel.exp", src)
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f)
    d = next(d for d in ei.value.diagnostics if "checkpoint = best" in d.message)
    line = src.splitlines().index(next(ln for ln in src.splitlines() if "checkpoint = best" in ln)) + 1
    assert d.pos is not None and d.pos.line == line and "select block" in d.message
    assert src.splitlines()[line - 1][d.pos.col - 1 :].startswith("best")


def test_select_is_lowered_only_when_sample_uses_the_best(write) -> None:  # type: ignore[no-untyped-def]
    """checkpoint = last with a select block: no select stage, no select hash; written in the
    experiment a positioned warning, inherited (an inpainting child of a selecting file) silent."""
    last = SELECT.replace("checkpoint = best", "checkpoint = last")
    warnings: list = []
    spec = one(write("last.exp", last), warnings=warnings)
    assert spec.select is None and "select_hash" not in spec.canonical()
    (w,) = [d for d in warnings if "select block is not used" in d.message]
    assert w.pos.line == last.splitlines().index(next(ln for ln in last.splitlines() if "select {" in ln)) + 1
    child = SELECT + "experiment child extends sel {\n    sample.checkpoint = last\n}\n"
    warnings = []
    specs = compile_file(write("child.exp", child), warnings=warnings)
    parent, kid = specs
    assert kid.select is None and parent.select is not None
    assert kid.train_hash() == parent.train_hash()  # the training is shared
    assert not [d for d in warnings if "select block" in d.message]
    # The papers' inpainting files: the parents' trainings, no selection by FID of inpaintings.
    by = {s.experiment: s for s in compile_file(Path("papers/ncsn_inpainting.exp"), compute_auto=False)}
    assert {n: s.select for n, s in by.items()} == dict.fromkeys(by)
    cifar = one(Path("papers/ncsn_cifar.exp"), experiments=["ncsn_cifar10"], compute_auto=False)
    assert by["ncsn_cifar10_inpainting"].train_hash() == cifar.train_hash()


def test_keep_every_must_be_a_checkpoint_step(write) -> None:  # type: ignore[no-untyped-def]
    f = write("bad.exp", SELECT.replace("keep_every = 4", "keep_every = 3"))
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f)
    assert any("not a multiple of checkpoint_every" in d.message for d in ei.value.diagnostics)


def test_compile_prints_the_checkpoint_disk_estimate(write) -> None:  # type: ignore[no-untyped-def]
    f = write("sel.exp", SELECT)
    r = CliRunner().invoke(app, ["compile", str(f)])
    assert r.exit_code == 0, r.output
    # mlp hidden 32, 2 layers on 64-pixel digits: n parameters × 4 bytes × (model + Adam's 2)
    line = next(ln for ln in r.output.splitlines() if ln.startswith("# checkpoints:"))
    assert line.startswith("# checkpoints: 3 kept × ")
    assert "# stages: train" in r.output and ", select " in r.output
    n = int(
        next(ln for ln in r.output.splitlines() if "parameters" in ln)
        .split("# ")[-1]
        .split()[0]
        .replace(",", "")
    )
    each = n * 4 * 3
    assert f"× {each / 1000:.3g} kB" in line or f"× {each} B" in line, (line, n)


def _record(metric: str):  # type: ignore[no-untyped-def]
    from reports.reporter import RunRecord, SeedResult

    sel = {
        "metric": metric,
        "samples": 1000,
        "candidates": [
            {"step": s, "value": v, "samples": 1000} for s, v in ((5, 40.0), (10, 31.0), (15, 35.0))
        ],
        "best": {"step": 10, "value": 31.0},
    }
    seed = SeedResult(
        0,
        status="complete",
        metrics={"fid": 30.0},
        protocol={"samples": 50_000, "reference_split": "train"},
        iterations=15,
        selection=sel,
    )
    spec = {
        "select": {"name": "select", "params": {"metric": {"name": metric, "params": {}}, "samples": 1000}},
        "sample": {"name": "sample", "params": {"checkpoint": "best"}},
    }
    return RunRecord("e", "h", "P", "", {}, [], [seed], Path("x"), spec=spec)


def test_published_best_fid_is_comparable_with_a_selection_by_fid() -> None:
    from reports.reporter import protocol_reasons, protocol_text

    pub = {"protocol": {"samples": 50_000, "reference": "train", "checkpoint": "best_fid", "iterations": 15}}
    by_fid = _record("fid")
    assert by_fid.checkpoint == "best of 3 checkpoints by fid on 1,000 samples"
    assert protocol_reasons(pub, by_fid, "fid") == []
    assert "best of 3 checkpoints by fid on 1,000 samples" in protocol_text(by_fid, "fid")
    other = _record("fid_domain")
    assert any("best of 3 checkpoints by fid_domain" in r for r in protocol_reasons(pub, other, "fid"))
