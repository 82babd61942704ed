"""`repro import-config`: every official NCSN/NCSNv2 config converts to an .exp file that
compiles, each YAML key commented; mistakes are positioned errors; and the papers files agree
with what import-config makes of the configs they cite, except the departures listed below."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("yaml")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dsl.commands.import_config import register  # noqa: E402
from dsl.compiler import compile_file  # noqa: E402
from dsl.errors import DiagnosticError  # noqa: E402
from dsl.importconfig import import_config, num  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "official_configs"
OFFICIAL = [("ncsn", p) for p in sorted((DATA / "ncsn").glob("*.yml"))] + [
    ("ncsnv2", p) for p in sorted((DATA / "ncsnv2").glob("*.yml"))
]


def _yaml_keys(path: Path) -> list[str]:
    """The file's active keys as section.key, read line by line (not by the importer)."""
    keys, section = [], None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^(\w+):\s*(\S.*)?$", line)
        if m:
            section = m.group(1)
            if m.group(2):  # a top-level scalar (toy.yml's placeholder)
                keys.append(section)
            continue
        m = re.match(r"^\s+(\w+):", line)
        assert m and section, line
        keys.append(f"{section}.{m.group(1)}")
    return keys


def test_the_official_configs_are_all_here():
    assert [p.stem for s, p in OFFICIAL if s == "ncsn"] == ["anneal", "baseline", "scorenet", "toy"]
    assert sorted(p.stem for s, p in OFFICIAL if s == "ncsnv2") == [
        "bedroom",
        "celeba",
        "church",
        "cifar10",
        "ffhq",
        "ncsn_original",
        "tower",
    ]


@pytest.mark.parametrize("source,path", OFFICIAL, ids=[f"{s}/{p.stem}" for s, p in OFFICIAL])
def test_every_official_config_converts_compiles_and_names_every_key(source, path, tmp_path):
    text = import_config(path, source)
    out = tmp_path / f"{path.stem}.exp"
    out.write_text(text)
    specs = compile_file(out, compute_auto=False)
    assert len(specs) == 1 and specs[0].experiment == f"{source}_{path.stem}"
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    keys = _yaml_keys(path)
    assert keys
    for key in keys:
        assert re.search(rf"(?<![\w.]){re.escape(key)}: ", comments), f"{key} is not named in the output"


def test_values_are_mapped_as_the_official_code_reads_them():
    text = import_config(DATA / "ncsnv2" / "ffhq.yml", "ncsnv2")
    assert "step_size = 1.8e-6  # sampling.step_lr: 0.0000009 = ε/2" in text
    assert "optimizer = adam(lr = 0.0001, eps = 0.001)" in text
    assert "iterations = 80_000  # training.n_iters: 80001" in text
    assert "network ncsnv2_deepest" in text
    # ffhq.yml's fast_fid range (100000 → 80000) is empty: the sample uses ckpt_id, the last step
    assert "select {" not in text and "checkpoint = last" in text
    spec = compile_file(_write(text), compute_auto=False)[0]
    assert [s.name for s in spec.stages] == ["annealed_langevin", "denoise"]


def test_number_spelling():
    assert [num(200_000), num(5000), num(1.24e-05), num(0.0001), num(50.0)] == [
        "200_000",
        "5000",
        "1.24e-5",
        "0.0001",
        "50.0",
    ]


def _write(text: str, name: str = "x.exp") -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / name).write_text(text)
    return d / name


# ------------------------------------------------------------------------------- agreement
# Each papers experiment that follows an official config: the config it cites (a file under
# tests/data/official_configs; variants/ switch on a block the official file has commented
# out, see the README there), the import-config options, and the settings in which the
# papers file departs from the import on purpose, each with its reason. The test requires the
# differing canonical settings to be exactly these: a new difference, or a departure that
# disappeared, fails it.
NCSN_SAMPLER = {
    "sample.params.samples": "the official test() draws a 5×5 grid (25); the papers files draw 100",
    "stages[0].params.record_every": "the papers files keep every 100th step (Fig. 4); the import none",
}
NCSN_SELECT = {
    "sample.params.checkpoint": "NCSN paper §5: best FID of the checkpoints (not in the config)",
    "select.name": "NCSN paper §5 selection, not in the config",
    "select.params.batch_size": "(the select block)",
    "select.params.metric.call": "(the select block)",
    "select.params.samples": "(the select block)",
    "train.params.keep_every": "keeps every checkpoint as the selection's candidates",
}
EVAL_50K = {
    "evaluate.params.samples": "50,000 samples (docs/fidelity.md); the config's num_samples4fid 10,000"
}
NCSN_EVAL = {
    "evaluate.params.samples": "the papers file evaluates 10,000 samples; the import the paper's 50,000"
}
V2_GRID = {
    "sample.params.samples": "the papers files draw 64 samples; the config's sampling.batch_size grid differs"
}

AGREEMENT = [
    ("ncsn_mnist.exp", "ncsn_mnist", "ncsn", "ncsn/anneal.yml", {}, {**NCSN_SAMPLER, **NCSN_EVAL}),
    (
        "ncsn_cifar.exp",
        "ncsn_cifar10",
        "ncsn",
        "variants/cifar10/anneal.yml",
        {},
        {**NCSN_SAMPLER, **NCSN_SELECT},
    ),
    (
        "ncsn_celeba.exp",
        "ncsn_celeba",
        "ncsn",
        "variants/celeba/anneal.yml",
        {},
        {**NCSN_SAMPLER, **NCSN_SELECT, **NCSN_EVAL},
    ),
    ("ncsn_baseline_cifar.exp", "ncsn_baseline_cifar10", "ncsn", "variants/cifar10/baseline.yml", {}, {}),
    (
        "ncsn_toy_fig2.exp",
        "ncsn_toy_fig2",
        "ncsn",
        "ncsn/toy.yml",
        {},
        {"train.params.checkpoint_every": "the toy runner saves no checkpoint; the papers file every 2,000"},
    ),
    ("ncsnv2_cifar.exp", "ncsnv2_cifar10", "ncsnv2", "ncsnv2/cifar10.yml", {}, EVAL_50K),
    ("ncsnv2_celeba.exp", "ncsnv2_celeba64", "ncsnv2", "ncsnv2/celeba.yml", {}, EVAL_50K),
    (
        "ncsnv2_celeba.exp",
        "ncsn_celeba64",
        "ncsnv2",
        "variants/celeba/ncsn_original.yml",
        {},
        {**EVAL_50K, **V2_GRID},
    ),
    (
        "ncsnv2_bedroom.exp",
        "ncsnv2_bedroom",
        "ncsnv2",
        "ncsnv2/bedroom.yml",
        {"checkpoint": "ckpt_id"},
        {**EVAL_50K, **V2_GRID},
    ),
    (
        "ncsnv2_tower.exp",
        "ncsnv2_tower",
        "ncsnv2",
        "ncsnv2/tower.yml",
        {"checkpoint": "ckpt_id"},
        {**EVAL_50K, **V2_GRID},
    ),
    (
        "ncsnv2_church.exp",
        "ncsnv2_church",
        "ncsnv2",
        "ncsnv2/church.yml",
        {"checkpoint": "ckpt_id"},
        {
            **EVAL_50K,
            **V2_GRID,
            "data.params.image_size": "config says 64, its L = 788 fits 96 (reference.md): the papers file trains at 96",
        },
    ),
    ("ncsnv2_ffhq.exp", "ncsnv2_ffhq", "ncsnv2", "ncsnv2/ffhq.yml", {}, {**EVAL_50K, **V2_GRID}),
]
SECTIONS = ("data", "noise", "network", "loss", "train", "select", "sample", "stages", "evaluate")


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


@pytest.mark.parametrize(
    "paper,experiment,source,config,options,departures", AGREEMENT, ids=[a[1] for a in AGREEMENT]
)
def test_papers_files_agree_with_import_config(
    paper, experiment, source, config, options, departures, tmp_path
):
    out = tmp_path / "imported.exp"
    out.write_text(import_config(DATA / config, source, **options))
    mine = compile_file(out, compute_auto=False)[0]
    theirs = compile_file(ROOT / "papers" / paper, experiments=[experiment], compute_auto=False)[0]
    a = _flat({s: mine.canonical().get(s) for s in SECTIONS})
    b = _flat({s: theirs.canonical().get(s) for s in SECTIONS})
    differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert differ == set(departures), {k: (a.get(k), b.get(k)) for k in differ ^ set(departures)}
    train_departs = any(k.split(".")[0] in ("data", "noise", "network", "loss", "train") for k in departures)
    assert (mine.train_hash() == theirs.train_hash()) is not train_departs
    sample_departs = any(k.split(".")[0] != "evaluate" for k in departures)
    assert (mine.sample_hash() == theirs.sample_hash()) is not sample_departs


# ------------------------------------------------------------------------------- mistakes
def _variant(tmp_path: Path, edit, name: str = "cifar10.yml") -> Path:
    text = (DATA / "ncsnv2" / "cifar10.yml").read_text()
    p = tmp_path / name
    p.write_text(edit(text))
    return p


def _errors(path: Path, source: str = "ncsnv2") -> list:
    with pytest.raises(DiagnosticError) as e:
        import_config(path, source)
    return list(e.value.diagnostics)


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def test_unknown_keys_are_errors_at_their_line(tmp_path):
    p = _variant(tmp_path, lambda t: t.replace("  n_iters: 300001", "  n_iter: 300001\n  ngpu: 2"))
    diags = _errors(p)
    assert [(d.pos.line, d.pos.col) for d in diags[:2]] == [
        (_line_of(p, "n_iter:"), 3),
        (_line_of(p, "ngpu"), 3),
    ]
    assert "missing key 'training.n_iters'" in diags[2].message  # and, so, n_iters is missing
    assert "unknown key 'training.n_iter' for --from ncsnv2; did you mean 'n_iters'?" in diags[0].message
    assert "training.ngpu" in diags[1].message  # an ncsn key, not ncsnv2's
    rendered = diags[0].render()
    assert rendered.startswith(f"{p}:{diags[0].pos.line}:3: error:") and "n_iter: 300001" in rendered


def test_unknown_section_and_wrong_values(tmp_path):
    p = _variant(
        tmp_path,
        lambda t: (
            t.replace("  lr: 0.0001", "  lr: 1e-4")
            .replace("  logit_transform: false", "  logit_transform: true")
            .replace("  ngf: 128", "  ngf: many")
            + "sampler:\n  steps: 5\n"
        ),
    )
    diags = _errors(p)
    by_line = {d.pos.line: d for d in diags}
    assert by_line[_line_of(p, "sampler:")].message.startswith("unknown section 'sampler'")
    lr = by_line[_line_of(p, "lr: 1e-4")]
    assert "expected a number, got a string (1e-4)" in lr.message and "YAML 1.1" in lr.notes[0]
    assert "is not supported by repro" in by_line[_line_of(p, "logit_transform: true")].message
    assert "'model.ngf': expected an integer" in by_line[_line_of(p, "ngf: many")].message


def test_duplicate_keys(tmp_path):
    same = _variant(
        tmp_path, lambda t: t.replace("  random_flip: true", "  random_flip: true\n  random_flip: true")
    )
    import_config(same, "ncsnv2")  # the same value twice (as ncsn_original.yml's CelebA block): accepted
    clash = _variant(
        tmp_path, lambda t: t.replace("  random_flip: true", "  random_flip: true\n  random_flip: false")
    )
    (d,) = _errors(clash)
    assert "'data.random_flip' is set twice, to true and false" in d.message and d.pos.line == _line_of(
        clash, "random_flip: false"
    )


def test_not_yaml_and_not_a_config(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("training:\n  batch_size: [1, 2\n")
    (d,) = _errors(bad)
    assert d.message.startswith("not valid YAML") and d.pos.line >= 2
    lst = tmp_path / "list.yml"
    lst.write_text("- 1\n- 2\n")
    assert "expected a mapping of sections" in _errors(lst)[0].message
    # YAML tags that would build objects are refused by the safe loader
    tag = tmp_path / "tag.yml"
    tag.write_text("training:\n  batch_size: !!python/object/apply:os.system ['true']\n")
    assert _errors(tag)[0].pos.line == 2


def test_missing_key_and_wrong_source(tmp_path):
    p = _variant(tmp_path, lambda t: t.replace("  n_iters: 300001\n", ""))
    assert any("missing key 'training.n_iters'" in d.message for d in _errors(p))
    # an ncsnv2 config read as ncsn: its NCSNv2-only sections are unknown
    assert any(
        "unknown section 'sampling'" in d.message for d in _errors(DATA / "ncsnv2" / "cifar10.yml", "ncsn")
    )


def test_fast_fid_must_sample_as_the_sample_block(tmp_path):
    p = _variant(
        tmp_path, lambda t: t.replace("  n_steps_each: 5\n  begin_ckpt", "  n_steps_each: 4\n  begin_ckpt")
    )
    (d,) = _errors(p)
    assert "'fast_fid.n_steps_each' differs from sampling's" in d.message
    text = import_config(p, "ncsnv2", checkpoint="ckpt_id")  # sampling.ckpt_id instead: no select
    assert "select {" not in text and "checkpoint = last" in text


# ------------------------------------------------------------------------------- CLI
def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so the command is called by its name
        pass

    register(app)
    return app


def test_cli_writes_stdout_or_a_file(tmp_path):
    runner = CliRunner()
    cfg = str(DATA / "ncsnv2" / "celeba.yml")
    r = runner.invoke(_app(), ["import-config", cfg, "--from", "ncsnv2", "--name", "mine"])
    assert r.exit_code == 0, r.output
    assert "experiment mine {" in r.stdout
    out = tmp_path / "c.exp"
    r = runner.invoke(_app(), ["import-config", cfg, "--from", "ncsnv2", "--out", str(out)])
    assert r.exit_code == 0 and out.read_text().startswith(
        "# Imported by `repro import-config --from ncsnv2`"
    )
    assert compile_file(out, compute_auto=False)[0].experiment == "ncsnv2_celeba"
    r = runner.invoke(_app(), ["import-config", cfg, "--from", "ncsnv2", "--out", str(out)])
    assert r.exit_code == 2 and "exists; pass --force" in r.output


def test_cli_errors_exit_2_without_traceback(tmp_path):
    runner = CliRunner()
    p = _variant(tmp_path, lambda t: t.replace("  ema: true", "  emma: true"))
    r = runner.invoke(_app(), ["import-config", str(p), "--from", "ncsnv2"])
    assert r.exit_code == 2
    assert f"{p}:{_line_of(p, 'emma')}:3: error: unknown key 'model.emma'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(_app(), ["import-config", str(p), "--from", "ncsnv3"])
    assert r.exit_code == 2 and "--from must be one of ncsn, ncsnv2" in r.output
    r = runner.invoke(_app(), ["import-config", str(tmp_path / "none.yml"), "--from", "ncsn"])
    assert r.exit_code == 2 and "no such file" in r.output
