"""What env.json records and how two records compare (no torch: the report may compare runs).

Every run writes ``env.json`` in its seed folder, and every stage it computes writes one in its
stage folder (:mod:`ncsn_core.stages.env` gathers it): the versions, the hardware and the
settings that decide whether two computations are bit-identical (thread counts, BLAS, oneDNN,
CUDA/cuDNN, the determinism flags). None of it enters a hash. :func:`env_differences` names
the fields in which two records differ, leaving out those that say when and where only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# When and where, not how: the time of the run and which physical devices (CUDA_VISIBLE_DEVICES)
# it ran on. The device model, count and every version and setting are compared.
WHEN_AND_WHERE = frozenset({"time", "devices"})


def env_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The fields of two env records (env.json) that differ, sorted; a field only one has counts.
    ``time`` and ``devices`` are left out (:data:`WHEN_AND_WHERE`)."""
    keys = (set(a) | set(b)) - WHEN_AND_WHERE
    return sorted(k for k in keys if k not in a or k not in b or a[k] != b[k])
