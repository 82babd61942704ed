"""`published { ..., protocol { ... } }`: parsed, checked against schema.PROTOCOL, inherited,
printed back canonically, in no hash; and the unhashed `parent` of an ablation."""

from __future__ import annotations

import pytest
from conftest import BASE

from dsl.compiler import compile_file
from dsl.errors import DiagnosticError
from dsl.fmt import format_text

PUB = """    published "T1" {
        fid = 25.32
        protocol { samples = 50k, reference = train, checkpoint = best_fid, iterations = 200 }
    }
"""


def _with(pub: str) -> str:
    return BASE.replace("}\n", "}\n", 0).rstrip()[:-1] + pub + "}\n"


def test_protocol_lowered_and_not_hashed(write) -> None:  # type: ignore[no-untyped-def]
    a = compile_file(write("a.exp", _with(PUB)), compute_auto=False)[0]
    b = compile_file(write("b.exp", BASE), compute_auto=False)[0]
    assert a.hash() == b.hash()
    pub = a.canonical()["published"][0]
    assert pub["protocol"] == {
        "samples": 50000,
        "reference": "train",
        "checkpoint": "best_fid",
        "iterations": 200,
    }
    assert "parent" not in a.canonical()


def test_protocol_inherited_and_parent_recorded(write) -> None:  # type: ignore[no-untyped-def]
    src = (
        _with(PUB) + 'experiment child extends e {\n    noise.levels = 5\n    published "T2" { fid = 3 }\n}\n'
    )
    parent, child = compile_file(write("c.exp", src), compute_auto=False)
    c = child.canonical()
    assert c["parent"] == "e" and c["published"][0]["protocol"]["samples"] == 50000
    # the parent's name is provenance, not meaning
    same = compile_file(write("d.exp", BASE.replace("levels = 10", "levels = 5")), compute_auto=False)[0]
    assert child.hash() == same.hash()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("samplez = 5", "unknown protocol key 'samplez'"),
        ("reference = validation", "protocol.reference"),
        ("samples = 1.5", "protocol.samples"),
    ],
)
def test_protocol_errors(write, body: str, message: str) -> None:  # type: ignore[no-untyped-def]
    src = _with(f'    published "T" {{ fid = 1, protocol {{ {body} }} }}\n')
    with pytest.raises(DiagnosticError) as e:
        compile_file(write("e.exp", src), compute_auto=False)
    assert message in str(e.value)


def test_protocol_round_trip(write) -> None:  # type: ignore[no-untyped-def]
    src = _with(PUB)
    text = format_text(src, "x.exp")
    assert "protocol {" in text and "checkpoint = best_fid" in text
    assert format_text(text, "x.exp") == text
    p1 = compile_file(write("f.exp", src), compute_auto=False)[0]
    p2 = compile_file(write("g.exp", text), compute_auto=False)[0]
    assert p1.canonical()["published"] == p2.canonical()["published"]


def test_duplicate_protocol_block(write) -> None:  # type: ignore[no-untyped-def]
    src = _with('    published "T" { fid = 1, protocol { samples = 5 }, protocol { samples = 6 } }\n')
    with pytest.raises(DiagnosticError, match="duplicate protocol block"):
        compile_file(write("h.exp", src), compute_auto=False)
