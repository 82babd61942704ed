"""Reference tables generated from the registry (docs/language.md, `repro explain`).

``python -m dsl.docgen --write`` refreshes the generated part of docs/language.md; a test
fails when the committed file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ncsn_core import registry
from ncsn_core.params import REQUIRED, Param
from ncsn_core.registry import Component
from ncsn_core.values import value_text

BEGIN = "<!-- BEGIN GENERATED: registry reference (python -m dsl.docgen --write) -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
KIND_TITLES = registry.KINDS


def default_text(p: Param) -> str:
    return "required" if p.default is REQUIRED else value_text(p.default)


def param_rows(c: Component) -> list[list[str]]:
    rows = []
    for p in c.params:
        t = p.type.describe() + (" or auto" if p.auto else "")
        rows.append([p.name, t, default_text(p), p.doc])
    return rows


def _md_table(rows: list[list[str]]) -> str:
    head = "| parameter | type | default | meaning |\n|---|---|---|---|\n"
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    return head + "\n".join("| `" + r[0] + "` | " + " | ".join(r[1:]) + " |" for r in esc) + "\n"


def reference_markdown() -> str:
    parts = []
    for kind in registry.KINDS:
        comps = registry.components(kind)
        if not comps:
            continue
        parts.append(f"### {KIND_TITLES.get(kind, kind)}\n")
        for c in comps:
            parts.append(f"#### `{c.name}`\n\n{c.doc}\n")
            if c.params:
                parts.append(_md_table(param_rows(c)))
            else:
                parts.append("No parameters.\n")
    return "\n".join(parts)


def render_doc(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC}: generated-section markers missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n\n" + reference_markdown() + "\n" + END + tail


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = render_doc(text)
    if "--write" in argv:
        DOC.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{DOC} is stale: run python -m dsl.docgen --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
