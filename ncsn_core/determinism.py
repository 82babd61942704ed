"""Deterministic computation (``repro run --deterministic``; docs/reproducibility.md).

:func:`apply` sets, for the process, everything torch lets a program fix about how a result
is computed: deterministic algorithms (``torch.use_deterministic_algorithms``; an operation
without a deterministic implementation then fails instead of varying), cuDNN's deterministic
convolutions without autotuning, cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, which
CUDA ≥ 10.2 needs for deterministic matrix products) and the intra-op thread count, which
decides how a CPU reduction is split and so its rounding. What was set is recorded by
env.json (:mod:`ncsn_core.stages.env`: ``threads``, ``deterministic_algorithms``,
``cudnn_deterministic``, ``cudnn_benchmark``, ``cublas_workspace_config``).

The default (``deterministic=None``) is the contract's: on for the CPU, where it costs
nothing measurable (docs/reproducibility.md gives the measurement), off for CUDA, where
deterministic kernels can be slower. :func:`applied` sets it for one run and restores the
process's settings after it (a library caller, a test, is left as it was).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ncsn_core.errors import UserError

CUBLAS_WORKSPACE = ":4096:8"  # NVIDIA's documented setting for deterministic cuBLAS (:16:8 saves memory)
_CUBLAS = "CUBLAS_WORKSPACE_CONFIG"


def default(device: torch.device | str) -> bool:
    """Whether a run on ``device`` is deterministic unless told: on the CPU, not on CUDA."""
    return torch.device(device).type == "cpu"


def _state() -> dict[str, Any]:
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas": os.environ.get(_CUBLAS),
    }


def apply(deterministic: bool | None, threads: int | None, device: torch.device | str) -> dict[str, Any]:
    """Set the process for a run on ``device``: deterministic (None: :func:`default`) or not,
    and ``threads`` intra-op threads (None: as it is; the count in use is recorded either way).
    Returns what it set: ``{"deterministic": bool, "threads": int}``."""
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads {threads}: the thread count must be at least 1")
        torch.set_num_threads(int(threads))
    on = default(device) if deterministic is None else bool(deterministic)
    if on:
        if torch.device(device).type == "cuda" and not os.environ.get(_CUBLAS):
            os.environ[_CUBLAS] = CUBLAS_WORKSPACE  # read when cuBLAS creates its handle
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    return {"deterministic": on, "threads": torch.get_num_threads()}


def _restore(s: dict[str, Any]) -> None:
    torch.set_num_threads(s["threads"])
    torch.use_deterministic_algorithms(s["deterministic"], warn_only=s["warn_only"])
    torch.backends.cudnn.deterministic = s["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = s["cudnn_benchmark"]
    if s["cublas"] is None:
        os.environ.pop(_CUBLAS, None)
    else:
        os.environ[_CUBLAS] = s["cublas"]


@contextmanager
def applied(
    deterministic: bool | None, threads: int | None, device: torch.device | str
) -> Iterator[dict[str, Any]]:
    """:func:`apply` for the block, the process's settings restored after it."""
    before = _state()
    try:
        yield apply(deterministic, threads, device)
    finally:
        _restore(before)
