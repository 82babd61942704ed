"""Every papers/*.exp file compiles to exactly the canonical JSON pinned in the fixture.

Refactors must leave every hash and canonical value unchanged; a deliberate change of meaning
regenerates the fixture (`python tests/gen_compile_fixture.py`) and says why in its commit.
"""

from __future__ import annotations

import json

import pytest
from gen_compile_fixture import FIXTURE, compile_all


@pytest.fixture(scope="module")
def compiled() -> dict:
    return json.loads(json.dumps(compile_all(), sort_keys=True))


PINNED = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_papers_file_compiles_to_the_pinned_json(compiled: dict, name: str) -> None:
    assert name in compiled, f"papers/{name} is pinned but no longer exists"
    got, want = compiled[name], PINNED[name]
    assert [s["experiment"] for s in got] == [s["experiment"] for s in want]
    for g, w in zip(got, want):
        assert g == w, f"{name}: experiment {w['experiment']} compiles differently from the fixture"


def test_every_papers_file_is_pinned(compiled: dict) -> None:
    assert sorted(compiled) == sorted(PINNED), "regenerate with python tests/gen_compile_fixture.py"
