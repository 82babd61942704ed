"""`repro report`'s public names in one place: reproduced numbers beside the published ones,
from files on disk only.

The report is made in the order its data goes through: :mod:`reports.read` (run folders →
records), :mod:`reports.judge` (statistics, protocol matching, verdicts, floors),
:mod:`reports.shape` (the document: comparison rows, sweep pivots, ablations, method groups),
:mod:`reports.figures` (PNGs) and :mod:`reports.render` (Markdown, HTML, LaTeX, JSON, terminal
text). This module re-exports the names other code imports from ``reports.reporter``. Nothing
here runs a model.
"""

from __future__ import annotations

from reports.figures import MAX_CURVES, figures, loss_curve_b64, selection_plot_b64, sweep_plot_b64
from reports.judge import (
    CHECKPOINT_NOTE,
    DEFAULT_TOLERANCE,
    FID_LIKE,
    INCEPTION_METRICS,
    SAMPLES_NOTE,
    floor_of,
    fmt_stat,
    protocol_reasons,
    protocol_text,
    significance,
    verdict,
)
from reports.read import (
    STATES,
    RunRecord,
    SeedResult,
    add_expected,
    collect,
    read_seed,
    read_selection,
)
from reports.render import (
    COMPARISON_COLUMNS,
    FORMATS,
    TEMPLATES,
    latex_escape,
    md_ablation,
    md_comparison,
    md_methods,
    md_runs,
    md_selection,
    md_sweep,
    render,
    report,
)
from reports.shape import (
    build,
    comparison_rows,
    method_groups,
    selection_doc,
    sweep_table,
)
from reports.tables import fmt_num

__all__ = [
    "CHECKPOINT_NOTE",
    "COMPARISON_COLUMNS",
    "DEFAULT_TOLERANCE",
    "FID_LIKE",
    "FORMATS",
    "INCEPTION_METRICS",
    "MAX_CURVES",
    "SAMPLES_NOTE",
    "STATES",
    "TEMPLATES",
    "RunRecord",
    "SeedResult",
    "add_expected",
    "build",
    "collect",
    "comparison_rows",
    "figures",
    "floor_of",
    "fmt_num",
    "fmt_stat",
    "latex_escape",
    "loss_curve_b64",
    "md_ablation",
    "md_comparison",
    "md_methods",
    "md_runs",
    "md_selection",
    "md_sweep",
    "method_groups",
    "protocol_reasons",
    "protocol_text",
    "read_seed",
    "read_selection",
    "render",
    "report",
    "selection_doc",
    "selection_plot_b64",
    "significance",
    "sweep_plot_b64",
    "sweep_table",
    "verdict",
]
