"""Values that pass their types but cannot run are caught by `repro check` (issue 12 item 6):
a loss weight that is not finite on some σ of the ladder, σ_min ≥ σ_max, and — as a warning
with the numbers — an annealed step so large that the first level diverges, whose run-time
divergence error then names the same cause. A file whose one experiment fails still compiles
its other experiments (issue 11 item 9)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from ncsn_core.data import mixture2d
from ncsn_core.errors import SamplerDiverged
from ncsn_core.noise import NoiseSchedule, ladder
from ncsn_core.samplers import AnnealedLangevin, SampleContext

runner = CliRunner()

TOY = """\
experiment toy {{
    data mixture2d {{ }}
    noise geometric {{ sigma_max = {smax}, sigma_min = {smin}, levels = 10 }}
    network mlp {{ }}
    loss dsm {{ weight = {weight} }}
    sample {{
        init = uniform(low = -8, high = 8)
        stage annealed_langevin {{ steps_per_level = 100, step_size = {eps}, use_exact = true }}
    }}
}}
"""


def toy(smax: str = "1.0", smin: str = "0.01", weight: str = "sigma ** 2", eps: str = "2e-5") -> str:
    return TOY.format(smax=smax, smin=smin, weight=weight, eps=eps)


@pytest.mark.parametrize(
    ("weight", "why"),
    [
        ("exp(1000 * sigma)", "cannot be computed"),  # overflows at σ₁ = 1
        ("exp(1000)", "number too large"),  # a constant: caught when the value is resolved
        ("log(sigma - 1)", "cannot be computed"),  # log(0) at σ₁ = 1
        ("1 / (sigma - 1)", "float division by zero"),
        ("1 / 0", "division by zero"),
    ],
)
def test_loss_weight_must_be_finite_on_every_level(write, weight: str, why: str) -> None:  # type: ignore[no-untyped-def]
    f = write("w.exp", toy(weight=weight))
    with pytest.raises(DiagnosticError) as e:
        compile_file(f, compute_auto=False)
    (d,) = e.value.diagnostics
    assert str(d.pos) == f"{f}:5:25" and why in d.message
    assert "number too large" in why or "σ = 1 (level 1 of 10)" in d.message


def test_weights_that_are_finite_everywhere_pass(write) -> None:  # type: ignore[no-untyped-def]
    f = write("ok.exp", toy(weight="log(sigma + 1) / sigma"))
    assert len(compile_file(f, compute_auto=False)) == 1


def test_sigma_min_not_below_sigma_max(write) -> None:  # type: ignore[no-untyped-def]
    f = write("o.exp", toy(smax="0.01", smin="1.0"))
    with pytest.raises(DiagnosticError) as e:
        compile_file(f, compute_auto=False)
    (d,) = e.value.diagnostics
    assert str(d.pos) == f"{f}:3:53" and "must be smaller than sigma_max" in d.message


def test_unstable_step_warns_at_check_with_the_numbers(write) -> None:  # type: ignore[no-untyped-def]
    # NCSN Fig. 3 as printed: σ 10 → 0.1, ε = 0.1 gives α₁ = 1000 > 2σ₁² = 200.
    f = write("fig3.exp", toy(smax="10.0", smin="0.1", eps="0.1"))
    warnings: list = []
    assert len(compile_file(f, compute_auto=False, warnings=warnings)) == 1  # a warning, not an error
    (w,) = warnings
    assert w.severity == "warning" and str(w.pos) == f"{f}:8:70"
    assert "α₁ = ε·σ₁²/σ_L² = 1000" in w.message and "2σ₁² = 200" in w.message and "2σ_L² = 0.02" in w.message
    r = runner.invoke(app, ["check", str(f)])
    assert r.exit_code == 0 and "1 warning(s)" in r.output
    # The official Fig. 3 settings (σ 20 → 1, ε = 0.1) are stable: no warning.
    warnings.clear()
    compile_file(
        write("off.exp", toy(smax="20.0", smin="1.0", eps="0.1")), compute_auto=False, warnings=warnings
    )
    assert warnings == []


def test_divergence_at_run_time_names_the_cause() -> None:
    data = mixture2d((0.2, 0.8), (-5.0, -5.0, 5.0, 5.0), 1.0, (), 1000, 0)
    noise = NoiseSchedule(torch.tensor(ladder("geometric", 10.0, 0.1, 10)))
    ctx = SampleContext(
        score=lambda x, i: x,
        noise=noise,
        exact_score=data.mixture.score,
        generator=torch.Generator().manual_seed(0),
    )
    x = torch.rand(64, 2) * 16 - 8
    with pytest.raises(SamplerDiverged) as e:
        AnnealedLangevin(100, 0.1, True, 0).run(x, ctx)
    assert "level 1" in str(e.value) and "α₁ = ε·σ₁²/σ_L² = 1000" in str(e.value)


def test_one_failing_experiment_does_not_hide_the_others(write) -> None:  # type: ignore[no-untyped-def]
    text = toy() + toy(weight="1 / 0").replace("experiment toy", "experiment broken")
    f = write("two.exp", text)
    r = runner.invoke(app, ["compile", "--json", "--no-auto", str(f)])
    assert r.exit_code == 2
    out = r.stdout if hasattr(r, "stdout") else r.output
    specs = json.loads(out[: out.rindex("]") + 1])
    assert [s["experiment"] for s in specs] == ["toy"]
    assert "two.exp:15:25" in r.output and "error:" in r.output


def test_an_integer_beyond_float64_is_a_param_error_not_a_crash() -> None:
    from ncsn_core import registry

    _, errors = registry.lookup("noise", "geometric").check_params({"sigma_max": 2**2000})
    assert errors and "number too large" in errors[0][1]
