"""The run's stage kinds, one module each, by their name in the schema (:data:`ncsn_core.schema.STAGES`).

A stage kind implements :class:`~ncsn_core.stages.base.Stage`; the conductor
(:mod:`ncsn_core.runner`) walks them in the schema's order. A new kind is one module here, its
entry below and its name in the schema.
"""

from __future__ import annotations

from ncsn_core.stages import evaluate, interpolate, sample, select, train
from ncsn_core.stages.base import Stage

BY_NAME: dict[str, Stage] = {m.STAGE.name: m.STAGE for m in (train, select, sample, evaluate, interpolate)}
