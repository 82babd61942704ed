"""NCSN Fig. 6 (inpainting): `stage inpainting { repeats = k }` gives k completions per
reference image, the sample stage saves the references and masks (inpainting.pt) and the
figure (inpainting.png: per row the occluded image, k completions, the original), and the
metric inpainting_error measures the occluded pixels only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsl.compiler import compile_file
from ncsn_core import layout
from ncsn_core.errors import EvaluationError
from ncsn_core.evaluation.inpainting import masked_error
from ncsn_core.images import inpainting_rows
from ncsn_core.runner import build, run_spec
from ncsn_core.samplers import Inpainting

TINY = """experiment e {{
    data digits {{ }}
    noise geometric {{ sigma_max = 1.0, sigma_min = 0.01, levels = 3 }}
    network mlp {{ hidden = 16 }}
    loss dsm {{ }}
    train {{ iterations = 5, batch_size = 8 }}
    sample {{ samples = {n}, batch_size = {b}, stage {stage} }}
    evaluate {{ metrics = [{metrics}], samples = {n} }}
}}"""


def _run(write, tmp_path: Path, *, n: int = 7, b: int = 4, stage: str, metrics: str = "") -> Path:  # type: ignore[no-untyped-def]
    (spec,) = compile_file(write("e.exp", TINY.format(n=n, b=b, stage=stage, metrics=metrics)))
    run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    (seed,) = layout.seed_dirs(layout.run_dir(tmp_path / "runs", "e", spec.hash()))
    return seed


def test_inpainting_png_has_one_row_per_reference_occluded_completions_original(
    write, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # 7 samples, 3 per image, in batches of 4 (so image 1's completions span two batches):
    # rows = 3 reference images (the last with one completion and two blank tiles).
    k, n = 3, 7
    seed = _run(
        write,
        tmp_path,
        n=n,
        stage=f"inpainting {{ steps_per_level = 2, repeats = {k} }}",
        metrics="inpainting_error",
    )
    (sample,) = layout.stage_dirs(seed, layout.SAMPLE)
    used = torch.load(sample / layout.INPAINTING, weights_only=True)
    x = torch.load(sample / layout.SAMPLES, weights_only=True)
    ref, mask = used["reference"], used["mask"]
    assert used["repeats"] == k and ref.shape == mask.shape == (3, 1, 8, 8)
    # the split's first images, in order; the official mask (right half occluded)
    test = build(
        "data",
        compile_file(write("d.exp", TINY.format(n=2, b=2, stage="inpainting { }", metrics="")))[0].data,
    )
    assert torch.equal(ref, test.as_float("test")[:3])
    assert mask[:, :, :, :4].eq(1).all() and mask[:, :, :, 4:].eq(0).all()
    # every completion keeps its own image's known pixels (x_ref + σ_L z̃, σ_L = 0.01)
    for j in range(n):
        known = mask[j // k].bool()
        assert (x[j][known] - ref[j // k][known]).abs().max() < 0.06
    # the tiles: rows × (k + 2); occluded = reference × mask; original = reference
    tiles = inpainting_rows(x, ref, mask, k).reshape(3, k + 2, 1, 8, 8)
    assert torch.equal(tiles[:, 0], ref * mask) and torch.equal(tiles[:, -1], ref)
    assert torch.equal(tiles[0, 1 : k + 1], x[:3]) and torch.equal(tiles[2, 1], x[6])
    assert tiles[2, 2:4].eq(1).all()  # blank where the run drew fewer
    # the PNG: make_grid with 1-pixel padding, upscaled ×s for 8×8 digits
    png = np.asarray(Image.open(sample / layout.INPAINTING_FIGURE))
    w = (k + 2) * (8 + 1) + 1
    s = max(1, 256 // w)
    assert png.shape[:2] == ((3 * (8 + 1) + 1) * s, w * s)
    small = torch.from_numpy(png[::s, ::s, 0].astype("float32") / 255)

    def tile(r: int, c: int) -> torch.Tensor:
        return small[1 + r * 9 : 1 + r * 9 + 8, 1 + c * 9 : 1 + c * 9 + 8]

    for r in range(3):
        assert torch.allclose(tile(r, 0), (ref[r] * mask[r])[0], atol=1 / 255)
        assert torch.allclose(tile(r, k + 1), ref[r][0], atol=1 / 255)
        assert torch.allclose(tile(r, 1), x[r * k][0].clamp(0, 1), atol=1 / 255)
    # the metric ran on the same samples, over the occluded half only
    (ev,) = layout.stage_dirs(seed, layout.EVAL)
    import json

    m = json.loads((ev / layout.METRICS).read_text())
    mse, psnr, count = masked_error(x, ref, mask, k)
    assert m["inpainting_mse"] == pytest.approx(mse) and m["inpainting_psnr"] == pytest.approx(psnr)
    assert count == n * 32 and m["protocol"]["inpainting"]["occluded_values"] == n * 32


def test_repeats_1_is_todays_stage_and_random_masks_are_shared_by_an_images_completions() -> None:
    from test_samplers import ctx, images

    data = images(5, 3)
    sig = [0.5, 0.1]
    score = lambda x, i: -x  # noqa: E731
    # repeats = 1: sample j completes image j, batches continue through the split
    st = Inpainting(1, 1e-4, "right", 0.5, "test")
    c = ctx(score, sig, data=data)
    st.run(torch.zeros(3, 3, 6, 6), c)
    st.run(torch.zeros(3, 3, 6, 6), c)
    assert torch.equal(st.last_reference, data.as_float("test")[[3, 4, 0]])
    assert torch.equal(st.used()["reference"], data.as_float("test")[[0, 1, 2, 3, 4, 0]])
    # repeats = 2: samples 0-1 → image 0, 2-3 → image 1, ...; a random mask per image
    st = Inpainting(1, 1e-4, "random", 0.5, "test", repeats=2)
    c = ctx(score, sig, data=data)
    st.run(torch.zeros(3, 3, 6, 6), c)
    m0 = st.last_mask
    st.run(torch.zeros(3, 3, 6, 6), c)
    assert torch.equal(st.last_reference, data.as_float("test")[[1, 2, 2]])
    assert torch.equal(m0[2], st.last_mask[0])  # image 1's two completions, across two batches
    used = st.used()
    assert used["reference"].shape[0] == 3 and not torch.equal(used["mask"][0], used["mask"][1])


def _closed_form_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ref = 0.3 + 0.4 * torch.rand((2, 3, 4, 4), generator=g)  # two reference images
    mask = torch.zeros(2, 3, 4, 4)
    mask[0, :, :, :2] = 1  # image 0: left half known (24 occluded values)
    mask[1, :, :1, :] = 1  # image 1: top row known (36 occluded values)
    rows = torch.tensor([0, 0, 1, 1])  # repeats = 2
    x = ref[rows].clone()
    x += 0.25 * (1 - mask[rows]) * torch.tensor([1.0, -1.0, 1.0, 1.0]).view(4, 1, 1, 1)
    x += 0.9 * mask[rows]  # known pixels wildly off: they must not count (clamped anyway)
    return x, ref, mask


def test_inpainting_error_against_a_closed_form() -> None:
    x, ref, mask = _closed_form_case()
    mse, psnr, count = masked_error(x, ref, mask, 2)
    assert count == 2 * 24 + 2 * 36
    assert mse == pytest.approx(0.0625, rel=1e-6)  # every occluded value off by 0.25
    assert psnr == pytest.approx(10 * math.log10(1 / 0.0625), rel=1e-6)  # 12.0412 dB
    assert masked_error(ref[[0, 0, 1, 1]], ref, mask, 2)[:2] == (0.0, 100.0)  # exact: capped
    with pytest.raises(EvaluationError, match="need 3 reference images"):
        masked_error(torch.cat([x, x[:1]]), ref, mask, 2)


def test_inpainting_error_through_evaluate_reads_the_sample_folder(tmp_path: Path) -> None:
    from ncsn_core.data import DataSource
    from ncsn_core.evaluation import evaluate
    from ncsn_core.values import Call

    x, ref, mask = _closed_form_case()
    torch.save({"reference": ref, "mask": mask, "repeats": 2}, tmp_path / layout.INPAINTING)
    blank = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    data = DataSource("blank", "image", (3, 4, 4), train=blank, test=None, identity="blank")
    settings = {"samples": 4, "sample_samples": 4, "sample_stages": ("inpainting",), "sample_dir": tmp_path}
    out = evaluate(
        (Call("inpainting_error"),), x, data, settings=settings, run_key="k", cache_dir=tmp_path / "c"
    )
    assert out["inpainting_mse"] == pytest.approx(0.0625) and out["inpainting_psnr"] == pytest.approx(
        12.0412, abs=1e-4
    )
    with pytest.raises(EvaluationError, match="inpainting.pt in the sample stage folder"):
        evaluate((Call("inpainting_error"),), x, data, settings={}, run_key="k", cache_dir=tmp_path / "c")


def test_inpainting_error_without_an_inpainting_stage_fails_before_anything_runs(
    write, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    src = TINY.format(n=4, b=4, stage="annealed_langevin { steps_per_level = 1 }", metrics="inpainting_error")
    (spec,) = compile_file(write("e.exp", src))
    with pytest.raises(
        EvaluationError,
        match=r"sample block has no inpainting stage \(its stages: annealed_langevin\); add `stage inpainting",
    ):
        run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
    assert not (tmp_path / "runs").exists()  # nothing trained or sampled
    src = TINY.format(n=4, b=4, stage="inpainting { }", metrics="inpainting_error").replace(
        "metrics = [inpainting_error], samples = 4", "metrics = [inpainting_error], samples = 8"
    )
    (spec,) = compile_file(write("f.exp", src))
    with pytest.raises(EvaluationError, match=r"evaluate.samples = 8; set evaluate \{ samples = 4 \}"):
        run_spec(spec, runs_dir=tmp_path / "runs", device="cpu", quiet=True)
