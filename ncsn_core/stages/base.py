"""The stage protocol and the context every stage computes in, with the small file helpers.

A stage kind (:class:`Stage`) says whether it applies to a run, its hash, its folder, what its
stage.json records of its inputs, and how it is computed: ``compute(ctx, folder, done)`` returns
the files to write (:class:`Outputs`). The conductor (:mod:`ncsn_core.runner`) does the rest —
finds the stage by its hash (its own folder, or anywhere under the runs folder), holds its lock,
opens its folder, writes the outputs atomically on rank 0 and marks it done — so a stage never
decides which rank writes. :class:`Context` is the run as the stages see it: the spec, the
folders, the device and the lazily built data, noise schedule and network.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

import ncsn_core.layout as layout
from ncsn_core import distributed as dist
from ncsn_core import io as atomic
from ncsn_core import registry
from ncsn_core.errors import ReproError, RunError
from ncsn_core.io import WriteError
from ncsn_core.spec import ComponentSpec, RunSpec

Done = dict[str, "Path | None"]  # the folders of the stages conducted so far, by schema name


def pick_device(device: str | None) -> torch.device:
    if device:
        try:
            d = torch.device(device)
        except RuntimeError as e:
            raise ReproError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1): {e}") from None
        if d.type == "cuda" and not torch.cuda.is_available():
            raise ReproError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return d
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build(kind: str, spec: ComponentSpec, **extra: Any) -> Any:
    return registry.lookup(kind, spec.name).build(**spec.kwargs(), **extra)


# ---- files
def mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(folder, e) from None


def write_json(path: Path, obj: Any) -> None:
    atomic.write_json(path, obj, default=str)


def save_tensors(path: Path, obj: Any) -> None:
    atomic.write_with(path, lambda f: torch.save(obj, f))


def write_output(path: Path, value: Any) -> None:
    """One output file: a callable writes it itself (``value(path)``), a ``.json`` file is the
    value as JSON, anything else is tensors (``torch.save``). Every write is atomic."""
    if callable(value):
        value(path)
    elif path.suffix == ".json":
        write_json(path, value)
    else:
        save_tensors(path, value)


def open_stage(folder: Path, kind: str, stage_hash: str, inputs: dict[str, str]) -> None:
    """Create the stage folder and describe it by stage.json (its kind, hash and inputs)."""
    mkdir(folder)
    write_json(folder / layout.STAGE, {"stage": kind, "hash": stage_hash, **inputs})


def mark_done(folder: Path) -> None:
    atomic.write_text(folder / layout.DONE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


@dataclass
class Outputs:
    """What a computed stage writes (rank 0), then DONE: ``files`` by path relative to the stage
    folder, in order (values as :func:`write_output` takes them); ``note``, logged once the stage
    is done; ``cleanup``, folders removed then (sampling shards)."""

    files: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    cleanup: tuple[Path, ...] = ()


class Stage:
    """One stage kind. ``name`` is its name in the schema (:data:`ncsn_core.schema.STAGES`),
    ``kind`` its folder's (:mod:`ncsn_core.layout`)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    everywhere: ClassVar[bool] = True  # reuse a complete stage of this hash anywhere under runs/

    def applies(self, ctx: Context, done: Done) -> bool:
        raise NotImplementedError

    def hash(self, ctx: Context) -> str:
        raise NotImplementedError

    def folder(self, ctx: Context) -> Path:
        return layout.stage_dir(ctx.seed_dir, self.kind, self.hash(ctx))

    def inputs(self, ctx: Context, done: Done) -> dict[str, str]:
        """stage.json's record of the stage's inputs (paths relative to the run folder)."""
        return {}

    def every_rank(self, ctx: Context) -> bool:
        """Whether every data-parallel rank computes the stage (else rank 0 alone)."""
        return True

    def extra_lock(self, ctx: Context) -> AbstractContextManager[None]:
        """A lock held beside the stage folder's own while computing it."""
        return contextlib.nullcontext()

    def compute(self, ctx: Context, folder: Path, done: Done) -> Outputs | None:
        """Compute the stage into ``folder``; the outputs rank 0 writes (None on other ranks)."""
        raise NotImplementedError


class Context:
    """One run (a spec and a seed) as its stages see it."""

    def __init__(
        self,
        spec: RunSpec,
        runs_dir: Path,
        device: str | None,
        source_text: str = "",
        quiet: bool = False,
        wait: bool = True,
        overrides: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.overrides = tuple(overrides)
        self.runs_dir = Path(runs_dir)
        chosen = pick_device(device)
        self.device = dist.init(chosen) or chosen  # a data-parallel rank: cuda:LOCAL_RANK
        self.dir = layout.run_dir(self.runs_dir, spec.experiment, spec.hash())
        self.seed_dir = layout.seed_dir(self.dir, spec.seed)
        self.source_text = source_text
        self.quiet = quiet
        self.wait = wait
        self._data: Any = None
        self._noise: Any = None

    def log(self, msg: str) -> None:
        if not self.quiet and dist.is_main():
            print(msg, file=sys.stderr, flush=True)

    # ---- lazily built parts
    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = build("data", self.spec.data)
        return self._data

    def noise(self) -> Any:
        if self._noise is None:
            self._noise = build("noise", self.spec.noise, data=self.data).to(self.device)
        return self._noise

    def network(self) -> torch.nn.Module:
        n = self.noise()
        return build(
            "network", self.spec.network, shape=tuple(self.data.shape), sigmas=n.sigmas.detach().cpu()
        )

    # ---- the runs folder
    def record(self, path: Path) -> str:
        """``path`` as recorded in this run's files: relative to the run folder."""
        return layout.record(path, self.dir)

    def shown(self, path: Path) -> str:
        """``path`` as the log shows it: under the runs folder."""
        return layout.record(path, self.dir).removeprefix("../../")

    def find_stage(self, kind: str, stage_hash: str, everywhere: bool = True) -> Path | None:
        """A complete ``kind`` stage with this hash and seed: this run's own, else the first
        anywhere under the runs folder (another experiment, another run of a sweep). The one
        lookup of every stage kind: equal hashes are equal work."""
        own = layout.stage_dir(self.seed_dir, kind, stage_hash)
        if layout.is_complete_stage(own, stage_hash):
            return own
        if not everywhere:
            return None
        for folder in layout.stage_dirs_anywhere(self.runs_dir, self.spec.seed, kind, stage_hash):
            if layout.is_complete_stage(folder, stage_hash):
                return folder
        return None

    @property
    def main(self) -> bool:
        """Whether this process is rank 0, the one that writes (and holds gathered samples)."""
        return dist.is_main()

    def keep(self, path: Path, value: Any, cleanup: Path | None = None) -> None:
        """A partial result that survives an interruption (:func:`write_output`), then
        ``cleanup`` removed: rank 0 writes, every rank waits for it."""
        if dist.is_main():
            write_output(path, value)
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
        dist.barrier()


def load_tensors(path: Path, map_location: str | None = None) -> Any:
    """One of our own stage files (samples, shards) read weights-only; a file that is damaged or
    would need more than tensors (a pickle payload) is a :class:`RunError` naming it — nothing in
    it runs, and no traceback reaches the user."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, OSError ...
        raise RunError(
            f"{path}: cannot be read as this project's tensor file ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); nothing in it was run. Remove its stage folder "
            f"({path.parent}) and run again to recompute it."
        ) from None
