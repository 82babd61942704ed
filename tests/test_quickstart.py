"""The quickstart samples with the setting its measured sweep chose (docs/quickstart.md), and
the README states the number that setting gave (issue 24, item 6)."""

from __future__ import annotations

import re
from pathlib import Path

from dsl.compiler import compile_file

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "papers" / "quickstart_digits.exp"
DOC = ROOT / "docs" / "quickstart.md"


def chosen_row() -> list[str]:
    """The sweep table's row in bold: the chosen setting."""
    rows = [ln for ln in DOC.read_text(encoding="utf-8").splitlines() if ln.startswith("| **")]
    assert len(rows) == 1, rows
    return [c.strip().strip("*") for c in rows[0].strip("|").split("|")]


def test_the_quickstart_samples_with_the_sweeps_best_setting() -> None:
    (spec,) = compile_file(QUICK, compute_auto=False)
    (stage,) = spec.canonical()["stages"]
    assert stage["name"] == "annealed_langevin"
    t, eps, nfe, *_ = chosen_row()
    assert stage["params"]["steps_per_level"] == int(t)
    assert stage["params"]["step_size"] == float(eps)
    assert int(nfe) == int(t) * spec.canonical()["noise"]["params"]["levels"]


def test_the_paper_setting_stays_one_set_away_and_differs() -> None:
    (spec,) = compile_file(QUICK, compute_auto=False, sets=["sample.annealed_langevin.steps_per_level=100"])
    (chosen,) = compile_file(QUICK, compute_auto=False)
    assert spec.canonical()["stages"][0]["params"]["steps_per_level"] == 100
    assert spec.train_hash() == chosen.train_hash()  # the trained model is reused
    assert spec.sample_hash() != chosen.sample_hash()


def test_readme_states_the_chosen_settings_number() -> None:
    seed0 = chosen_row()[3]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"Expect \*\*FID \(domain\) {re.escape(seed0)}\*\*", readme), seed0
    assert "docs/quickstart.md" in readme
