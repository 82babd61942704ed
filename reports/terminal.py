"""`repro report` on a terminal: the report document as rich tables that wrap to fit the width
(100 columns by default). Torch-free."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from reports import tables as reporter
from reports.shape import RAN_COLUMNS, ran_cells

if TYPE_CHECKING:
    from rich.table import Table


def _table(headers: list[str], rows: list[list[Any]], title: str = "") -> Table:
    from rich import box
    from rich.table import Table

    t = Table(title=title or None, box=box.SIMPLE_HEAD, show_lines=False, title_justify="left")
    for h in headers:
        t.add_column(h, overflow="fold")
    for row in rows:
        t.add_row(*[str(c) for c in row])
    return t


def _without_empty_columns(headers: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns with no value in any row ("" or "–") left out: a terminal is narrow."""
    keep = [i for i in range(len(headers)) if i == 0 or any(str(r[i]) not in ("", "–") for r in rows)]
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows]


def render_text(doc: dict[str, Any], width: int = 100) -> str:
    from rich.console import Console

    buf = io.StringIO()
    con = Console(
        file=buf, width=width, no_color=True, highlight=False, soft_wrap=False, emoji=False, markup=False
    )
    con.print("Reproduction report", style="bold")
    con.print(doc["found"])
    for p in doc["problems"]:
        con.print(f"problem: {p}")
    con.rule("What was run")
    for f in doc["ran"]:
        con.print(
            _table(*_without_empty_columns([h for _, h in RAN_COLUMNS], ran_cells(f["rows"])), f["file"])
        )
    if not doc["ran"]:
        con.print("No runs found.")
    if doc["not_run"]:
        con.print(doc["not_run"])
    con.print(
        "Floor: the same metric for real images instead of samples, at the run's sample count "
        "(mean ± sd over its draws of real images when there are several)."
    )
    con.print()
    for p in doc["papers"]:
        con.rule(p["name"])
        for e in p["experiments"]:
            head = e["name"] + (f" (extends {e['parent']})" if e["parent"] else "")
            con.print(head, style="bold")
            if e["description"]:
                con.print(e["description"])
            if e["rows"]:
                rows, notes = reporter._numbered(e["rows"])
                con.print(
                    _table(
                        ["published in", "metric", "published", "reproduced", "Δ", "Δ %", "verdict"],
                        [
                            [
                                r["label"],
                                r["metric"],
                                r["published"],
                                r["reproduced"],
                                r["delta"],
                                r["delta_pct"],
                                r["verdict_text"],
                            ]
                            for r in rows
                        ],  # fmt: skip
                    )
                )
                for i, n in enumerate(notes, 1):
                    con.print(f"[{i}] not comparable: {n}")
            elif e.get("no_published"):
                con.print("No published number.")
            a = e["ablation"]
            if a:
                con.print(f"Ablation of {a['parent']}: changed {a['changed_text']}.")
                if a["metrics"]:
                    con.print(
                        _table(
                            ["metric", "parent", "this run", "Δ", "significance"],
                            [
                                [
                                    m["metric"] + " " + m["direction"],
                                    m["parent"],
                                    m["value"],
                                    m["delta"],
                                    m["significance"],
                                ]
                                for m in a["metrics"]
                            ],
                        )
                    )
            if e["sweep"]:
                for t in e["sweep"]["tables"]:
                    rows = [
                        [c["text"] + (" (best)" if c.get("best") else "") for c in row] for row in t["rows"]
                    ]
                    con.print(_table(t["headers"], rows, f"sweep: {t['title']}"))
            for r in e["runs"]:
                nums = "; ".join(f"{m} {c['text']}" for m, c in r["metrics"].items()) or "–"
                con.print(f"  run {r['label']} ({r['hash']}): {r['status']}; {nums}")
                if r["protocol"] != "–":
                    con.print(f"    protocol: {r['protocol']}")
            con.print()
        if p["to_reproduce"]:
            con.print("To reproduce (not run yet; --all shows their rows):")
            for t in p["to_reproduce"]:
                con.print(f"  - {t['experiment']}: {t['label']}: {t['numbers']}")
        if p["unpublished"]:
            con.print("No published number, not run: " + ", ".join(p["unpublished"]) + ".")
    for g in doc["methods"]:
        con.rule(f"Methods compared: {g['title']}")
        headers, rows = reporter.method_table(g)
        con.print(_table(headers, rows))
        for n in reporter.method_notes(g):
            con.print(n)
        con.print(doc.get("significance_rule", ""))
    return buf.getvalue()
