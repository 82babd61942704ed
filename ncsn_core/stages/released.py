"""The train stage's other source: a released checkpoint (``train.from = released(...)``, issue 17).

The file is read, checked against the experiment's network and written as the stage's repro
checkpoint by :func:`ncsn_core.released.import_into` (rank 0 alone: the train stage says so);
its results.json says where it came from (path, SHA-256, format).
"""

from __future__ import annotations

from pathlib import Path

from ncsn_core import released
from ncsn_core.stages.base import Context, Outputs


def compute(ctx: Context, folder: Path) -> Outputs:
    released.import_into(ctx, folder)  # the checkpoint and results.json, each written atomically
    return Outputs()
