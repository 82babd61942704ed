"""Issue 17: weights from released checkpoints (`train { from = released(...) }`) in the official
NCSN / NCSNv2 layouts, and `repro export` back to them. Tiny networks (ngf 8) on 8×8 digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import layout
from ncsn_core import released as rel
from ncsn_core.errors import CheckpointError
from ncsn_core.runner import Run, run_spec

cli = CliRunner()

SRC = """\
experiment src {{
    data digits {{ }}
    noise geometric {{ sigma_max = 1.0, sigma_min = 0.01, levels = 4 }}
    network {net} {{ ngf = 8 }}
    loss dsm {{ weight = sigma ** 2 }}
    train {{ optimizer = adam(lr = 1e-3), batch_size = 16, iterations = 3, checkpoint_every = 3, log_every = 1, ema = {ema} }}
    sample {{ samples = 6, batch_size = 6, stage annealed_langevin {{ steps_per_level = 2, step_size = 1e-5 }} }}
}}
"""
RELEASED = """\
experiment rel extends src {{
    train.from = released(path = "{path}", format = {fmt})
}}
"""


def one(path: Path, **kw):  # type: ignore[no-untyped-def]
    specs = compile_file(path, **kw)
    assert len(specs) == 1
    return specs[0]


def trained(write, tmp_path: Path, net: str, ema: float, sets=()):  # type: ignore[no-untyped-def]
    """Train the tiny source model and sample it; returns (spec, runs folder, checkpoint, samples)."""
    f = write("src.exp", SRC.format(net=net, ema=ema))
    spec = one(f, sets=list(sets))
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    seed = layout.seed_dir(layout.run_dir(runs, "src", spec.hash()), 0)
    ck = sorted((seed / "train" / "checkpoints").glob("step-*.pt"))[-1]
    x = torch.load(seed / f"sample-{spec.sample_hash()}" / "samples.pt")
    return spec, runs, ck, x


def official_file(ck: Path, fmt: str, out: Path) -> Path:
    """Build a checkpoint in the official layout by hand from a repro checkpoint."""
    st = torch.load(ck, weights_only=True)
    keep = (lambda k: True) if fmt == "ncsnv2" else (lambda k: k != "sigmas")
    score = {"module." + rel.official_name(k): v for k, v in st["model"].items() if keep(k)}
    if fmt == "ncsn":
        states = [score, st["optimizer"]]
    else:
        shadow = {
            rel.official_name(k): v for k, v in st["ema"].items() if k != "sigmas"
        }  # unprefixed, as models/ema.py
        states = [score, st["optimizer"], 1, st["step"], shadow]
    torch.save(states, out)
    return out


def test_official_parameter_names() -> None:
    """repro's module names mapped to the official code's (begin_conv, res<k>, refine<k>, ...)."""
    name = rel.official_name
    assert name("begin.weight") == "begin_conv.weight"
    assert name("end.bias") == "end_conv.bias"
    assert name("final_norm.embed.weight") == "normalizer.embed.weight"
    assert name("stages.0.1.norm1.embed.weight") == "res1.1.normalize1.embed.weight"
    assert name("stages.1.0.conv2.conv.weight") == "res2.0.conv2.conv.weight"
    assert name("stages.2.0.shortcut.weight") == "res3.0.shortcut.weight"
    assert name("refines.0.adapt.0.convs.3.weight") == "refine1.adapt_convs.0.2_2_conv.weight"
    assert name("refines.3.out.norms.4.embed.weight") == "refine4.output_convs.3_1_norm.embed.weight"
    assert name("refines.1.msf.convs.1.bias") == "refine2.msf.convs.1.bias"
    assert name("refines.1.crp.norms.0.alpha") == "refine2.crp.norms.0.alpha"
    assert name("sigmas") == "sigmas"


@pytest.mark.parametrize("use_ema", [True, False])
def test_ncsnv2_layout_through_the_exp_file_samples_as_the_source(write, tmp_path, use_ema) -> None:  # type: ignore[no-untyped-def]
    sets = [f"sample.use_ema={'true' if use_ema else 'false'}"]
    src, runs, ck, x_src = trained(write, tmp_path, "ncsnv2", 0.9, sets)
    f = official_file(ck, "ncsnv2", tmp_path / "checkpoint_3.pth")
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=f, fmt="ncsnv2"))
    spec = one(exp, sets=sets)
    assert spec.train_hash() != src.train_hash()
    run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    seed = layout.seed_dir(layout.run_dir(runs, "rel", spec.hash()), 0)
    x = torch.load(seed / f"sample-{spec.sample_hash()}" / "samples.pt")
    assert torch.equal(x, x_src)  # the EMA shadow (or the raw weights) exactly as trained
    results = json.loads((seed / "train" / "results.json").read_text())
    assert results["iterations"] == 3 and results["released"]["format"] == "ncsnv2"
    assert results["weights"].startswith(f"released checkpoint {f} (sha256 ")
    info = json.loads((seed / f"sample-{spec.sample_hash()}" / "results.json").read_text())
    assert info["ema"] is use_ema


def test_ncsn_layout_through_repro_run_and_protocol(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, runs, ck, x_src = trained(write, tmp_path, "ncsn", 0.0)
    f = official_file(ck, "ncsn", tmp_path / "checkpoint.pth")
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=f, fmt="ncsn"))
    r = cli.invoke(app, ["run", str(exp), "--runs", str(runs), "--device", "cpu", "--until", "sample"])
    assert r.exit_code == 0, r.output
    spec = one(exp)
    seed = layout.seed_dir(layout.run_dir(runs, "rel", spec.hash()), 0)
    assert torch.equal(torch.load(seed / f"sample-{spec.sample_hash()}" / "samples.pt"), x_src)
    # What the evaluation protocol copies as `weights`: the released file, its SHA-256 and format.
    train_dir = Run(spec, runs, "cpu", quiet=True).conduct("train")  # the completed stage, reused
    assert train_dir is not None
    results = json.loads((train_dir / "results.json").read_text())
    assert results["weights"] == f"released checkpoint {f} (sha256 {rel.file_sha256(f)}, format ncsn)"


def test_train_hash_is_the_file_not_the_training_settings(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, _, ck, _ = trained(write, tmp_path, "ncsn", 0.0)
    f = official_file(ck, "ncsn", tmp_path / "checkpoint.pth")
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=f, fmt="ncsn"))
    a = one(exp)
    b = one(exp, sets=["train.iterations=99", "train.optimizer=adam(lr = 1e-5)"])
    assert a.train_hash() == b.train_hash() and a.hash() == b.hash()
    assert a.canonical()["released"]["sha256"] == rel.file_sha256(f)
    c = one(exp, sets=['train.from=released(path = "x.pth", format = ncsn)'])
    assert c.train_hash() != a.train_hash()
    before = a.train_hash()
    f.write_bytes(f.read_bytes() + b"\0")  # other content, same path: another train stage
    assert one(exp).train_hash() != before
    # A train block without `from` lowers as before the field existed.
    src = one(tmp_path / "src.exp")
    assert "from" not in src.canonical()["train"]["params"] and "released" not in src.canonical()


def test_export_then_import_is_bit_identical(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for net, fmt, ema in (("ncsnv2", "ncsnv2", 0.9), ("ncsn", "ncsn", 0.0)):
        src, runs, ck, _ = trained(write, tmp_path / net, net, ema)
        out = tmp_path / f"{fmt}.pth"
        r = cli.invoke(app, ["export", str(runs / "src"), "--format", fmt, "--out", str(out)])
        assert r.exit_code == 0, r.output
        states = torch.load(out, weights_only=True)
        run = Run(src, runs, "cpu", quiet=True)
        assert isinstance(states, list) and len(states) == (5 if fmt == "ncsnv2" else 2)
        assert all(k.startswith("module.") for k in states[0])
        assert "module.begin_conv.weight" in states[0]
        assert set(states[1]) == {"state", "param_groups"}  # the optimizer state as saved
        if fmt == "ncsnv2":
            assert states[3] == 3 and "module.sigmas" in states[0] and "sigmas" not in states[4]
            _official_ema_load(states[4], run.network())  # the official helper loads it
            with pytest.raises(KeyError):  # and would not load the module.-prefixed names
                _official_ema_load({"module." + k: v for k, v in states[4].items()}, run.network())
        run = Run(src, runs, "cpu", quiet=True)
        source = run.network()
        st = torch.load(ck, weights_only=True)
        back = run.network()
        imported = rel.to_repro(back, run.noise(), {"path": str(out), "format": fmt})
        x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        idx = torch.tensor([0, 1, 2, 3, 0])
        for which in ("model", "ema") if ema else ("model",):
            source.load_state_dict(st[which])
            back.load_state_dict(imported[which])
            with torch.no_grad():
                assert torch.equal(source(x, idx), back(x, idx))


def _official_ema_load(shadow: dict, net: torch.nn.Module) -> None:
    """The official NCSNv2 EMAHelper contract (models/ema.py), reproduced: ``load_state_dict``
    stores the dict as the shadow, and ``ema(model)`` unwraps DataParallel and copies
    ``shadow[name]`` into every parameter of ``model.module.named_parameters()`` that requires
    grad: a missing name is a KeyError. Strict here: the names must be exactly those."""
    names = {
        rel.official_name(k, rel.n_stages(net.state_dict()))
        for k, p in net.named_parameters()
        if p.requires_grad
    }
    wrapped = torch.nn.DataParallel(net)
    for name, p in wrapped.module.named_parameters():
        official = rel.official_name(name, rel.n_stages(net.state_dict()))
        p.data.copy_(shadow[official])  # KeyError with module.-prefixed names
    assert set(shadow) == names


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_is_refused_and_never_runs(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"
    f = tmp_path / "checkpoint.pth"
    torch.save([{"module.begin_conv.weight": torch.zeros(1)}, _Payload(marker)], f)
    assert not marker.exists()
    write("src.exp", SRC.format(net="ncsn", ema=0.0))
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=f, fmt="ncsn"))
    with pytest.raises(CheckpointError) as e:
        run_spec(one(exp), runs_dir=tmp_path / "runs", device="cpu", until="sample", quiet=True)
    assert not marker.exists()
    assert str(f) in str(e.value) and "weights-only" in str(e.value)


def test_a_mis_shaped_file_lists_the_keys_and_what_it_was_trained_with(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, _, ck, _ = trained(write, tmp_path, "ncsn", 0.0)
    f = official_file(ck, "ncsn", tmp_path / "checkpoint.pth")
    states = torch.load(f, weights_only=True)
    states[0]["module.extra.weight"] = torch.zeros(2)
    del states[0]["module.end_conv.bias"]
    torch.save(states, f)
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=f, fmt="ncsn"))
    spec = one(exp, sets=["network.ngf=4", "noise.levels=6"])
    with pytest.raises(CheckpointError) as e:
        run_spec(spec, runs_dir=tmp_path / "runs2", device="cpu", until="sample", quiet=True)
    msg = str(e.value)
    assert str(f) in msg and "Mis-shaped keys" in msg and "begin_conv.weight (8, 1, 3, 3)" in msg
    assert "Unknown keys (1): extra.weight" in msg and "Missing keys (1): end_conv.bias" in msg
    assert "network ncsn, ngf 8, 1 channel(s), L = 4" in msg
    assert "ngf 4, L = 6" in msg  # what the experiment builds


def test_a_missing_file_is_named_before_any_work(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    write("src.exp", SRC.format(net="ncsnv2", ema=0.9))
    missing = tmp_path / "checkpoints" / "ncsnv2_cifar10.pth"
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=missing, fmt="ncsnv2"))
    r = cli.invoke(app, ["check", str(exp)])
    assert r.exit_code == 0 and "checkpoint not present" in r.output
    r = cli.invoke(app, ["compile", str(exp), "--no-auto", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["released"]["sha256"] == "checkpoint not present"
    runs = tmp_path / "runs"
    r = cli.invoke(app, ["run", str(exp), "--runs", str(runs), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert f"checkpoint not present: {missing}" in r.output and "github.com/ermongroup/ncsnv2" in r.output
    assert "Traceback" not in r.output and not runs.exists()


def test_repro_format_reads_a_repro_checkpoint(write, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, runs, ck, x_src = trained(write, tmp_path, "ncsnv2", 0.9)
    exp = write("rel.exp", 'import "src.exp"\n' + RELEASED.format(path=ck, fmt="repro"))
    spec = one(exp)
    run_spec(spec, runs_dir=runs, device="cpu", until="sample", quiet=True)
    seed = layout.seed_dir(layout.run_dir(runs, "rel", spec.hash()), 0)
    assert torch.equal(torch.load(seed / f"sample-{spec.sample_hash()}" / "samples.pt"), x_src)
    # An official file named with the wrong format says what it is.
    wrong = write("wrong.exp", 'import "src.exp"\n' + RELEASED.format(path=ck, fmt="ncsnv2"))
    with pytest.raises(CheckpointError, match="use format = repro"):
        run_spec(one(wrong), runs_dir=runs, device="cpu", until="sample", quiet=True)


def test_official_names_follow_the_official_modules() -> None:
    """Top-level names as ermongroup/ncsn (CondRefineNetDilated) and ermongroup/ncsnv2
    (NCSNv2, NCSNv2Deeper, NCSNv2Deepest: res31/refine31 between res3/res4 and refine2/refine3)
    define them, with shapes that place each block: Deepest's res31 is a plain down-sampling
    block (ConvMeanPool: conv2.conv), its res4 the dilated one that doubles the width."""
    from ncsn_core import registry

    sig = torch.linspace(1.0, 0.01, 4)

    def official(net: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        decl = registry.lookup("network", net)
        params, errors = decl.check_params({"ngf": 4})
        assert not errors
        sd = decl.builder(**params, shape=shape, sigmas=sig).state_dict()
        depth = rel.n_stages(sd)
        return {rel.official_name(k, depth): tuple(v.shape) for k, v in sd.items()}

    def heads(names: dict[str, tuple[int, ...]]) -> list[str]:
        return sorted({k.split(".")[0] for k in names})

    common = ["begin_conv", "end_conv", "normalizer"]
    four = [f"res{i}" for i in range(1, 5)] + [f"refine{i}" for i in range(1, 5)]
    ncsn = official("ncsn", (3, 32, 32))
    # CondRefineNetDilated has no σ buffer: the ncsn format leaves repro's out
    assert heads({k: v for k, v in ncsn.items() if k != "sigmas"}) == sorted([*common, *four])
    assert ncsn["res2.0.conv2.conv.weight"] == (8, 4, 3, 3)  # ConvMeanPool
    assert ncsn["refine4.output_convs.3_2_conv.weight"] == (4, 4, 3, 3)  # 3 RCU blocks at the end
    assert "normalizer.embed.weight" in ncsn  # CondInstanceNorm++
    v2 = official("ncsnv2", (3, 32, 32))
    assert heads(v2) == sorted([*common, *four, "sigmas"]) and "normalizer.alpha" in v2
    deeper = official("ncsnv2_deeper", (3, 64, 64))
    assert heads(deeper) == sorted([*common, *four, "res5", "refine5", "sigmas"])
    deepest = official("ncsnv2_deepest", (3, 128, 128))
    assert heads(deepest) == sorted([*common, *four, "res5", "res31", "refine5", "refine31", "sigmas"])
    assert deepest["res31.0.conv2.conv.weight"] == (8, 8, 3, 3)  # 2ngf → 2ngf, down, no dilation
    assert deepest["res4.0.conv2.weight"] == (16, 8, 3, 3)  # 2ngf → 4ngf, dilated
    assert deepest["refine2.adapt_convs.0.1_1_conv.weight"] == (16, 16, 3, 3)  # [4ngf, 4ngf] → 2ngf
    assert deepest["refine31.adapt_convs.0.1_1_conv.weight"] == (8, 8, 3, 3)  # [2ngf, 2ngf] → 2ngf
