"""docs/api.md's example runs as written; repro/invocations.py's records read back."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from repro import invocations

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_api_docs_example_runs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every ```python block of docs/api.md, in order, in one namespace, in a fresh folder."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__docs__"}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the project's own docs
    assert len(ns["done"]) == 2 and ns["labels"] == [
        "tiny[train.optimizer.lr=1e-3]",
        "tiny[train.optimizer.lr=2e-3]",
    ]


def test_records_are_by_date_never_overwritten_and_name_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = runs / "e" / "abc"
    run.mkdir(parents=True)
    exp = tmp_path / "x.exp"
    exp.write_text("experiment e {}")
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    rows = [{"label": "e[seed=1]", "experiment": "e", "hash": "abc", "path": str(run)}]
    a = invocations.record(runs, argv=["repro", "run"], file=exp, sets=["seed=1"], runs=rows, now=now)
    b = invocations.record(runs, argv=["repro", "run"], file=exp, runs=rows, now=now)
    assert (a.name, b.name) == ("2026-01-02_03-04-05", "2026-01-02_03-04-05-2")
    assert [d["set"] for d in invocations.read_all(runs)] == [["seed=1"], []]
    (link,) = (a / "runs").iterdir()
    assert link.name == "000-e_seed=1" and link.resolve() == run.resolve()
    assert invocations.files_by_run(runs) == {"e/abc": str(exp)}
