"""train.micro_batch = auto (ncsn_core.stages.train._auto_fit, ncsn_core.plan.auto_micro_batch):
on CUDA the train stage picks the largest micro-batch whose planned step fits the device's free
memory, logs it in one line, and trains the same numbers as the whole batch. No GPU here: the
device check (microbatch.on_cuda) and the free memory (microbatch.free_memory) are patched, the
rest — the plan on fake tensors, the Trainer, the run — is the real code on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_microbatch import EXP, final, relative

from dsl.compiler import compile_file
from ncsn_core import microbatch
from ncsn_core import plan as planmod
from ncsn_core.errors import UserError
from ncsn_core.runner import run_spec

# quoted: a bare `auto` is the language's computed-auto sentinel, refused for this parameter
# ("'micro_batch' cannot be auto", as for `precision = auto`: ncsn_core/params.py, not this change)
AUTO = EXP.replace("ema = 0.9 }", 'ema = 0.9, micro_batch = "auto" }')


def _spec(tmp_path: Path, name: str, text: str):  # type: ignore[no-untyped-def]
    f = tmp_path / f"{name}.exp"
    f.write_text(text, encoding="utf-8")
    (spec,) = compile_file(f)
    return spec


def _record(monkeypatch) -> dict:  # type: ignore[no-untyped-def]
    """Records the plan's choice and the micro-batch the Trainer resolved."""
    seen: dict = {"auto": [], "micro": []}
    real_auto, real_resolve = planmod.auto_micro_batch, microbatch.resolve

    def auto(spec, free):  # type: ignore[no-untyped-def]
        out = real_auto(spec, free)
        seen["auto"].append(out)
        return out

    def resolve(*a, **k):  # type: ignore[no-untyped-def]
        out = real_resolve(*a, **k)
        seen["micro"].append(out)
        return out

    monkeypatch.setattr(planmod, "auto_micro_batch", auto)
    monkeypatch.setattr(microbatch, "resolve", resolve)
    return seen


def test_auto_on_cuda_plans_a_micro_batch_that_trains_as_the_full_batch(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    full, auto = _spec(tmp_path, "full", EXP), _spec(tmp_path, "auto", AUTO)
    assert auto.hash() == full.hash() and auto.train_hash() == full.train_hash()  # not hashed
    p = planmod.plan_spec(auto)
    fixed = p.train_peak_bytes - p.per_example_bytes * p.batch_size
    # free memory whose usable share holds the fixed bytes and about half the batch's activations
    free = int((fixed + 0.5 * (p.train_peak_bytes - fixed)) / planmod.AUTO_FREE_FRACTION)
    monkeypatch.setattr(microbatch, "on_cuda", lambda device: True)
    monkeypatch.setattr(microbatch, "free_memory", lambda device: free)
    seen = _record(monkeypatch)
    run_spec(full, runs_dir=tmp_path / "a", device="cpu", until="train", quiet=True)
    assert seen["auto"] == [] and seen["micro"] == [None]  # unset: never planned
    run_spec(auto, runs_dir=tmp_path / "b", device="cpu", until="train", quiet=False)
    (choice,) = seen["auto"]
    k = choice.micro_batch
    assert k is not None and 1 <= k < 8, choice
    assert seen["micro"][-1] == k  # the Trainer trained with it
    budget = free * planmod.AUTO_FREE_FRACTION
    assert choice.planned_bytes <= budget < p.train_peak_bytes  # it fits; the whole batch did not
    err = capsys.readouterr().err
    line = f"micro_batch auto: {k} of 8 (planned peak {planmod.fmt_bytes(choice.planned_bytes)} of "
    assert line in err, err
    a, b = final(tmp_path / "a", full), final(tmp_path / "b", auto)
    assert a["step"] == b["step"] == 20
    rm, re = relative(a["model"], b["model"]), relative(a["ema"], b["ema"])
    print(f"micro_batch auto = {k} vs full batch 8 after 20 steps: model {rm:.2e}, ema {re:.2e} relative")
    assert 0 <= rm < 1e-6 and re < 1e-6
    for key in ("gen_data", "gen_noise", "torch_rng"):
        assert torch.equal(a[key], b[key]), key


def test_auto_whole_batch_none_fits_and_the_cpu(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(tmp_path, "auto", AUTO)
    p = planmod.plan_spec(spec)
    roomy = planmod.auto_micro_batch(spec, 10 * p.train_peak_bytes)
    assert roomy.micro_batch is None  # the same step as repro plan's (a few scalars' bytes apart)
    assert abs(roomy.planned_bytes - p.train_peak_bytes) < 1e-3 * p.train_peak_bytes
    assert "8 of 8" in roomy.line()
    tiny = planmod.auto_micro_batch(spec, 1000)
    assert tiny.micro_batch == 0 and "none fits" in tiny.line()
    # the train stage refuses it (exit 2 through the CLI: a UserError), naming what is needed
    monkeypatch.setattr(microbatch, "on_cuda", lambda device: True)
    monkeypatch.setattr(microbatch, "free_memory", lambda device: 1000)
    with pytest.raises(UserError, match=r"train.micro_batch = auto: not even one example"):
        run_spec(spec, runs_dir=tmp_path / "t", device="cpu", until="train", quiet=True)
    # on the CPU (the real device check) auto is the whole batch and nothing is planned
    monkeypatch.undo()
    seen = _record(monkeypatch)
    run_spec(spec, runs_dir=tmp_path / "c", device="cpu", until="train", quiet=True)
    assert seen["auto"] == [] and seen["micro"] == [None]


def test_bare_auto_is_the_auto_choice_and_hashes_as_the_string(write) -> None:  # type: ignore[no-untyped-def]
    """`micro_batch = auto` (the language's auto) means the declared choice "auto" where a
    parameter has no computed auto; where it has neither, auto is still an error."""
    import pytest

    from dsl.compiler import compile_file
    from dsl.errors import DiagnosticError

    body = "data mixture2d { }\n noise geometric { sigma_max = 1.0, sigma_min = 0.1, levels = 3 }\n loss dsm { }\n network mlp { hidden = 8, layers = 2 }\n train { iterations = 2, batch_size = 8, micro_batch = {v} }"
    (bare,) = compile_file(write("a.exp", "experiment t {\n " + body.replace("{v}", "auto") + "\n}\n"))
    (quoted,) = compile_file(write("b.exp", "experiment t {\n " + body.replace("{v}", '"auto"') + "\n}\n"))
    assert bare.train.get("micro_batch") == "auto" and bare.hash() == quoted.hash()
    with pytest.raises(DiagnosticError, match="cannot be auto"):
        compile_file(
            write(
                "c.exp",
                "experiment t {\n "
                + body.replace("{v}", "4").replace("iterations = 2", "iterations = auto")
                + "\n}\n",
            )
        )
