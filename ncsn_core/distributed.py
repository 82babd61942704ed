"""Process groups and rank helpers for data-parallel runs (docs/scale.md).

A run with more than one process is started torchrun-style (:mod:`ncsn_core.launch`, or
``torchrun`` itself): every process finds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in its environment. :func:`init` joins the group (NCCL on
GPUs, gloo on CPUs); without those variables everything here is the single-process identity,
so a one-process run never touches :mod:`torch.distributed`.

The random-number scheme that makes results independent of the process count:

* training: every rank draws the GLOBAL batch's data order, augmentation, noise levels and
  noise from identically seeded generators and keeps its slice (:func:`part`), so the streams
  (and so the checkpoints) are the same for every world size and a run resumes on any count;
* sampling: batch ``k`` of a stage draws from its own generator seeded by (seed, k)
  (:func:`batch_seed`), and batches go to ranks round-robin (:func:`my_batches`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any

import torch

from ncsn_core.errors import RunError, UserError


class DistributedInitError(RunError):
    """Joining the process group failed (names the rank, the backend and the address)."""


class BatchNotDivisible(UserError):
    """The global batch size is not a multiple of the number of processes."""


_STATE: dict[str, Any] = {"world": 1, "rank": 0, "local_rank": 0, "backend": None}


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def world() -> int:
    return int(_STATE["world"])


def rank() -> int:
    return int(_STATE["rank"])


def local_rank() -> int:
    return int(_STATE["local_rank"])


def backend() -> str | None:
    return _STATE["backend"]


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return world() > 1


def init(device: torch.device | None = None) -> torch.device | None:
    """Join the process group described by the environment (once); returns this rank's device
    (``cuda:LOCAL_RANK`` for GPU runs) or ``device`` unchanged for one process."""
    n = env_world()
    if n <= 1 or _STATE["backend"] is not None:
        if _STATE["backend"] is not None and device is not None and device.type == "cuda":
            return torch.device("cuda", local_rank())
        return device
    r = int(os.environ.get("RANK", "0"))
    lr = int(os.environ.get("LOCAL_RANK", str(r)))
    use_cuda = device is not None and device.type == "cuda"
    be = "nccl" if use_cuda else "gloo"
    addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    # Long: other ranks wait in a barrier while rank 0 waits for a stage lock or evaluates.
    timeout = datetime.timedelta(seconds=float(os.environ.get("REPRO_DIST_TIMEOUT", str(6 * 3600))))
    try:
        if use_cuda:
            torch.cuda.set_device(lr)
        torch.distributed.init_process_group(backend=be, rank=r, world_size=n, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - every failure becomes one message naming the rank
        raise DistributedInitError(
            f"rank {r} of {n} could not join the {be} process group at {addr}: {e}. "
            f"Check that MASTER_ADDR/MASTER_PORT are reachable from every node and the port is free"
            + ("; for NCCL, that every rank sees its GPU (CUDA_VISIBLE_DEVICES)" if use_cuda else "")
        ) from None
    _STATE.update(world=n, rank=r, local_rank=lr, backend=be)
    return torch.device("cuda", lr) if use_cuda else device


def shutdown() -> None:
    if _STATE["backend"] is not None and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _STATE.update(world=1, rank=0, local_rank=0, backend=None)


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def per_rank_batch(global_batch: int, what: str = "train.batch_size") -> int:
    """The per-rank batch; an error naming the sizes that would work when not divisible."""
    n = world()
    if global_batch % n:
        lo = global_batch - global_batch % n
        hi = lo + n
        counts = [k for k in range(1, min(global_batch, 64) + 1) if global_batch % k == 0]
        raise BatchNotDivisible(
            f"{what} = {global_batch} cannot be split over {n} processes: use a batch size that is a "
            f"multiple of {n} (e.g. {lo or hi} or {hi}), or a process count dividing {global_batch} "
            f"({', '.join(map(str, counts))})"
        )
    return global_batch // n


def part(global_batch: int) -> slice | None:
    """This rank's slice of a global batch (None for one process: the whole batch)."""
    if not active():
        return None
    b = per_rank_batch(global_batch)
    return slice(rank() * b, (rank() + 1) * b)


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors over ranks in place, in one flattened buffer (DDP's gradient sum / N)."""
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= world()
    off = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[off : off + n].view_as(t))
        off += n


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    if not active():
        return
    for t in tensors:
        torch.distributed.all_reduce(t)


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows [b, ...] of every rank concatenated in rank order, detached (the identity for
    one process). With each rank holding its slice of the global batch (:func:`part`), the
    result is the global batch's rows in the one-process order. Every rank must call it, with
    the same shape (the per-rank batch is the same on every rank)."""
    rows = rows.detach()
    if not active():
        return rows
    rows = rows.contiguous()
    out = [torch.empty_like(rows) for _ in range(world())]
    torch.distributed.all_gather(out, rows)
    return torch.cat(out, 0)


def batch_seed(seed: int, offset: int, k: int) -> int:
    """The sampling generator's seed for batch ``k``: batch 0 keeps the single-generator seed
    of one-batch stages (``seed·104729 + offset``); later batches a hash of (seed, offset, k)."""
    base = seed * 104729 + offset
    if k == 0:
        return base
    h = hashlib.sha256(f"repro-sample:{seed}:{offset}:{k}".encode()).digest()
    return int.from_bytes(h[:7], "little")


def my_batches(n_batches: int) -> list[int]:
    """The sampling batches of this rank: round-robin over ranks."""
    return list(range(rank(), n_batches, world()))
