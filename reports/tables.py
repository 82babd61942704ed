"""Table helpers shared by the report's renderers (reports.render, reports.terminal)."""

from __future__ import annotations

import math
from typing import Any


def fmt_num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _numbered(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with their verdict's reasons as footnotes [1], [2], ..."""
    notes: list[str] = []
    out = []
    for r in rows:
        r = dict(r)
        if r["reasons"]:
            notes.append("; ".join(r["reasons"]))
            r["verdict_text"] = f"{r['verdict']} [{len(notes)}]"
        else:
            r["verdict_text"] = r["verdict"]
        out.append(r)
    return out, notes


def method_table(g: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a method comparison: a row per method; a metric's floor (the same
    for every row: the domain classifier's) in its header."""
    headers = ["method", "experiment"]
    for m in g["metrics"]:
        floors = {_floor_text(r, m) for r in g["rows"] if m in r["floors"]}
        headers.append(
            f"{m} {g['directions'][m]}" + (f" (floor {' / '.join(sorted(floors))})" if floors else "")
        )
    headers += ["wall s", "NFE/sample", "seeds"]
    rows = []
    for r in g["rows"]:
        row = [r["method"], r["experiment"]] + [r["metrics"][m]["text"] for m in g["metrics"]]
        row += [fmt_num(r["seconds"], 3), str(r["nfe"] if r["nfe"] is not None else "–"), str(r["seeds"])]
        rows.append(row)
    return headers, rows


def _floor_text(row: dict[str, Any], m: str) -> str:
    """A floor: its value, or mean ± sd over its draws of real images."""
    d = (row.get("floor_draws") or {}).get(m)
    text = fmt_num(row["floors"][m])
    return text + (f" ± {fmt_num(d['sd'], 3)}, {d['draws']} draws" if d else "")


def method_notes(g: dict[str, Any]) -> list[str]:
    """Each method against the first row: the differences, and the test of each (p-value, n)."""
    base = g["rows"][0]
    out = []
    for r in g["rows"][1:]:
        parts = []
        for m in g["metrics"]:
            a, b = base["metrics"][m]["mean"], r["metrics"][m]["mean"]
            d = f"Δ {b - a:+.4g}" if a is not None and b is not None else "Δ –"
            parts.append(f"{m} {d}: {r['significance'][m]}")
        recipe = ", ".join(f"{k} {a} → {b}" for k, a, b in r.get("recipe", []))
        also = f" (also its training recipe: {recipe})" if recipe else ""
        out.append(f"{r['method']} vs {base['method']}{also}: " + "; ".join(parts))
    return out
