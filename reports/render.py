"""Render: the report's document as Markdown (tabulate), one self-contained HTML file, LaTeX
(booktabs) through the Jinja templates, JSON or terminal text; and `report`, the whole path
from a runs folder to the written file. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncsn_core import io as atomic
from reports.figures import _png_b64, figures
from reports.judge import DEFAULT_TOLERANCE
from reports.read import RunRecord, add_expected, collect
from reports.shape import RAN_COLUMNS, build, ran_cells
from reports.tables import _numbered, method_notes, method_table

if TYPE_CHECKING:  # jinja2, tabulate and rich are imported where used: `repro` starts faster
    import jinja2

TEMPLATES = Path(__file__).with_name("templates")
FORMATS = ("md", "html", "tex", "json", "text")


# ----------------------------------------------------------------------------- rendering
_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
    "σ": r"$\sigma$",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "→": r"$\to$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "₁": r"$_1$",
    "≤": r"$\le$",
    "★": r"$\star$",
}


def latex_escape(s: Any) -> str:
    return "".join(_TEX.get(c, c if ord(c) < 128 else "?") for c in str(s))


def _verdict_class(v: str) -> str:
    if v == "off":
        return "off"
    if v.startswith("within"):
        return "ok"
    if v == "not comparable":
        return "nc"
    return "notrun"


COMPARISON_COLUMNS = [
    ("label", "published in"),
    ("metric", "metric"),
    ("published", "published"),
    ("reproduced", "reproduced"),
    ("delta", "Δ"),
    ("delta_pct", "Δ %"),
    ("verdict", "verdict"),
    ("seeds", "seeds"),
    ("protocol", "protocol (samples · reference · checkpoint · iterations · weights)"),
]


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(
        [[_md_cell(c) for c in r] for r in rows],
        headers=[_md_cell(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def md_comparison(rows: list[dict[str, Any]]) -> str:
    rows, notes = _numbered(rows)
    cols = [(k if k != "verdict" else "verdict_text", h) for k, h in COMPARISON_COLUMNS]
    text = _md([[r[k] for k, _ in cols] for r in rows], [h for _, h in cols])
    if notes:
        text += "\n\n" + "\n".join(f"[{i}] not comparable: {n}" for i, n in enumerate(notes, 1))
    return text


def md_sweep(t: dict[str, Any]) -> str:
    rows = [[c["text"] + (" **(best)**" if c.get("best") else "") for c in row] for row in t["rows"]]
    return _md(rows, t["headers"])


def md_ablation(a: dict[str, Any]) -> str:
    return _md(
        [
            [m["metric"] + " " + m["direction"], m["parent"], m["value"], m["delta"], m["significance"]]
            for m in a["metrics"]
        ],
        ["metric", f"parent: {a['parent']}", "this run", "Δ", "significance"],
    )


def md_methods(g: dict[str, Any]) -> str:
    headers, rows = method_table(g)
    return _md(rows, headers)


def md_selection(sel: dict[str, Any]) -> str:
    rows = [
        [
            f"{r['step']:,}",
            ("**" + r["text"] + "** (chosen)") if r["best"] else r["text"],
            r["samples"],
            r["seconds"],
        ]
        for r in sel["rows"]
    ]
    return _md(rows, ["step", f"{sel['metric']} ({sel['direction']} is better)", "samples", "seconds"])


def md_ran(f: dict[str, Any]) -> str:
    """One file's runs (the report's first table): a row per run and metric."""
    return _md(ran_cells(f["rows"]), [h for _, h in RAN_COLUMNS])


def md_runs(runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        nums = "; ".join(f"{m} {c['text']}" for m, c in r["metrics"].items()) or "–"
        rows.append(
            [r["label"], r["hash"], r["seed_status"] + ("; " + "; ".join(r["problems"]) if r["problems"] else ""),
             " / ".join(str(i) for i in r["iterations"]) or "–", nums]
        )  # fmt: skip
    return _md(rows, ["run", "hash", "status", "iterations", "numbers (mean ± std over seeds)"])


def _map_rows(rows: list[dict[str, Any]], keys: list[str]) -> list[list[Any]]:
    return [[r[k] for k in keys] for r in rows]


def _sweep_cells(rows: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[c["text"] + (" ★" if c.get("best") else "") for c in row] for row in rows]


def _selection_cells(sel: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{r['step']:,}",
            r["text"] + (" (chosen)" if r["best"] else ""),
            str(r["samples"]),
            str(r["seconds"]),
        ]
        for r in sel["rows"]
    ]


def _runs_cells(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["label"],
            r["hash"][:12],
            r["seed_status"] + ("; " + "; ".join(r["problems"]) if r["problems"] else ""),
            " / ".join(str(i) for i in r["iterations"]) or "–",
            "; ".join(f"{m} {c['text']}" for m, c in r["metrics"].items()) or "–",
        ]
        for r in runs
    ]


def _env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tex"] = latex_escape
    env.filters["comparison"] = md_comparison
    env.filters["sweep"] = md_sweep
    env.filters["ablation"] = md_ablation
    env.filters["methods"] = md_methods
    env.filters["runs"] = md_runs
    env.filters["ran"] = md_ran
    env.filters["ran_cells"] = ran_cells
    env.filters["map_rows"] = _map_rows
    env.filters["sweep_cells"] = _sweep_cells
    env.filters["selection_cells"] = _selection_cells
    env.filters["runs_cells"] = _runs_cells
    env.filters["enumerate_notes"] = lambda ns: [f"[{i}] not comparable: {n}" for i, n in enumerate(ns, 1)]
    env.filters["selection"] = md_selection
    env.filters["numbered"] = _numbered
    env.filters["method_table"] = method_table
    env.filters["method_notes"] = method_notes
    env.filters["verdict_class"] = _verdict_class
    return env


def render(
    records: list[RunRecord],
    fmt: str = "md",
    tolerance: float = DEFAULT_TOLERANCE,
    runs_dir: str = "",
    show_all: bool = False,
    width: int = 100,
) -> str:
    """The report as Markdown (``md``), self-contained HTML (``html``), LaTeX (``tex``), JSON
    (``json``, for tools) or terminal text (``text``, tables wrapped to ``width`` columns)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    doc = build(records, tolerance, runs_dir, show_all)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "text":
        from reports.terminal import render_text

        return render_text(doc, width)
    ctx = {
        **doc,
        "columns": COMPARISON_COLUMNS,
        "ran_columns": RAN_COLUMNS,
        "tolerance_pct": f"{tolerance:.0%}",
        "all_runs": [r for p in doc["papers"] for e in p["experiments"] for r in e["runs"] if r["path"]],
    }
    if fmt == "html":
        ctx["figures"] = figures(records)
        for g in ctx["methods"]:
            for r in g["rows"]:
                r["grid_b64"] = _png_b64(r["grid"])
    if fmt == "md":
        ctx["samples"] = [(rec.label, str(s.grid)) for rec in records for s in rec.seeds[:1] if s.grid]
    return _env().get_template(f"report.{fmt}.j2").render(**ctx)


def report(
    runs_dir: str | Path = "runs",
    fmt: str = "md",
    out: str | Path | None = None,
    expected: list[dict[str, Any]] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    show_all: bool = False,
    width: int = 100,
) -> str:
    """Collect ``runs_dir``, add the never-run ``expected`` specs, render ``fmt``; written
    atomically to ``out`` when given. Returns the text."""
    records = add_expected(collect(runs_dir), expected or [])
    text = render(records, fmt, tolerance, runs_dir=str(runs_dir), show_all=show_all, width=width)
    if out is not None:
        atomic.write_text(Path(out), text)
    return text
