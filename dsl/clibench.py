"""`repro bench cli`: start-up latency of the commands that must not import torch, measured in
fresh processes beside `python -c pass` (the interpreter's own start), min and median."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PAPERS = Path(__file__).resolve().parent.parent / "papers"


def _time(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        out.append(time.perf_counter() - t0)
    return out


def run(repeats: int = 5) -> Iterator[str]:
    py = sys.executable
    files = sorted(str(p) for p in PAPERS.glob("*.exp"))
    cases = [
        ("python -c pass", [py, "-c", "pass"]),
        ("repro --help", [py, "-m", "dsl.cli", "--help"]),
        (f"repro check papers/*.exp ({len(files)} files)", [py, "-m", "dsl.cli", "check", *files]),
        ("repro explain noise geometric", [py, "-m", "dsl.cli", "explain", "noise", "geometric"]),
        ("python -c 'import torch' (for scale)", [py, "-c", "import torch"]),
    ]
    yield f"cli latency, {repeats} fresh processes each (min / median seconds):"
    for label, cmd in cases:
        t = _time(cmd, repeats)
        yield f"  {label:<44} {min(t):6.3f} / {statistics.median(t):6.3f}"
