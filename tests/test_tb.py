"""`repro tb` starts a real TensorBoard (issue 25, item 6): on 127.0.0.1 with a free port, it
prints the address once the port answers, serves a bounded HTTP GET, and is stopped here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ncsn_core import layout

ROOT = Path(__file__).resolve().parent.parent


def test_repro_tb_starts_a_server_that_answers(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    runs = tmp_path / "runs"
    (runs / "exp" / "0123abcd" / "seed-0" / layout.TRAIN / layout.TENSORBOARD).mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsl.cli", "tb", str(runs), "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if line.startswith("TensorBoard on "):
                break
        m = re.match(
            r"TensorBoard on http://127\.0\.0\.1:(\d+)/ \(bind address 127\.0\.0\.1, port (\d+);", line
        )
        assert m and m.group(1) == m.group(2), (line, proc.poll())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with opener.open(f"http://127.0.0.1:{m.group(1)}/", timeout=10) as r:
            assert r.status == 200
            assert b"TensorBoard" in r.read(200_000) or r.headers.get_content_type() == "text/html"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: repro tb stops its server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode is not None


def test_repro_tb_print_and_refusals(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dsl.cli import app

    runs = tmp_path / "runs"
    (runs / "exp" / "0123abcd" / "seed-0" / layout.TRAIN / layout.TENSORBOARD).mkdir(parents=True)
    r = CliRunner().invoke(app, ["tb", str(runs), "--print", "--port", "7007"])
    assert r.exit_code == 0 and f"tensorboard --logdir {runs} --host 127.0.0.1 --port 7007" in r.output
    r = CliRunner().invoke(app, ["tb", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such runs folder" in r.output
    r = CliRunner().invoke(app, ["tb", str(runs), "--port", "70000"])
    assert r.exit_code == 2 and "not a port" in r.output
