"""The conductor: run a RunSpec's stages (train → select → sample → evaluate), each by its hash.

Layout (:mod:`ncsn_core.layout`, docs/architecture.md): ``runs/<experiment>/<run-hash>/
seed-<k>/{train, select-<h>, sample-<h>, eval-<h>}``. For each stage kind of the schema, in
order (one module each in :mod:`ncsn_core.stages`): hold its lock → find it by its hash (this
run's folder, or anywhere under the runs folder: a sampler ablation never retrains, an
evaluation change never resamples) → reuse it, or open its folder, compute it and write its
outputs and env.json atomically (:mod:`ncsn_core.io`) → DONE. Rank 0 writes; every rank
computes the stages that are data-parallel. Every path written into the run folder is
relative to it, so a runs folder can be moved whole.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ncsn_core.layout as layout
from ncsn_core import determinism, evaluation, progress, released_files, schema
from ncsn_core import distributed as dist
from ncsn_core import io as atomic
from ncsn_core.errors import UserError
from ncsn_core.evaluation.inpainting import with_sample_stage
from ncsn_core.io import WriteError
from ncsn_core.lock import stage_lock
from ncsn_core.spec import RunSpec
from ncsn_core.stages import BY_NAME
from ncsn_core.stages.base import Context, Done, Stage, build, mark_done, mkdir, open_stage, pick_device
from ncsn_core.stages.base import write_json as _write_json
from ncsn_core.stages.base import write_output as _write_output
from ncsn_core.stages.env import environment

__all__ = ["Run", "RunsFolderNotWritable", "build", "pick_device", "run_spec"]

# One module per stage kind of the schema, in the schema's order.
STAGES: tuple[Stage, ...] = tuple(BY_NAME[name] for name in schema.STAGES)
_UNTIL = {"train": "trained", "select": "selected", "sample": "sampled"}  # --until's summary


class RunsFolderNotWritable(UserError):
    """The runs folder (``--runs``) cannot be written at all (read-only, no permission)."""


class Run(Context):
    """One run as the conductor walks it: its context plus meta files, locks and stages."""

    def write_meta(self) -> None:
        if not dist.is_main():
            return
        mkdir(self.seed_dir)
        _write_json(self.dir / layout.SPEC, self.spec.canonical() | {"seed": None})
        if self.source_text and not (self.dir / layout.SOURCE).exists():
            atomic.write_text(self.dir / layout.SOURCE, self.source_text)
        if self.overrides and not (self.dir / layout.OVERRIDES).exists():  # for `repro ls`'s stale check
            _write_json(self.dir / layout.OVERRIDES, list(self.overrides))
        _write_json(self.seed_dir / layout.ENV, environment(self.device))

    @contextmanager
    def locked(self, stage: Stage, done: Done) -> Iterator[None]:
        """Hold the lock of the stage folder while computing it (:mod:`ncsn_core.lock`): a
        concurrent run of the same stage waits, then reuses it."""
        if not stage.applies(self, done):
            yield
            return
        folder = stage.folder(self)
        if not dist.active():
            with stage_lock(folder, wait=self.wait, log=self.log), stage.extra_lock(self):
                yield
            return
        # Data-parallel: rank 0 holds the lock for the group; every rank starts the stage
        # after it has it and leaves it after every rank is done (files written by rank 0).
        if dist.is_main():
            with stage_lock(folder, wait=self.wait, log=self.log), stage.extra_lock(self):
                dist.barrier()
                yield
                dist.barrier()
        else:
            dist.barrier()
            yield
            dist.barrier()

    def conduct(self, stage: Stage | str, done: Done | None = None) -> Path | None:
        """One stage (the caller holds its lock): None if it does not apply; else its complete
        folder, this run's or an equal one found by its hash, or computed now."""
        stage = BY_NAME[stage] if isinstance(stage, str) else stage
        done = {} if done is None else done
        if not stage.applies(self, done):
            return None
        h = stage.hash(self)
        own = stage.folder(self)
        found = self.find_stage(stage.kind, h, stage.everywhere)
        if found is not None:
            if found != own:  # say, once, which stage of another run is reused
                self.log(
                    f"{stage.kind}: reusing {self.shown(found)} (same {stage.kind} hash {h}, seed {self.spec.seed})"
                )
            return found
        main = dist.is_main()
        if main:
            open_stage(own, stage.kind, h, stage.inputs(self, done))
        dist.barrier()
        out = stage.compute(self, own, done) if main or stage.every_rank(self) else None
        if main:
            assert out is not None, f"the {stage.name} stage gave rank 0 nothing to write"
            for name, value in out.files.items():
                _write_output(own / name, value)
            _write_json(own / layout.ENV, environment(self.device))  # what computed it
            mark_done(own)
            for folder in out.cleanup:
                shutil.rmtree(folder, ignore_errors=True)
            if out.note:
                self.log(out.note)
        return own


def _preflight(spec: RunSpec, until: str) -> None:
    """Fail before any training or sampling when, e.g., the Inception weights of the
    evaluation or of the selection's metric are missing."""
    if spec.evaluate is not None and until == "evaluate":
        evaluation.preflight(spec.evaluate.get("metrics"), with_sample_stage(spec.evaluate.kwargs(), spec))
    if spec.select is not None and spec.trains and until != "train":
        e = spec.evaluate.kwargs() if spec.evaluate is not None else {}
        evaluation.preflight((spec.select.get("metric"),), {k: v for k, v in e.items() if k != "samples"})


def run_spec(
    spec: RunSpec,
    *,
    runs_dir: str | Path = "runs",
    device: str | None = None,
    until: str = "evaluate",
    source_text: str = "",
    quiet: bool = False,
    wait: bool = True,
    overrides: tuple[str, ...] = (),
    deterministic: bool | None = None,
    threads: int | None = None,
) -> str:
    """Execute one run; returns a one-line summary. Raises ReproError subclasses for
    problems the user can fix. Each stage is computed under its lock; ``wait=False`` stops
    with :class:`~ncsn_core.lock.StageBusy` instead of waiting for another process's.
    ``deterministic`` (None: on for the CPU, off for CUDA) and ``threads`` (None: as the
    process has it) are set for the run (:mod:`ncsn_core.determinism`) and recorded in env.json."""
    if spec.weights() is not None:  # a missing released checkpoint stops the run before anything
        released_files.preflight(spec)
    r = Run(spec, Path(runs_dir), device, source_text, quiet, wait, overrides)
    _preflight(spec, until)
    with determinism.applied(deterministic, threads, r.device):
        return _conduct(r, runs_dir, until)


def _conduct(r: Run, runs_dir: str | Path, until: str) -> str:
    """The run's stages in the schema's order (run_spec's body, under its determinism settings)."""
    try:
        r.write_meta()
    except WriteError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise RunsFolderNotWritable(
                f"the runs folder {runs_dir} cannot be written ({e}); make it writable or choose "
                f"another with --runs"
            ) from None
        raise
    done: Done = {}
    with progress.reporting(r.log):  # sampling's and evaluation's progress lines (quiet: none)
        for stage in STAGES:
            with r.locked(stage, done):
                done[stage.name] = r.conduct(stage, done)
            if until == stage.name and until in _UNTIL:
                return f"{_UNTIL[until]} → {done[stage.name]}"
    eval_dir = done.get("evaluate")
    if eval_dir is not None:
        m = json.loads((eval_dir / layout.METRICS).read_text())
        nums = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
        return f"{nums} → {eval_dir}"
    return f"done → {done.get('sample') or done.get('train') or r.seed_dir}"
