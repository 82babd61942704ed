"""`repro run --dry-run` prints the plan and runs nothing; before a real run on CUDA a batch that
cannot fit the free memory is refused with exit 2 (issue 22, the plan's wiring). The CUDA check
runs here with torch.cuda's answers replaced (no GPU needed)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from dsl.cli import app

FILE = "papers/quickstart_digits.exp"


def test_dry_run_plans_and_runs_nothing(tmp_path):
    runs = tmp_path / "runs"
    r = CliRunner().invoke(app, ["run", FILE, "--runs", str(runs), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "| experiment |" in r.output and "μbatch 24GB" in r.output
    assert "to compute:" in r.output and "dry run:" in r.output
    assert not runs.exists()


def test_refuses_batch_that_cannot_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (10**6, 80 * 10**9))  # 1 MB free
    runs = tmp_path / "runs"
    r = CliRunner().invoke(app, ["run", FILE, "--runs", str(runs), "--device", "cuda"])
    assert r.exit_code == 2, r.output
    assert "of device memory" in r.output and "1 MB is free" in r.output
    assert "Traceback" not in r.output
    assert not runs.exists()
