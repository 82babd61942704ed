"""Shared test fixtures: small valid experiments and helpers to write .exp files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

# Two cores on CI: one intra-op thread per test process keeps timings predictable.
torch.set_num_threads(1)
os.environ.setdefault("REPRO_CACHE", tempfile.mkdtemp(prefix="repro-test-cache-"))
# Tests never download anything (CI has no internet): missing Inception weights fail at once.
os.environ["REPRO_OFFLINE"] = "1"

BASE = """\
experiment e {
    data digits { }
    noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }
    network ncsn { ngf = 8 }
    loss dsm { }
    train { iterations = 10, batch_size = 8 }
    sample { stage annealed_langevin { steps_per_level = 2 } }
}
"""


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """write(name, text) -> Path of a file in a fresh temporary folder."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p

    return _write
