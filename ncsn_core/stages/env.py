"""The environment a stage is computed in, as env.json records it (:mod:`ncsn_core.environment`).

Versions (Python, torch, repro, the git commit), the machine (platform, CPU model, the GPU
model when one is used) and everything that decides bit-identity as torch reports it: intra-
and inter-op thread counts and the parallel backend, the CPU kernels' capability, BLAS/LAPACK,
MKL and oneDNN (MKL-DNN) versions, the CUDA and cuDNN versions and flags, cuBLAS's workspace
setting, deterministic algorithms, the float32 matmul precision; and the process group (world size, backend, devices).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ncsn_core
from ncsn_core import distributed as dist


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def code_version() -> dict[str, Any]:
    """The checkout's commit and whether it had changes, read once per process: the code this
    process imported when it started, not what HEAD is when a later stage ends (a commit made
    while a long sweep runs would otherwise be recorded for stages it did not run)."""
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain"))}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _config_item(config: str, pattern: str) -> str | None:
    m = re.search(pattern, config)
    return m.group(1).strip() if m else None


def cpu_math() -> dict[str, Any]:
    """The CPU math libraries and settings torch was built with and runs with."""
    config = torch.__config__.show()
    parallel = torch.__config__.parallel_info()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "parallel_backend": _config_item(parallel, r"ATen parallel backend:\s*(.+)"),
        "cpu_capability": capability or _config_item(config, r"CPU capability usage:\s*(.+)"),
        "blas": _config_item(config, r"BLAS_INFO=([^,\s]+)"),
        "lapack": _config_item(config, r"LAPACK_INFO=([^,\s]+)"),
        "mkl": (
            _config_item(config, r"Math Kernel Library Version ([^\n]+)")
            if torch.backends.mkl.is_available()
            else None
        ),
        "onednn": (
            _config_item(config, r"(?:MKL-DNN|oneDNN) (v[^\n]+)")
            if torch.backends.mkldnn.is_available()
            else None
        ),
        "onednn_enabled": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def cuda_math(device: torch.device) -> dict[str, Any]:
    """CUDA, cuDNN and the GPU, for a run on a CUDA device (empty otherwise)."""
    if device.type != "cuda":
        return {}
    cudnn = torch.backends.cudnn
    return {
        "gpu": torch.cuda.get_device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        # cuBLAS's workspace (":4096:8" for deterministic products; ncsn_core.determinism)
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def devices(device: torch.device) -> list[str]:
    """Every rank's device: ``cuda:<physical index>`` (CUDA_VISIBLE_DEVICES mapped) or cpu."""
    n = dist.world()
    if device.type != "cuda":
        return [str(device)] * n
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    first = (device.index or 0) if n == 1 else 0
    idx = [first + r for r in range(n)]
    return [f"cuda:{visible[i] if i < len(visible) else i}" for i in idx]


def environment(device: torch.device) -> dict[str, Any]:
    """env.json: the hardware and software a stage ran on (never part of a hash; docs/scale.md)."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "repro": ncsn_core.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "device": str(device),
        "world_size": dist.world(),
        "backend": dist.backend(),
        "devices": devices(device),
        **cpu_math(),
        **cuda_math(device),
        **code_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
