"""Starting runs on chosen devices: torchrun-style worker processes, a local scheduler for
sweeps, and SLURM through submitit (docs/scale.md).

Nothing here enters a run's hash: the device choice and the launcher settings only decide
where the same computation happens.

* :func:`spawn` starts ``nproc`` copies of a ``repro run`` command line, each with the
  environment ``torchrun`` would give it (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
  ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` on a free local port), and
  ``CUDA_VISIBLE_DEVICES`` set to the chosen GPUs (rank r uses ``cuda:r`` among them). When
  one worker fails the others are stopped and its exit status is returned.
* :func:`schedule` runs one command line per run concurrently, one device group per run,
  starting the next run as soon as a group is free; stage dependencies are the stage locks'
  (a sampler ablation waits for the shared training stage, computed once).
* :func:`submit_slurm` submits one job per run (a job array for several), requeued on
  preemption; the job resumes from the last checkpoint as any run does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncsn_core import schema
from ncsn_core.errors import ParamError, RunError, UserError


class DeviceChoiceError(UserError):
    """``--gpus`` / ``--nproc`` / ``--parallel`` ask for devices this machine does not have."""


class LauncherError(UserError):
    """A launcher setting is wrong, or the launcher's package is missing."""


class WorkerFailed(RunError):
    """A worker process of a multi-process run failed."""


# ------------------------------------------------------------------ devices
def user_launcher_config() -> dict[str, Any]:
    """The ``[launcher]`` table of the user's config (``$REPRO_CONFIG`` or
    ``$XDG_CONFIG_HOME/repro/launcher.toml`` or ``~/.config/repro/launcher.toml``), or {}."""
    env = os.environ.get("REPRO_CONFIG")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    path = Path(env) if env else (Path(xdg) if xdg else Path.home() / ".config") / "repro" / "launcher.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib  # Python ≥ 3.11
    except ModuleNotFoundError:
        raise LauncherError(f"{path}: reading a launcher config needs Python ≥ 3.11 (tomllib)") from None
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("launcher", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise LauncherError(f"{path}: cannot read the launcher config: {e}") from None
    if not isinstance(table, dict):
        raise LauncherError(f"{path}: [launcher] must be a table of settings")
    known = {p.name: p for p in schema.LAUNCHER_FIELDS}
    out = {}
    for k, v in table.items():
        if k not in known:
            raise LauncherError(f"{path}: unknown launcher setting '{k}' (known: {', '.join(known)})")
        try:
            out[k] = known[k].type.check(v)
        except ParamError as e:
            raise LauncherError(f"{path}: launcher setting '{k}': {e}") from None
    return out


def settings(given: dict[str, Any], specs: Sequence[Any]) -> dict[str, Any]:
    """Launcher settings for `repro run`: each option given on the command line (not None),
    else the file's ``launcher { }`` block (every run of the file must agree), else the user's
    config, else the schema's defaults. Nothing here enters a hash."""
    blocks = {tuple(s.launcher.params) for s in specs if s.launcher is not None}
    if len(blocks) > 1:
        raise LauncherError(
            "the experiments of this file state different launcher { } blocks; run them one at a time "
            "with -e NAME, or give the settings on the command line"
        )
    in_file = dict(next(iter(blocks))) if blocks else {}
    user = user_launcher_config()
    out = {}
    for p in schema.LAUNCHER_FIELDS:
        v = given.get(p.name)
        if v is None:
            v = in_file.get(p.name, user.get(p.name, p.default))
        else:
            try:
                v = p.type.check(v)
            except ParamError as e:
                raise LauncherError(f"--{p.name.replace('_', '-')}: {e}") from None
        out[p.name] = v
    return out


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA is zero GPUs
        return 0


def parse_gpus(text: str, available: int | None = None) -> list[int]:
    """``--gpus``: ``0,1,2,3`` (these), ``0-7`` (a range), ``8`` (the first 8), ``all``."""
    have = gpu_count() if available is None else available
    t = text.strip().lower()
    try:
        if t == "all":
            ids = list(range(have))
        elif "," in t:
            ids = [int(v) for v in t.split(",") if v.strip()]
        elif "-" in t:
            a, b = (int(v) for v in t.split("-", 1))
            ids = list(range(a, b + 1))
        else:
            ids = list(range(int(t)))
    except ValueError:
        raise DeviceChoiceError(
            f"--gpus {text!r}: write GPU numbers (0,1,2,3), a range (0-7), a count (8) or all"
        ) from None
    if not ids:
        raise DeviceChoiceError(
            f"--gpus {text}: no GPU chosen"
            + ("" if have else " (this machine has no CUDA GPU; use --device cpu)")
        )
    missing = [i for i in ids if i < 0 or i >= have]
    if missing:
        raise DeviceChoiceError(
            f"--gpus {text}: this machine has {have} GPU{'s' if have != 1 else ''}"
            + (f" (0-{have - 1})" if have else "")
            + f"; GPU {', '.join(map(str, missing))} does not exist"
            + ("" if have else "; use --device cpu (with --nproc N for N CPU processes)")
        )
    if len(set(ids)) != len(ids):
        raise DeviceChoiceError(f"--gpus {text}: a GPU is named twice")
    return ids


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(
    rank: int,
    world: int,
    port: int,
    *,
    local_rank: int | None = None,
    local_world: int | None = None,
    addr: str = "127.0.0.1",
    gpus: Sequence[int | str] | None = None,
) -> dict[str, str]:
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank if local_rank is None else local_rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world if local_world is None else local_world),
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return env


def cli_command(args: Sequence[str]) -> list[str]:
    """``repro <args>`` in a fresh interpreter (the workers and the scheduled runs)."""
    return [sys.executable, "-m", "dsl.cli", *map(str, args)]


def _pipe(stream: Any, prefix: str, out: Any) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()
    stream.close()


def spawn(
    args: Sequence[str], nproc: int, gpus: Sequence[int] | None = None, quiet_ranks: bool = True
) -> int:
    """Start ``nproc`` workers of ``repro <args>`` torchrun-style; returns 0 or the first
    failing worker's exit status (the others are stopped then)."""
    port = free_port()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if gpus is not None and visible:  # GPU numbers count within an inherited CUDA_VISIBLE_DEVICES
        gpus = [visible[i] for i in gpus]  # type: ignore[misc] - physical ids (or UUIDs), as given
    procs = []
    for r in range(nproc):
        env = {**os.environ, **worker_env(r, nproc, port, gpus=gpus)}
        procs.append(
            subprocess.Popen(
                cli_command(args),
                env=env,
                stdout=None if r == 0 else subprocess.DEVNULL,
                stderr=None if (r == 0 or not quiet_ranks) else subprocess.PIPE,
                text=True,
            )
        )
    # Other ranks' stderr is kept and shown only when they fail (rank 0 speaks for the group).
    errs: dict[int, list[str]] = {r: [] for r in range(nproc)}
    threads = []
    for r, p in enumerate(procs):
        if p.stderr is not None:
            t = threading.Thread(target=lambda p=p, r=r: errs[r].extend(p.stderr), daemon=True)
            t.start()
            threads.append(t)
    try:
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                r, c = bad[0]
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                for p in procs:
                    p.wait()
                for t in threads:
                    t.join(timeout=2)
                if r != 0 and errs[r]:
                    sys.stderr.write(f"[rank {r}] " + f"[rank {r}] ".join(errs[r][-20:]))
                return int(c)
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.05)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise


# ------------------------------------------------------------------ the local scheduler
def schedule(
    jobs: Sequence[tuple[str, list[str]]],
    slots: Sequence[dict[str, str]],
    out: Any = None,
) -> list[int]:
    """Run ``repro <args>`` for each (label, args) of ``jobs``, at most one per slot at a time
    (a slot is the environment of a device group, e.g. ``{"CUDA_VISIBLE_DEVICES": "3"}``),
    each started as soon as a slot is free; every line a run prints is shown prefixed with
    its label. Returns the exit statuses in job order."""
    out = out or sys.stderr
    lock = threading.Lock()
    pending = list(enumerate(jobs))
    free = list(range(len(slots)))
    running: dict[int, tuple[subprocess.Popen, int, float, threading.Thread]] = {}
    codes: list[int] = [0] * len(jobs)

    class Locked:
        def write(self, s: str) -> None:
            with lock:
                out.write(s)

        def flush(self) -> None:
            with lock:
                out.flush()

    sink = Locked()
    n = len(jobs)
    while pending or running:
        while pending and free:
            i, (label, args) = pending.pop(0)
            slot = free.pop(0)
            env = {**os.environ, **slots[slot]}
            p = subprocess.Popen(
                cli_command(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            where = ", ".join(f"{k}={v}" for k, v in slots[slot].items()) or f"slot {slot}"
            sink.write(f"[{i + 1}/{n}] {label}: started ({where})\n")
            t = threading.Thread(target=_pipe, args=(p.stdout, f"[{i + 1}/{n}] ", sink), daemon=True)
            t.start()
            running[i] = (p, slot, time.time(), t)
        time.sleep(0.05)
        for i in list(running):
            p, slot, t0, t = running[i]
            c = p.poll()
            if c is None:
                continue
            t.join(timeout=5)
            codes[i] = c
            del running[i]
            free.append(slot)
            state = "done" if c == 0 else f"FAILED (exit {c})"
            sink.write(f"[{i + 1}/{n}] {jobs[i][0]}: {state} in {time.time() - t0:.1f}s\n")
    return codes


def device_slots(gpus: Sequence[int] | None, parallel: int, nproc: int) -> list[dict[str, str]]:
    """The device groups of :func:`schedule`: ``nproc`` GPUs each out of ``gpus``, or
    ``parallel`` CPU slots."""
    if gpus:
        if len(gpus) < nproc:
            raise DeviceChoiceError(f"--nproc {nproc} needs {nproc} GPUs per run; --gpus gives {len(gpus)}")
        groups = [gpus[i : i + nproc] for i in range(0, len(gpus) - nproc + 1, nproc)]
        return [{"CUDA_VISIBLE_DEVICES": ",".join(map(str, g))} for g in groups]
    return [{"REPRO_SLOT": str(k)} for k in range(max(1, parallel))]


# ------------------------------------------------------------------ SLURM (submitit)
SUBMITIT_MISSING = (
    "--launcher slurm needs the submitit package: pip install submitit (or pip install 'repro-ncsn[slurm]')"
)


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise LauncherError(SUBMITIT_MISSING) from None
    return submitit


def _parse_time(text: str) -> int:
    """``24:00:00``, ``1-00:00:00``, ``90`` (minutes) → minutes."""
    t = str(text).strip()
    try:
        days = 0
        if "-" in t:
            d, t = t.split("-", 1)
            days = int(d)
        parts = [int(v) for v in t.split(":")]
    except ValueError:
        raise LauncherError(f"--time {text!r}: write HH:MM:SS, D-HH:MM:SS or minutes") from None
    if len(parts) == 1:
        minutes = parts[0]
    elif len(parts) == 2:
        minutes = parts[0] * 60 + parts[1]
    else:
        minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
    return days * 24 * 60 + minutes


class SlurmRun:
    """One run as a submitit job: on each node, one task per GPU runs ``repro <args>`` with
    the torchrun environment of its rank (the first node's host as ``MASTER_ADDR``). On
    preemption or timeout submitit calls :meth:`checkpoint`, which requeues the same job: the
    run resumes from its last checkpoint like any ``repro run``."""

    def __init__(self, args: Sequence[str], port: int | None = None) -> None:
        self.args = list(args)
        self.port = port

    def __call__(self) -> int:
        env = dict(os.environ)
        n = int(os.environ.get("SLURM_NTASKS", "1") or 1)
        if n > 1:
            submitit = _submitit()
            job = submitit.JobEnvironment()
            nodes = os.environ.get("SLURM_JOB_NODELIST", "")
            host = _first_host(nodes) or socket.gethostname()
            port = self.port or 29500 + int(os.environ.get("SLURM_JOB_ID", "0") or 0) % 20000
            env.update(
                worker_env(
                    job.global_rank,
                    job.num_tasks,
                    port,
                    local_rank=job.local_rank,
                    local_world=max(1, job.num_tasks // max(1, job.num_nodes)),
                    addr=host,
                )
            )
        code = subprocess.run(cli_command(self.args), env=env).returncode
        if code:
            raise WorkerFailed(f"repro {' '.join(self.args)} exited with status {code}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return _submitit().helpers.DelayedSubmission(SlurmRun(self.args, self.port))


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[03-05,07]`` → ``node03``)."""
    if not nodelist:
        return ""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10
        ).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head = nodelist.split(",")[0]
    if "[" in head:
        base, rng = head.split("[", 1)
        return base + rng.rstrip("]").split("-")[0].split(",")[0]
    return head


def submit_slurm(jobs: Sequence[tuple[str, list[str]]], settings: dict[str, Any], folder: Path) -> list[Any]:
    """Submit one job per run (a job array when several); returns the submitit jobs.
    ``settings``: partition, nodes, gpus_per_node, time, cluster (``slurm``; ``debug`` or
    ``local`` run the jobs here, for tests), and any ``slurm_*`` extra."""
    submitit = _submitit()
    cluster = settings.get("cluster") or None
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    nodes = int(settings.get("nodes") or 1)
    gpn = int(settings.get("gpus_per_node") or 0)
    params: dict[str, Any] = {
        "name": settings.get("name", "repro"),
        "timeout_min": _parse_time(settings.get("time") or "24:00:00"),
        "nodes": nodes,
        "tasks_per_node": max(1, gpn),
    }
    if gpn:
        params["gpus_per_node"] = gpn
    if settings.get("partition"):
        params["slurm_partition"] = settings["partition"]
    if cluster in (None, "slurm"):
        params["slurm_array_parallelism"] = int(settings.get("array_parallelism") or len(jobs))
    for k, v in settings.items():
        if k.startswith("slurm_"):
            params[k] = v
    try:
        ex.update_parameters(**params)
    except (ValueError, TypeError) as e:
        raise LauncherError(f"launcher settings rejected by submitit: {e}") from None
    with ex.batch():
        out = [ex.submit(SlurmRun(args)) for _, args in jobs]
    return out
