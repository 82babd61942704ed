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


# Provenance: which versions of Python and repro, which kernel and commit. They decide no
# number by themselves (a commit may: verify names it when it differs) and come last.
PROVENANCE = ("python", "repro", "platform", "git_commit", "git_dirty")


def _short(value: Any) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= 24 else text[:21] + "…"


def describe_differences(recorded: Mapping[str, Any], now: Mapping[str, Any], limit: int = 6) -> str:
    """The differing fields as ``threads 2 → 1, torch 2.4.0 → 2.5.1`` (recorded → now), those
    that decide numbers first; "" when none differ."""
    fields = env_differences(recorded, now)
    fields.sort(key=lambda k: (k in PROVENANCE, k))
    parts = [f"{k} {_short(recorded.get(k))} → {_short(now.get(k))}" for k in fields[:limit]]
    if len(fields) > limit:
        parts.append(f"and {len(fields) - limit} more")
    return ", ".join(parts)
