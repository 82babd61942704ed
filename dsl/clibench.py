"""`repro bench cli`: start-up latency of the commands, measured in fresh processes beside
`python -c pass` (the interpreter's own start): the time to the FIRST LINE of output (stdout and
stderr together, read until the first newline) and to the end, min and median of each.

Goal (issue 25): the first line of any command within 0.5 s, on a loaded machine too. Commands
that need torch may import it after their first line; `repro compile` without ``--no-auto``
counts parameters and FLOPs with torch before it prints the first experiment."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PAPERS = Path(__file__).resolve().parent.parent / "papers"
QUICKSTART = PAPERS / "quickstart_digits.exp"


def _time(cmd: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Seconds to the first line and to the end of ``cmd``, once per repeat (fresh processes)."""
    first, total = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert p.stdout is not None
        p.stdout.readline()
        first.append(time.perf_counter() - t0)
        p.stdout.read()
        p.wait()
        total.append(time.perf_counter() - t0)
    return first, total


def _cases(py: str, runs: str) -> list[tuple[str, list[str]]]:
    cli = [py, "-m", "dsl.cli"]
    files = sorted(str(p) for p in PAPERS.glob("*.exp"))
    q = str(QUICKSTART)
    return [
        ("python -c pass", [py, "-c", "pass"]),
        ("repro --help", [*cli, "--help"]),
        ("repro check quickstart_digits.exp", [*cli, "check", q]),
        (f"repro check papers/*.exp ({len(files)} files)", [*cli, "check", *files]),
        ("repro compile --no-auto quickstart_digits.exp", [*cli, "compile", "--no-auto", q]),
        ("repro compile quickstart_digits.exp (torch)", [*cli, "compile", q, "--runs", runs]),
        ("repro ls (empty runs folder)", [*cli, "ls", runs]),
        ("repro report (empty runs folder)", [*cli, "report", runs, "--format", "md"]),
        ("repro explain noise geometric", [*cli, "explain", "noise", "geometric"]),
        ("python -c 'import torch' (for scale)", [py, "-c", "import torch"]),
    ]


def run(repeats: int = 5) -> Iterator[str]:
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="repro-bench-cli-") as tmp:
        runs = str(Path(tmp) / "runs")
        Path(runs).mkdir()
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            yield "note: PYTHONDONTWRITEBYTECODE is set: the project's modules are compiled from source in every process"
        yield f"cli latency, {repeats} fresh processes each, seconds (first line min / median, total min / median):"
        for label, cmd in _cases(py, runs):
            first, total = _time(cmd, repeats)
            yield (
                f"  {label:<46} {min(first):6.3f} / {statistics.median(first):6.3f}"
                f"   {min(total):6.3f} / {statistics.median(total):6.3f}"
            )
