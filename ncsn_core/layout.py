"""The run folder on disk (docs/architecture.md, "Runs on disk"): every file and folder name,
and the small predicates the runner (writing) and the reporter (reading) both need.

::

    <runs>/<experiment>/<run-hash>/          spec.json  source.exp  overrides.json (--set)
        seed-<k>/                            env.json  evalsamples-<key>.pt
            train/                           stage.json results.json log.jsonl DONE
                tb/                          TensorBoard events (train.tensorboard)
                checkpoints/step-<n:08d>.pt
            sample-<hash>/                   stage.json results.json samples.pt grid.png
                                             intermediates.pt intermediates.png DONE
                                             inpainting.pt inpainting.png (stage inpainting)
            select-<hash>/                   stage.json selection.json DONE
                candidates/step-<n:08d>.json one record per evaluated candidate checkpoint
            eval-<hash>/                     stage.json metrics.json DONE
    <runs>/.cache/locks/                     locks of train stages shared by several runs
    user_cache_dir()                         caches shared by every runs folder: the domain
                                             classifiers, torch-fidelity reference features

Paths written into a run folder are relative (:func:`record`): to the run folder, and
through it to the runs folder for a reference to another run (a reused train stage), so a
runs folder can be moved or copied whole. :func:`resolve` reads them back, and also the
absolute or working-directory-relative paths older runs recorded.

No torch here: the report code reads runs without it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ncsn_core import io as atomic
from ncsn_core.errors import UserError

# ---- file and folder names
SPEC = "spec.json"
SOURCE = "source.exp"
OVERRIDES = "overrides.json"  # the --set values the run was made with (a JSON list; none: no file)
USE_PREFIX = "use:"  # a `--use data=digits` among them is recorded as `use:data=digits`


def override_args(overrides: tuple[str, ...] | list[str]) -> str:
    """A run's recorded overrides as command-line text: `--set k=v` and `--use group=option`."""
    return " ".join(
        f"--use {v[len(USE_PREFIX) :].strip()}" if v.startswith(USE_PREFIX) else f"--set {v}"
        for v in overrides
    )


ENV = "env.json"
STAGE = "stage.json"
RESULTS = "results.json"
LOG = "log.jsonl"
METRICS = "metrics.json"
DONE = "DONE"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples.pt"
GRID = "grid.png"
INTERMEDIATES = "intermediates.pt"
STRIP = "intermediates.png"
INPAINTING = "inpainting.pt"  # stage inpainting: its reference images, masks and repeats
INPAINTING_FIGURE = "inpainting.png"  # NCSN Fig. 6: occluded | completions | original per row
CACHE = ".cache"
TENSORBOARD = "tb"  # in train/: TensorBoard's event files (train.tensorboard)
MANIFEST = "manifest.json"  # in checkpoints/: every checkpoint's step, size and SHA-256

SELECTION = "selection.json"  # in select-<hash>/: every candidate's metric and the chosen step
CANDIDATES = "candidates"  # in select-<hash>/: one record per candidate, written as each finishes

TRAIN, SAMPLE, EVAL = "train", "sample", "eval"  # stage kinds
SELECT = "select"  # checkpoint selection (between train and sample)
_SEED = "seed-"
_CHECKPOINT = re.compile(r"step-(\d+)\.pt$")


# ---- paths
def run_dir(runs_dir: Path, experiment: str, run_hash: str) -> Path:
    return Path(runs_dir) / experiment / run_hash


def seed_dir(run: Path, seed: int) -> Path:
    return run / f"{_SEED}{seed}"


def stage_dir(seed: Path, kind: str, stage_hash: str = "") -> Path:
    """``train/`` (one per seed; its hash is in stage.json) or ``<kind>-<hash>/``."""
    return seed / TRAIN if kind == TRAIN else seed / f"{kind}-{stage_hash}"


def checkpoints_dir(train: Path) -> Path:
    return train / CHECKPOINTS


def tensorboard_dir(train: Path) -> Path:
    """TensorBoard's event files of a train stage (``train.tensorboard``): ``train/tb/``."""
    return Path(train) / TENSORBOARD


def manifest_file(checkpoints: Path) -> Path:
    return Path(checkpoints) / MANIFEST


def lock_file(stage: Path) -> Path:
    """A stage's lock: ``.<stage folder>.lock`` beside it in the seed folder (so a reused stage
    of another run never gets an empty folder of its own)."""
    return stage.parent / f".{stage.name}.lock"


def owner_file(stage: Path) -> Path:
    """Who holds a stage's lock (pid, host), beside the lock."""
    return stage.parent / f".{stage.name}.owner"


def checkpoint_file(folder: Path, step: int) -> Path:
    """``step-<n>.pt`` in a checkpoints folder."""
    return folder / f"step-{step:08d}.pt"


def checkpoint_step(path: Path) -> int | None:
    """The step of a checkpoint file name, or None for any other file (temporary files too)."""
    m = _CHECKPOINT.search(path.name)
    return int(m.group(1)) if m and not path.name.startswith(".") else None


def candidate_file(select: Path, step: int) -> Path:
    """The record of one candidate checkpoint of a select stage (its metric, samples, seconds)."""
    return Path(select) / CANDIDATES / f"step-{step:08d}.json"


def candidate_shards(select: Path, step: int) -> Path:
    """Where a candidate's sampling batches go while it is drawn (removed once it is scored)."""
    return Path(select) / CANDIDATES / f"step-{step:08d}.shards"


def eval_samples_file(seed: Path, key: str) -> Path:
    """The cached samples an evaluation draws when it wants more than the sample stage kept."""
    return seed / f"evalsamples-{key}.pt"


def eval_samples_anywhere(runs_dir: Path, seed: int, key: str) -> Iterator[Path]:
    """Every seed-``seed`` evaluation-samples file with this key under the runs folder."""
    yield from sorted(Path(runs_dir).glob(f"*/*/{_SEED}{seed}/evalsamples-{key}.pt"))


def train_lock_stage(runs_dir: Path, train_hash: str, seed: int) -> Path:
    """The pseudo stage whose lock every run with this train hash and seed holds while it
    trains (runs of a sweep that share their training stage, started concurrently, train it
    once: the second finds the first's complete train folder). Under the cache folder."""
    return Path(runs_dir) / CACHE / "locks" / f"train-{train_hash}-{_SEED}{seed}"


def shards_dir(product: Path) -> Path:
    """Where the sampling batches of ``product`` (a sample stage folder, or an evaluation's
    samples file) are written as they finish, one file per batch (docs/scale.md): a killed
    sampling job redraws only the missing ones. Removed once the product is complete."""
    return product / "shards" if product.suffix != ".pt" else product.with_suffix(".shards")


def shard_file(shards: Path, batch: int) -> Path:
    return shards / f"batch-{batch:06d}.pt"


def cache_dir(runs_dir: Path) -> Path:
    """The runs folder's own hidden folder (locks of shared train stages, submitit logs)."""
    return Path(runs_dir) / CACHE


def user_cache_dir() -> Path:
    """The cache shared by every runs folder of this user: what depends on a dataset only,
    never on a run (the domain classifiers, torch-fidelity's reference-set features,
    Technique 1's distances). ``$REPRO_CACHE`` if set, else ``$XDG_CACHE_HOME/repro``, else
    ``~/.cache/repro``."""
    env = os.environ.get("REPRO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "repro"


def stage_dirs_anywhere(runs_dir: Path, seed: int, kind: str, stage_hash: str) -> Iterator[Path]:
    """Every seed-``seed`` stage folder of ``kind`` that may hold ``stage_hash`` under the runs
    folder (complete or not; the train folders of every run, whose hash is in stage.json), in
    a stable order. Hidden folders are skipped."""
    name = TRAIN if kind == TRAIN else f"{kind}-{stage_hash}"
    for sj in sorted(Path(runs_dir).glob(f"*/*/{_SEED}{seed}/{name}/{STAGE}")):
        if not any(part.startswith(".") for part in sj.relative_to(runs_dir).parts[:2]):
            yield sj.parent


# ---- predicates and listings
def seed_number(folder: Path) -> int:
    """k of ``seed-<k>``; -1 for another name."""
    try:
        return int(folder.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def seed_dirs(run: Path) -> list[Path]:
    """The ``seed-<k>`` folders of a run folder, by k."""
    return sorted((p for p in run.glob(f"{_SEED}*") if p.is_dir()), key=seed_number)


def stage_dirs(seed: Path, kind: str) -> list[Path]:
    """The stage folders of one kind in a seed folder (complete or not), by name."""
    if kind == TRAIN:
        t = stage_dir(seed, TRAIN)
        return [t] if t.is_dir() else []
    return sorted(p for p in seed.glob(f"{kind}-*") if p.is_dir())


def is_complete(stage: Path) -> bool:
    """A stage folder is complete once its ``DONE`` file exists."""
    return (stage / DONE).is_file()


def stage_info(stage: Path) -> dict[str, Any] | None:
    """The stage's ``stage.json`` (None: missing, unreadable or damaged)."""
    try:
        info = read_json(stage / STAGE)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def is_complete_stage(stage: Path, stage_hash: str) -> bool:
    """Complete, and made for ``stage_hash`` (its stage.json says so)."""
    if not is_complete(stage):
        return False
    info = stage_info(stage)
    return info is not None and info.get("hash") == stage_hash


def train_dirs(runs_dir: Path, seed: int) -> Iterator[Path]:
    """Every seed-``seed`` train folder with a stage.json under the runs folder."""
    for sj in Path(runs_dir).glob(f"*/*/{_SEED}{seed}/{TRAIN}/{STAGE}"):
        yield sj.parent


def is_run_dir(d: Path) -> bool:
    return os.path.lexists(d / SPEC) or any(p.is_dir() for p in d.glob(f"{_SEED}*"))


_warned: set[str] = set()


def _stderr_warning(message: str) -> None:
    if message not in _warned:  # once per process (a command may list the runs twice)
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def find_run_dirs(root: Path, warn: Callable[[str], None] | None = None) -> list[Path]:
    """The readable run folders: ``root`` may be the runs folder, an experiment's folder or
    one run's folder. Hidden folders (the caches) are skipped. So is, with a warning to
    ``warn`` (default: a ``warning:`` line on stderr), a folder or symlink that leads outside
    ``root``, and a damaged run (:func:`run_damage`: a FIFO, device, oversized or too deeply
    nested JSON file where the run keeps its records) — the readers of the report never open
    them; :func:`damaged_runs` lists those."""
    say = warn or _stderr_warning
    good, bad = _scan(Path(root))
    for path, why in bad:
        say(f"skipping {path}: {why}")
    return good


def damaged_runs(root: Path) -> list[tuple[Path, str]]:
    """The run folders under ``root`` that :func:`find_run_dirs` skips, each with why."""
    return _scan(Path(root))[1]


def _scan(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    good: list[Path] = []
    bad: list[tuple[Path, str]] = []
    if is_run_dir(root):
        cands = [root]
    else:
        cands = []
        for depth in ("*", "*/*"):
            for d in sorted(root.glob(depth)):
                if any(part.startswith(".") for part in d.relative_to(root).parts):
                    continue
                if not inside(d, root):
                    bad.append((d, f"a symlink to {_target(d)}, outside the runs folder {root}"))
                    continue
                if d.is_dir() and is_run_dir(d) and not any(d.is_relative_to(o) for o in cands):
                    cands.append(d)
    for d in cands:
        why = run_damage(d, root)
        (bad.append((d, why)) if why else good.append(d))
    return good, bad


def _target(p: Path) -> str:
    try:
        return str(p.resolve())
    except (OSError, RuntimeError):
        return "a path that does not resolve"


def inside(p: Path, root: Path) -> bool:
    """Whether ``p``, its symlinks followed, stays within ``root`` (a symlink loop: no)."""
    try:
        return p.resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):
        return False


# ---- bounded reading of the records in a runs folder
MAX_JSON_BYTES = 64 * 1024 * 1024  # selection.json of a long sweep stays far below
MAX_JSON_DEPTH = 64  # our records nest a handful of levels
MAX_LOG_BYTES = 1024 * 1024 * 1024  # log.jsonl of a very long training


class DamagedFile(UserError, ValueError):
    """A runs-folder record that is not a regular file, too large, not JSON or nested too
    deeply; the message names the path and why. A ``ValueError`` too, so readers that treat
    unparsable JSON as missing (``except (OSError, ValueError)``) treat this alike."""


def _depth(obj: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value (iteratively: no recursion), capped at limit+1."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON record of a runs folder, read with bounds: only a regular file (a FIFO, device
    node or folder is never read: nothing blocks), at most ``max_bytes``, nested at most
    ``max_depth`` deep. Missing: ``FileNotFoundError``; anything else wrong:
    :class:`DamagedFile` naming the path and why. JSON is parsed, never evaluated."""
    p = Path(path)
    if not os.path.lexists(p):
        raise FileNotFoundError(str(p))
    data = atomic.read_regular_bytes(p, "runs-folder file", max_bytes, error=DamagedFile)
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise DamagedFile(f"{p} is nested deeper than {max_depth} levels: not a record repro wrote") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedFile(f"{p} is not valid JSON ({e})") from None
    if _depth(value, max_depth) > max_depth:
        raise DamagedFile(f"{p} is nested deeper than {max_depth} levels: not a record repro wrote")
    return value


def _file_damage(p: Path, root: Path, json_file: bool, max_bytes: int) -> str | None:
    """Why the record ``p`` of a run cannot be read safely, or None (missing files are fine)."""
    if not os.path.lexists(p):
        return None
    if not inside(p, root):
        return f"{p} is a symlink to {_target(p)}, outside the runs folder {root}"
    try:
        st = os.stat(p)
    except OSError as e:
        return f"{p} cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return f"{p} is not a regular file"
    if st.st_size > max_bytes:
        return f"{p} is {st.st_size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.0f} MB"
    if json_file:
        try:
            read_json(p, max_bytes)
        except DamagedFile as e:
            return str(e)
        except OSError as e:
            return f"{p} cannot be read ({e.strerror or e})"
    return None


# The records a run folder keeps, by where they are: JSON files (True) and others (False).
_RUN_FILES = {SPEC: True, OVERRIDES: True, SOURCE: False}
_STAGE_FILES = {STAGE: True, RESULTS: True, METRICS: True, SELECTION: True, LOG: False, DONE: False}


def run_damage(run: Path, root: Path | None = None) -> str | None:
    """Why the run folder ``run`` cannot be read safely, or None. Checked without reading
    anything unbounded: its records (spec.json, overrides.json, source.exp, and in every
    seed's stage folders stage.json, results.json, metrics.json, selection.json, the
    candidates, log.jsonl) must be regular files within ``root`` (default: the run's runs
    folder, two levels up), JSON ones parse within :func:`read_json`'s bounds, and a complete
    eval stage's metrics.json must be a JSON object."""
    run = Path(run)
    root = Path(root) if root is not None else run.parent.parent
    for name, is_json in _RUN_FILES.items():
        why = _file_damage(run / name, root, is_json, MAX_JSON_BYTES)
        if why:
            return why
    for seed in run.glob(f"{_SEED}*"):
        if not inside(seed, root):
            return f"{seed} is a symlink to {_target(seed)}, outside the runs folder {root}"
        if not seed.is_dir():
            continue
        for stage in seed.iterdir():
            if stage.name.startswith(".") or not (stage.name == TRAIN or "-" in stage.name):
                continue
            if not inside(stage, root):
                return f"{stage} is a symlink to {_target(stage)}, outside the runs folder {root}"
            if not stage.is_dir():
                continue
            files = [(stage / n, j) for n, j in _STAGE_FILES.items()]
            files += [(c, True) for c in sorted((stage / CANDIDATES).glob("step-*.json"))]
            for p, is_json in files:
                why = _file_damage(p, root, is_json, MAX_LOG_BYTES if p.name == LOG else MAX_JSON_BYTES)
                if why:
                    return why
            if stage.name.startswith(f"{EVAL}-") and is_complete(stage):
                try:
                    m = read_json(stage / METRICS)
                except (OSError, ValueError):
                    return f"{stage} is marked DONE but has no readable {METRICS}"
                if not isinstance(m, dict) or not any(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in m.values()
                ):
                    return f"{stage / METRICS} holds no metric (expected a JSON object of numbers)"
    return None


# ---- recorded paths
def record(path: Path, run: Path) -> str:
    """``path`` as written into a file of the run folder ``run``, with forward slashes:
    relative to the run folder, or, for anything else under the runs folder (another run's
    train stage, the caches), ``../../`` and its path from the runs folder."""
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(run))
    root = r.parent.parent
    if not p.is_relative_to(r) and p.is_relative_to(root):
        return (Path("..", "..") / p.relative_to(root)).as_posix()
    return Path(os.path.relpath(p, r)).as_posix()


def resolve(recorded: str, run: Path, runs_root: Path | None = None) -> Path | None:
    """An existing path recorded in a file of the run folder ``run``, or None. Relative
    records are taken from ``run``; older records (absolute, or relative to the directory a
    run was started in) are taken as written, else by their tail under ``runs_root``."""
    if not recorded:
        return None
    p = Path(recorded)
    cands = [] if p.is_absolute() else [Path(os.path.normpath(run / p))]
    cands.append(p)
    if runs_root is not None:
        cands += [runs_root / Path(*p.parts[i:]) for i in range(1, len(p.parts))]
    return next((c for c in cands if c.exists()), None)
