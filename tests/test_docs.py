"""The committed docs' reference tables are generated from the registry and must be current."""

from __future__ import annotations

from dsl.docgen import DOC, reference_markdown, render_doc
from ncsn_core import registry


def test_language_reference_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, "docs/language.md is stale: run `python -m dsl.docgen --write`"


def test_every_component_is_documented() -> None:
    md = reference_markdown()
    for kind in registry.KINDS:
        for name in registry.names(kind):
            assert f"#### `{name}`" in md
            comp = registry.lookup(kind, name)
            for p in comp.params:
                assert f"| `{p.name}` |" in md
                assert p.doc, f"{kind} {name}: parameter {p.name} has no doc"
