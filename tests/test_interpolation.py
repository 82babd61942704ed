"""NCSNv2's interpolation figure as a stage kind (ncsn_core/stages/interpolate.py): the official
anneal_Langevin_dynamics_interpolation checked numerically with an exact Gaussian score, the
figure's layout, the stage's hash, the papers file, and `repro run` end to end on digits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import layout, runner, schema
from ncsn_core.images import save_interpolation
from ncsn_core.stages import interpolate as interp
from tests.conftest import BASE

ROOT = Path(__file__).resolve().parent.parent

# An exact score: data N(μ, τ²I), so the σ-perturbed density is N(μ, (τ² + σ²)I).
MU, TAU = 0.3, 0.2
SIGMAS = [1.0, 0.5, 0.2, 0.05]


def gaussian_score(x: torch.Tensor, i: int) -> torch.Tensor:
    return -(x - MU) / (TAU**2 + SIGMAS[i] ** 2)


def chain(x: torch.Tensor, noises: list[torch.Tensor], eps: float, T: int) -> torch.Tensor:
    """Alg. 1 written out: α_i = ε σ_i²/σ_L², x ← x + α_i/2·s(x, σ_i) + √α_i·z, given the z's."""
    k = 0
    for i, s in enumerate(SIGMAS):
        a = eps * s**2 / SIGMAS[-1] ** 2
        for _ in range(T):
            x = x + a / 2 * gaussian_score(x, i) + math.sqrt(a) * noises[k]
            k += 1
    return x


def run_interp(rows: int, columns: int, seed: int = 0, eps: float = 2e-3, T: int = 3, d: int = 6):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand((rows, d), generator=gen)
    out = interp.sample_interpolation(
        gaussian_score, x0, SIGMAS, columns=columns, step_size=eps, steps_per_level=T, generator=gen
    )
    return x0, out


def test_a_rows_endpoints_are_two_annealed_langevin_chains_from_its_start_driven_by_z_p_and_z_q() -> None:
    rows, columns, T, eps, d = 4, 7, 3, 2e-3, 6
    x0, out = run_interp(rows, columns, eps=eps, T=T, d=d)
    assert out.shape == (rows, columns, d)
    # The same draws, as sample_interpolation documents them: x0, then one z per step whose
    # columns 0 and 1 (of each row) are z_p and z_q.
    gen = torch.Generator().manual_seed(0)
    torch.rand((rows, d), generator=gen)
    zs = [torch.randn((rows * columns, d), generator=gen).reshape(rows, columns, d) for _ in SIGMAS * T]
    first = chain(x0, [z[:, 0] for z in zs], eps, T)
    last = chain(x0, [z[:, 1] for z in zs], eps, T)
    torch.testing.assert_close(out[:, 0], first, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, -1], last, rtol=0, atol=1e-6)
    # Two different noises: the endpoints are different samples, not copies.
    assert (out[:, 0] - out[:, -1]).abs().max() > 0.05


def test_interior_columns_are_the_spherical_interpolation_of_the_endpoints() -> None:
    """With a linear score the final state is w + Σ c_t z_t (w: the noiseless chain), so the
    j-th column is w + cos θ_j·(x₀ − w) + sin θ_j·(x_last − w): a row varies smoothly."""
    rows, columns, T, eps = 3, 9, 3, 2e-3
    x0, out = run_interp(rows, columns, seed=1, eps=eps, T=T)
    w = chain(x0, [torch.zeros_like(x0)] * (len(SIGMAS) * T), eps, T)
    theta = torch.linspace(0, math.pi / 2, columns, dtype=torch.float64)
    assert torch.allclose(interp.angles(columns), theta)
    for j in range(columns):
        want = w + math.cos(theta[j]) * (out[:, 0] - w) + math.sin(theta[j]) * (out[:, -1] - w)
        torch.testing.assert_close(out[:, j], want, rtol=0, atol=1e-5)
    # Neighbours are close: equal steps along the arc, much smaller than the endpoints' distance.
    steps = (out[:, 1:] - out[:, :-1]).norm(dim=-1)
    ends = (out[:, -1] - out[:, 0]).norm(dim=-1)
    assert (steps.max(dim=1).values < 0.3 * ends).all()
    assert torch.allclose(steps, steps.mean(dim=1, keepdim=True), rtol=0.35)


def test_every_column_is_a_valid_chain_its_noise_is_standard_normal() -> None:
    """cos²θ + sin²θ = 1: each column's noise is N(0, I), so every column ends at the variance
    the plain chain reaches (computed exactly for the Gaussian), not a shrunk one."""
    rows, columns, T, eps = 3000, 5, 3, 2e-3
    _, out = run_interp(rows, columns, seed=2, eps=eps, T=T, d=4)
    var = 1.0 / 12.0  # U[0, 1] start
    for s in SIGMAS:
        a = eps * s**2 / SIGMAS[-1] ** 2
        for _ in range(T):
            var = (1 - a / 2 / (TAU**2 + s**2)) ** 2 * var + a
    for j in range(columns):
        v = out[:, j].var().item()
        assert abs(v / var - 1) < 0.08, (j, v, var)
    # A row's samples are correlated (shared start and noise), different rows are not.
    c = torch.corrcoef(torch.stack([out[:, 0].flatten(), out[:, 1].flatten()]))[0, 1]
    assert c > 0.9


def test_the_figure_has_the_official_layout_rows_by_columns(tmp_path: Path) -> None:
    rows, columns = 3, 5
    x = torch.zeros(rows, columns, 1, 8, 8)
    for r in range(rows):
        for c in range(columns):
            x[r, c] = (r * columns + c) / (rows * columns)
    path = tmp_path / "interpolation.png"
    save_interpolation(x, None, path)
    img = torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32)) / 255
    h, w = img.shape
    # make_grid(nrow=columns, padding=1) then upscaled by k: tile (r, c) at (1 + 9r, 1 + 9c)·k
    k = w // (columns * 9 + 1)
    assert (w, h) == ((columns * 9 + 1) * k, (rows * 9 + 1) * k)
    for r in range(rows):
        for c in range(columns):
            y0, x0 = (1 + 9 * r) * k, (1 + 9 * c) * k
            tile = img[y0 : y0 + 8 * k, x0 : x0 + 8 * k]
            assert abs(tile.mean().item() - x[r, c].mean().item()) < 1 / 255 + 1e-6


INTERP = BASE.replace(
    "    sample {",
    "    interpolate { rows = 2, columns = 4, steps_per_level = 1, step_size = 1e-4 }\n    sample {",
)


def test_the_block_is_its_own_stage_and_its_hash_covers_training_and_itself(write) -> None:  # type: ignore[no-untyped-def]
    assert schema.STAGES[-1] == "interpolate" and runner.STAGES[-1].kind == interp.KIND
    (plain,) = compile_file(write("p.exp", BASE))
    (spec,) = compile_file(write("i.exp", INTERP))
    assert spec.interpolate is not None and plain.interpolate is None
    # Optional: no other stage's hash moves, and a file without the block compiles as before.
    assert (spec.train_hash(), spec.sample_hash(), spec.eval_hash()) == (
        plain.train_hash(),
        plain.sample_hash(),
        plain.eval_hash(),
    )
    assert "interpolate" not in plain.canonical() and "interpolate_hash" not in plain.canonical()
    assert spec.canonical()["interpolate_hash"] == spec.interpolate_hash()
    (more,) = compile_file(write("m.exp", INTERP.replace("columns = 4", "columns = 6")))
    (other,) = compile_file(write("o.exp", INTERP.replace("iterations = 10", "iterations = 12")))
    (sampler,) = compile_file(write("s.exp", INTERP.replace("steps_per_level = 2", "steps_per_level = 3")))
    assert more.interpolate_hash() != spec.interpolate_hash()
    assert other.interpolate_hash() != spec.interpolate_hash()  # another trained model
    assert sampler.interpolate_hash() == spec.interpolate_hash()  # the sample block is not its input


def test_compile_lists_the_interpolate_stage_with_its_hash(write) -> None:  # type: ignore[no-untyped-def]
    from dsl.show import show_spec

    (plain,) = compile_file(write("p.exp", BASE))
    (spec,) = compile_file(write("i.exp", INTERP))
    assert f", interpolate {spec.interpolate_hash()}" in show_spec(spec).splitlines()[1]
    assert "interpolate" not in show_spec(plain).splitlines()[1]


def test_the_block_needs_a_network(write) -> None:  # type: ignore[no-untyped-def]
    text = "experiment e {\n    data digits { }\n    noise geometric { }\n    interpolate { }\n}\n"
    result = CliRunner().invoke(app, ["check", str(write("n.exp", text))])
    assert result.exit_code == 2
    assert "n.exp:4:" in result.output and "interpolate needs network" in result.output
    assert "Traceback" not in result.output


def test_repro_run_draws_the_figure_end_to_end_and_reuses_it(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = write("i.exp", INTERP.replace("    sample { stage annealed_langevin { steps_per_level = 2 } }\n", ""))
    (spec,) = compile_file(f)
    runs = tmp_path / "runs"
    cli = CliRunner()
    result = cli.invoke(app, ["run", str(f), "--runs", str(runs), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    run_dir = layout.run_dir(runs, "e", spec.hash())
    folder = layout.stage_dir(layout.seed_dir(run_dir, 0), interp.KIND, spec.interpolate_hash())
    assert layout.is_complete_stage(folder, spec.interpolate_hash())
    stage = json.loads((folder / layout.STAGE).read_text())
    assert stage == {"stage": "interpolate", "hash": spec.interpolate_hash(), "train": "seed-0/train"}
    x = torch.load(folder / interp.TENSOR, weights_only=True)
    assert x.shape == (2, 4, 1, 8, 8) and torch.isfinite(x).all()
    assert not torch.equal(x[:, 0], x[:, -1]) and not torch.equal(x[0], x[1])
    res = json.loads((folder / interp.RESULTS).read_text())
    assert res["rows"] == 2 and res["columns"] == 4 and res["step"] == 10 and res["nfe_per_sample"] == 10
    w, h = Image.open(folder / interp.FIGURE).size
    assert w / h == pytest.approx((4 * 9 + 1) / (2 * 9 + 1))
    # Found by its hash the second time: nothing recomputed.
    mtime = (folder / interp.TENSOR).stat().st_mtime_ns
    again = cli.invoke(app, ["run", str(f), "--runs", str(runs), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert (folder / interp.TENSOR).stat().st_mtime_ns == mtime


PAPERS = ROOT / "papers"


@pytest.mark.parametrize(
    ("name", "source", "experiment"),
    [
        ("ncsnv2_cifar10_interpolation", "ncsnv2_cifar.exp", "ncsnv2_cifar10"),
        ("ncsnv2_celeba64_interpolation", "ncsnv2_celeba.exp", "ncsnv2_celeba64"),
        ("ncsnv2_church_interpolation", "ncsnv2_church.exp", "ncsnv2_church"),
    ],
)
def test_the_papers_figures_use_the_papers_trained_models(name: str, source: str, experiment: str) -> None:
    figures = {s.experiment: s for s in compile_file(PAPERS / "ncsnv2_interpolation.exp")}
    trained = {s.experiment: s for s in compile_file(PAPERS / source, compute_auto=False)}[experiment]
    fig = figures[name]
    assert fig.train_hash() == trained.train_hash()  # `repro run` reuses the trained model
    assert fig.interpolate is not None and fig.sample is None and fig.evaluate is None
    # The sampler is the paper's: the experiment's annealed Langevin T and ε.
    (al,) = [st for st in trained.stages if st.name == "annealed_langevin"]
    assert fig.interpolate.get("steps_per_level") == al.get("steps_per_level")
    assert fig.interpolate.get("step_size") == al.get("step_size")
