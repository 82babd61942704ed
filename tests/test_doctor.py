"""`repro doctor` (issue 22.4) at --quick sizes on the CPU: the same code the GPU run uses, so it
cannot rot. Every part is guarded (one failing part is recorded, the others still run) and
time-boxed (a part past its box is stopped and recorded)."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from dsl.cli import app
from dsl.compiler import compile_file
from ncsn_core import doctor


def _compile(path, experiments):  # type: ignore[no-untyped-def]
    return compile_file(path, experiments=experiments, compute_auto=True)


def test_doctor_quick_writes_json_and_markdown(tmp_path):
    t0 = time.perf_counter()
    r = CliRunner().invoke(
        app, ["doctor", "--quick", "--out", str(tmp_path), "--part", "graphs", "--part", "plan_memory"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "doctor.json").read_text())
    assert res["size"] == "quick" and set(res["parts"]) == {"graphs", "plan_memory"}
    g = res["parts"]["graphs"]
    assert g["status"] == "ok" and g["max_rel_diff"] <= g["tolerance"]
    (row,) = res["parts"]["plan_memory"]["rows"]
    assert row["predicted_bytes"] > 0 and row["real_bytes"] > 0
    # the plan is an upper bound of the real step (eager, same settings); its error is recorded
    assert row["error"] == row["predicted_bytes"] / row["real_bytes"] - 1 and row["error"] >= -0.05
    md = (tmp_path / "doctor.md").read_text()
    assert "| graphs | ok |" in md and "| plan_memory | ok |" in md
    print(f"doctor quick (2 parts): {time.perf_counter() - t0:.1f} s")


def test_every_part_runs_quick(tmp_path):
    """All five parts at quick sizes: each ends ok or, on a loaded machine, at its time box;
    none raises out of the doctor."""
    res = doctor.run_doctor(tmp_path, quick=True, device="cpu", compile=_compile, log=lambda s: None)
    assert list(res["parts"]) == list(doctor.PARTS)
    for name, p in res["parts"].items():
        assert p["status"] in ("ok", "timeout"), (name, p)
    t = res["parts"]["cuda_tests"]
    if t["status"] == "ok":
        assert t["returncode"] in (0, 5) and ("passed" in t["summary"] or "skipped" in t["summary"])
    fid = res["parts"]["bf16_fid"]
    if fid["status"] == "ok":
        assert set(fid["fid_domain"]) == {"fp32", "bf16"}


def test_a_failing_part_is_recorded_and_the_rest_runs(tmp_path, monkeypatch):
    def boom(ctx, deadline):  # type: ignore[no-untyped-def]
        raise RuntimeError("deliberate")

    def sleepy(ctx, deadline):  # type: ignore[no-untyped-def]
        time.sleep(30)
        return {}

    monkeypatch.setitem(doctor.PARTS, "graphs", boom)
    monkeypatch.setitem(doctor.PARTS, "bench", sleepy)
    t0 = time.perf_counter()
    res = doctor.run_doctor(
        tmp_path,
        quick=True,
        device="cpu",
        compile=_compile,
        parts=("graphs", "bench", "plan_memory"),
        budgets={"bench": 1},
        log=lambda s: None,
    )
    assert time.perf_counter() - t0 < 25
    assert res["parts"]["graphs"]["status"] == "error" and "deliberate" in res["parts"]["graphs"]["error"]
    assert res["parts"]["bench"]["status"] == "timeout"
    assert res["parts"]["plan_memory"]["status"] == "ok"
    assert not res["ok"]
    assert "| graphs | error |" in (tmp_path / "doctor.md").read_text()


def test_unknown_part_is_a_user_error(tmp_path):
    r = CliRunner().invoke(app, ["doctor", "--out", str(tmp_path), "--part", "nope"])
    assert r.exit_code == 2 and "unknown part" in r.output
