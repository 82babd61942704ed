"""Issue 23, the runs folder and exports: a hostile runs folder (a 100k-deep spec.json, a FIFO
named spec.json, a symlink out of the folder, a garbage metrics.json) never makes `repro ls` or
`repro report` hang or print a traceback, and a damaged run is shown as damaged; `repro export
--out` never replaces a device node, FIFO or (without --force) an existing file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsl.cli import app
from ncsn_core import layout

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
cli = CliRunner()


def good_run(runs: Path, name: str = "good", h: str = "aaaa") -> Path:
    """A complete run folder as the runner leaves it (spec, one seed, an evaluated stage)."""
    run = runs / name / h
    ev = run / "seed-0" / "eval-e1"
    ev.mkdir(parents=True)
    (run / layout.SPEC).write_text(json.dumps({"experiment": name, "hash": h, "paper": "p"}))
    (ev / layout.STAGE).write_text(json.dumps({"stage": "eval", "hash": "e1"}))
    (ev / layout.METRICS).write_text(json.dumps({"fid": 12.5}))
    (ev / layout.DONE).write_text("x\n")
    return run


def repro(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (a hang fails the test by the timeout, not the suite)."""
    return subprocess.run(
        [sys.executable, "-m", "dsl.cli", *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ls_json(runs: Path) -> tuple[list[dict], str]:
    r = repro("ls", runs, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    return json.loads(r.stdout), r.stderr


def status_of(rows: list[dict], path: Path) -> tuple[str, str]:
    (row,) = [r for r in rows if Path(r["path"]) == path]
    return row["status"], row["detail"]


def test_a_100k_deep_spec_json_is_a_damaged_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good = good_run(runs)
    bad = good_run(runs, "deep", "bbbb")
    (bad / layout.SPEC).write_text("[" * 100_000 + "]" * 100_000)
    rows, err = ls_json(runs)
    assert status_of(rows, good)[0] == "done"
    st, why = status_of(rows, bad)
    assert st == "damaged" and "nested deeper" in why and "spec.json" in why
    r = repro("ls", runs, "--status", "damaged", "--json")  # only the damaged run
    assert r.returncode == 0 and [Path(x["path"]) for x in json.loads(r.stdout)] == [bad], r.stderr
    r = repro("report", runs, "--format", "md")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "spec.json" in r.stderr  # skipped with a warning naming the file


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_spec_json_does_not_hang(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good = good_run(runs)
    bad = runs / "fifo" / "cccc"
    (bad / "seed-0").mkdir(parents=True)
    os.mkfifo(bad / layout.SPEC)
    rows, err = ls_json(runs)
    assert status_of(rows, good)[0] == "done"
    st, why = status_of(rows, bad)
    assert st == "damaged" and "not a regular file" in why
    r = repro("report", runs, "--format", "md", timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(bad / layout.SPEC).st_mode)  # left as it was


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_among_the_stage_records_does_not_hang(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = good_run(runs, "fifo", "dddd")
    os.mkfifo(bad / "seed-0" / "eval-e1" / layout.STAGE.replace("stage", "results"))
    rows, _ = ls_json(runs)
    st, why = status_of(rows, bad)
    assert st == "damaged" and "results.json" in why


def test_a_symlink_out_of_the_runs_folder_is_skipped_with_a_warning(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good_run(runs)
    outside = good_run(tmp_path / "elsewhere", "secret", "ffff")
    (runs / "secret").symlink_to(outside.parent, target_is_directory=True)
    rows, err = ls_json(runs)
    assert "secret" in err and "outside the runs folder" in err
    assert not any(r["status"] == "done" and r["experiment"] == "secret" for r in rows)
    assert all(
        not Path(r["path"]).resolve().is_relative_to(outside.resolve()) or r["status"] == "damaged"
        for r in rows
    )
    # a seed folder linked out of the runs folder: the run is damaged, nothing read through it
    linked = good_run(runs, "linked", "eeee")
    os.rename(linked / "seed-0", tmp_path / "seed-out")
    (linked / "seed-0").symlink_to(tmp_path / "seed-out", target_is_directory=True)
    rows, _ = ls_json(runs)
    st, why = status_of(rows, linked)
    assert st == "damaged" and "outside the runs folder" in why


@pytest.mark.parametrize("garbage", [b"\x00\xffgarbage", b"[1, 2]", b'{"fid": "twelve"}', b'"x"'])
def test_a_garbage_metrics_json_is_not_done(tmp_path: Path, garbage: bytes) -> None:
    runs = tmp_path / "runs"
    run = good_run(runs)
    (run / "seed-0" / "eval-e1" / layout.METRICS).write_bytes(garbage)
    rows, _ = ls_json(runs)
    st, why = status_of(rows, run)
    assert st == "damaged" and "metrics.json" in why
    r = repro("ls", runs)
    assert r.returncode == 0 and "status: damaged" in r.stdout, r.stdout + r.stderr


# ----------------------------------------------------------------------------- export --out
@pytest.fixture(scope="module")
def exportable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_released import SRC

    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    d = tmp_path_factory.mktemp("export")
    f = d / "src.exp"
    f.write_text(SRC.format(net="ncsnv2", ema=0.9))
    (spec,) = compile_file(f)
    run_spec(spec, runs_dir=d / "runs", device="cpu", until="train", quiet=True)
    return d / "runs" / "src"


def export(src: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli.invoke(app, ["export", str(src), "--out", str(out), *extra])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_export_never_replaces_a_fifo_or_device(exportable: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "out.pth"
    os.mkfifo(fifo)
    for force in ((), ("--force",)):
        r = export(exportable, fifo, *force)
        assert r.exit_code == 2 and "FIFO" in r.output and str(fifo) in r.output, r.output
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    r = export(exportable, Path(os.devnull), "--force")
    assert r.exit_code == 2 and "device" in r.output, r.output
    r = export(exportable, tmp_path, "--force")
    assert r.exit_code == 2 and "directory" in r.output, r.output


def test_export_overwrites_only_with_force(exportable: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.pth"
    out.write_bytes(b"keep me")
    r = export(exportable, out)
    assert r.exit_code == 2 and "--force" in r.output, r.output
    assert out.read_bytes() == b"keep me"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours")
    link = tmp_path / "link.pth"
    link.symlink_to(victim)
    r = export(exportable, link)
    assert r.exit_code == 2 and victim.read_bytes() == b"not yours" and link.is_symlink()
    r = export(exportable, out, "--force")
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != b"keep me" and out.stat().st_size > 1000
    r = export(exportable, link, "--force")  # the link itself is replaced, never its target
    assert r.exit_code == 0 and victim.read_bytes() == b"not yours" and not link.is_symlink()
    new = tmp_path / "sub" / "new.pth"
    new.parent.mkdir()
    assert export(exportable, new).exit_code == 0 and new.is_file()
    assert [p.name for p in new.parent.iterdir()] == ["new.pth"]  # no temporary left beside it


# ----------------------------------------------------------------------------- own tensors
class _Payload:
    """Unpickled by the full unpickler, this creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.marker),))


def test_a_payload_samples_pt_is_a_named_run_error(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pickle
    import shutil

    from test_runs import TOY

    from dsl.compiler import compile_file
    from ncsn_core.runner import run_spec

    f = write("toy.exp", TOY)
    (spec,) = compile_file(f)
    runs = tmp_path / "runs"
    run_spec(spec, runs_dir=runs, device="cpu", quiet=True)
    seed = runs / "toy" / spec.hash() / "seed-0"
    samples = seed / f"sample-{spec.sample_hash()}" / layout.SAMPLES
    samples.write_bytes(pickle.dumps(_Payload(tmp_path / "PWNED")))
    shutil.rmtree(seed / f"eval-{spec.eval_hash()}")
    r = repro("run", f, "--runs", runs, "--device", "cpu", timeout=300)
    assert not (tmp_path / "PWNED").exists()  # no code ran
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert str(samples) in r.stderr


def test_a_fifo_named_like_a_checkpoint_is_skipped_not_read(tmp_path: Path) -> None:
    """A FIFO (or a link to /dev/zero) among the checkpoints is damaged, never opened: resume
    falls back to the previous checkpoint instead of hanging in the hashing."""
    import os

    from ncsn_core import checkpoint as ckpt
    from ncsn_core.checkpoint import CheckpointError

    fifo = tmp_path / "step-00000010.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        ckpt.load(fifo)
    link = tmp_path / "step-00000020.pt"
    link.symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        ckpt.load(link)


# ----------------------------------------------------------------------------- report --out
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_report_out_refuses_a_fifo_device_or_folder_and_replaces_a_file(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good_run(runs)
    fifo = tmp_path / "report.md"
    os.mkfifo(fifo)
    for target, what in ((fifo, "FIFO"), (Path(os.devnull), "device"), (tmp_path, "directory")):
        r = repro("report", runs, "--out", target, "--papers", tmp_path / "none")
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    old = tmp_path / "old.md"
    old.write_text("an earlier report")
    r = repro("report", runs, "--out", old, "--papers", tmp_path / "none")
    assert r.returncode == 0 and old.read_text().startswith("# Reproduction report"), r.stderr
