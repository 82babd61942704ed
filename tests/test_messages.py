"""Messages of issue 25, item 8 (and the training's progress line, item 6): each names what
to write instead, not just what is wrong."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from dsl.errors import DiagnosticError

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ROOT / "papers"
QUICK = PAPERS / "quickstart_digits.exp"

BODY = """experiment e {{
    data {data}
    noise geometric {{ sigma_max = 1.0, sigma_min = 0.01, levels = 10 }}
    network ncsn {{ ngf = 8 }}
    loss dsm {{ }}
    train {{ batch_size = 8, iterations = 10{train} }}
    sample {{ stage annealed_langevin {{ steps_per_level = 2 }} }}
}}
"""


def messages(tmp_path: Path, src: str) -> list[str]:
    f = tmp_path / "x.exp"
    f.write_text(src, encoding="utf-8")
    with pytest.raises(DiagnosticError) as ei:
        compile_file(f, compute_auto=False)
    return [d.message for d in ei.value.diagnostics]


@pytest.mark.parametrize(
    "alias, says",
    [
        ("ffhq", "read FFHQ with `data images { path = "),
        ("lsun_church", "`data lsun { category = church_outdoor }`"),
        ("lsun_bedroom", "`data lsun { category = bedroom }`"),
        ("FFHQ", "`data images"),
        ("fashion", "`data fashion_mnist { }`"),
    ],
)
def test_dataset_alias_says_how_it_is_read(tmp_path: Path, alias: str, says: str) -> None:
    (msg,) = messages(tmp_path, BODY.format(data=f"{alias} {{ }}", train=""))
    assert msg.startswith(f"unknown data '{alias}'; ") and says in msg, msg


def test_aliases_name_real_components() -> None:
    """Every alias's advice names a dataset that exists, and no alias shadows one."""
    from ncsn_core import registry
    from ncsn_core.declarations.data import ALIASES

    names = registry.names("data")
    for alias, advice in ALIASES.items():
        assert alias not in names, alias
        (named,) = set(re.findall(r"`data (\w+)", advice))
        assert named in names, (alias, advice)
        for cat in re.findall(r"category = (\w+)", advice):
            registry.lookup("data", named).param("category").check(cat)


def test_misplaced_parameter_names_the_block_kind_it_belongs_to(tmp_path: Path) -> None:
    (msg,) = messages(tmp_path, BODY.format(data="digits { }", train=", step_size = 1e-5"))
    assert "step_size is a parameter of sampler stages (annealed_langevin," in msg, msg
    assert msg.endswith("not of train") and "batch_size" not in msg, msg
    (msg,) = messages(tmp_path, BODY.format(data="digits { }", train=", lr = 1e-4"))
    assert "lr is a parameter of optimizers (adam, rmsprop, sgd), not of train" in msg, msg
    (msg,) = messages(tmp_path, BODY.format(data="digits { ngf = 8 }", train=""))
    assert "ngf is a parameter of networks (ncsn, ncsnv2, ncsnv2_deeper, …), not of data digits" in msg, msg
    # a typo of a name nobody declares still gets the did-you-mean
    (msg,) = messages(tmp_path, BODY.format(data="digits { }", train=", batch_sise = 8"))
    assert msg.endswith("did you mean 'batch_size'?"), msg


def test_missing_import_suggests_the_closest_papers_file() -> None:
    from dsl.suggest import missing_file_hint

    assert missing_file_hint(PAPERS / "ncsn_cifar10.exp") == f"; did you mean '{PAPERS / 'ncsn_cifar.exp'}'?"
    assert missing_file_hint(PAPERS / "ncsnv2_lsun_church.exp").endswith("ncsnv2_church.exp'?")
    assert missing_file_hint(PAPERS / "zzzz.exp") == ""
    assert missing_file_hint(PAPERS / "no-such-folder" / "ncsn_cifar.exp") == ""


def test_renamed_import_gets_a_did_you_mean(tmp_path: Path) -> None:
    f = tmp_path / "x.exp"
    f.write_text(f'import "{PAPERS / "ncsn_cifar10.exp"}"\n', encoding="utf-8")
    r = CliRunner().invoke(app, ["check", str(f)])
    assert r.exit_code == 2 and "did you mean" in r.output and "ncsn_cifar.exp'?" in r.output, r.output


def test_progress_line_has_rate_and_eta() -> None:
    from ncsn_core.trainlog import ProgressLine

    out = io.StringIO()
    line = ProgressLine("train e", stream=out)
    line.t_last -= 2.0  # 2 s ago
    line(100, 1000, 0.5)
    (text,) = out.getvalue().splitlines()
    m = re.fullmatch(r"train e step 100/1000 loss 0\.5 · ([\d.]+) it/s · ETA (\d+)s", text)
    assert m, text
    rate, eta = float(m.group(1)), int(m.group(2))
    assert 40 < rate <= 50 and 17 <= eta <= 23, text  # 100 steps in ~2 s; 900 left


def test_tiny_run_prints_it_s_and_eta(tmp_path: Path) -> None:
    args = ["run", str(QUICK), "--runs", str(tmp_path / "runs"), "--device", "cpu", "--until", "train"]
    for s in (
        "train.iterations=10",
        "train.log_every=5",
        "train.checkpoint_every=10",
        "train.tensorboard=false",
    ):
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    steps = [ln for ln in r.output.splitlines() if re.search(r"step \d+/10 ", ln)]
    assert len(steps) == 2, r.output
    assert re.search(r"step 5/10 loss \S+ · [\d.e+]+ it/s · ETA \d+", steps[0]), steps
    assert re.search(r"step 10/10 loss \S+ · [\d.e+]+ it/s$", steps[1]), steps
