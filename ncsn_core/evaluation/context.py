"""What a metric backend receives besides its metric calls and the samples (one object, so
every backend has the same short signature: ``compute(calls, samples, ctx) -> {key: value}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs


@attrs.define
class EvalContext:
    data: Any  # the experiment's DataSource (reference splits, labels, a toy density)
    settings: dict[str, Any]  # the evaluate block's parameters (+ the sample stage's, for inpainting)
    run_key: str  # the evaluation's hash, recorded in the protocol
    cache_dir: Path  # where reference features and domain classifiers are cached
    device: Any  # where feature extraction runs
    protocol: dict[str, Any]  # filled in by the backends: what was computed, how, against what

    def unpack(self) -> tuple[Any, dict[str, Any], str, Path, Any, dict[str, Any]]:
        return self.data, self.settings, self.run_key, self.cache_dir, self.device, self.protocol
