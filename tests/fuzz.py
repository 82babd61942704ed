"""Fuzz the `.exp` front end: every input either compiles or gives positioned errors, promptly.

    python -m tests.fuzz --n 100000 [--seed S] [--timeout 2]

Inputs are experiments generated from the grammar and vocabulary (:func:`gen_valid`) and
mutations of every ``papers/*.exp`` file (:func:`mutate`): deleted, duplicated and swapped
tokens, random bytes, huge numbers, deep nesting, NULs, bad UTF-8, hostile imports
(``/dev/zero``, a FIFO, a directory, a file over the size limit), long ``extends`` chains and
large sweep grids. Each input goes through the front end as ``repro check`` runs it
(parse → resolve → check, no ``auto`` computed). Accepted outcomes: success, or
:class:`dsl.errors.DiagnosticError` whose diagnostics all have a position or name a path,
within the time bound (CPU seconds per input). Anything else (another exception, a diagnostic without a position,
a timeout) is a failure and its input is printed.

``tests/test_fuzz.py`` runs the same generators through hypothesis inside the test suite.

The files repro reads are fuzzed too (:func:`gen_file_case`, ``--files N``): runs folders
(`repro ls --json` and `repro report` on them), released checkpoints (the run's preflight,
then the reader), repro checkpoints (`repro export`), image zips and IDX data files, each built valid and then
damaged: bytes flipped, cut or inserted, 100k-deep JSON, wrong JSON types, a FIFO, a
directory, ``/dev/zero``, a symlink out of the runs folder or a symlink loop in its place.
Accepted: success, or a :class:`~ncsn_core.errors.ReproError` (an exit code, a message with
the path) within the time bound. ``python -m tests.fuzz --long`` runs 100,000 front-end inputs
and 5,000 file cases; the suite runs a few dozen of each kind.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPERS = sorted((ROOT / "papers").glob("*.exp"))
INPUT_NAME = "fuzz_input.exp"

# ----------------------------------------------------------------------------- the oracle


class Hang(Exception):
    """The front end took longer than the time bound on one input."""


class Failure(Exception):
    """The front end broke the contract on one input (message says how)."""


def run_front_end(path: Path) -> str:
    """Compile ``path`` as ``repro check`` does. Returns "ok" or "user error"; raises
    :class:`Failure` for a diagnostic without a position or path, and lets any other
    exception through (the caller reports it with the input)."""
    from dsl.compiler import compile_file
    from dsl.errors import DiagnosticError

    sets = ()
    if path.name == INPUT_NAME and _SETS:
        sets = tuple(_SETS)
    try:
        compile_file(path, compute_auto=False, sets=sets)
    except DiagnosticError as e:
        for d in e.diagnostics:
            if d.pos is None and str(path) not in d.message:
                raise Failure(f"diagnostic without a position or a path: {d.message!r}") from None
            d.render()  # rendering must not fail either
        e.render()
        return "user error"
    return "ok"


_SETS: list[str] = []  # `--set` arguments for the next input (set by check_one)


def gen_sets(r: random.Random) -> list[str]:
    """Zero to two ``--set`` arguments: sweeps, lists, references and misplaced commas."""
    out = []
    for _ in range(r.choice([0, 0, 0, 1, 2])):
        val = (
            r.choice(SET_VALUES) if r.random() < 0.7 else ",".join(_value(r) for _ in range(r.randint(1, 3)))
        )
        out.append(f"{r.choice(SET_KEYS)}={val}")
    return out


def workdir() -> Path:
    """A temporary folder with the papers and the hostile files imports may name."""
    d = Path(tempfile.mkdtemp(prefix="repro-fuzz-"))
    for p in PAPERS:
        (d / p.name).write_bytes(p.read_bytes())
    (d / "subdir").mkdir()
    (d / "huge.exp").write_bytes(b"# padding\n" * 110_000)  # over the 1 MB limit
    (d / "binary.exp").write_bytes(b"experiment b { seed = 1 }\n\xff\xfe\x00\n")
    (d / "other.exp").write_text("experiment other_base { seed = 3 }\n", encoding="utf-8")
    try:
        os.mkfifo(d / "fifo.exp")
    except (AttributeError, OSError):  # pragma: no cover - no FIFOs on this system
        pass
    return d


# ----------------------------------------------------------------------------- generators
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[\d.][\w.]*|\*\*|\+-|\s+|.', re.S)

HUGE_NUMBERS = [
    "9 ** 9 ** 9",
    "2 ** 100000000",
    "(10 ** 4000) * (10 ** 4000)",
    "1e999",
    "9" * 5000,
    "1" + "0" * 4300,
    "2 ** 2000",
    "10.0 ** 400",
    "exp(1000)",
    "(-8) ** (1 / 3)",
    "1 / 0",
    "log(-1)",
    "sqrt(-4)",
    "1e308 * 10",
    "-1e400",
    "99999999999999999999999999k",
]
NESTING = [50, 99, 100, 101, 150, 1000, 5000]
IMPORTS = [
    "/dev/zero",
    "/dev/null",
    "/dev/urandom",
    "fifo.exp",
    "subdir",
    ".",
    "",
    "huge.exp",
    "binary.exp",
    "missing.exp",
    INPUT_NAME,
    "other.exp",
    "a\x00b",
    "x" * 5000,
    "../" * 200 + "etc/passwd",
]
VOCAB = {
    "data": ["digits", "mixture2d", "mnist", "cifar10", "celeba", "nope"],
    "noise": ["geometric", "linear", "adaptive", "none"],
    "network": ["mlp", "ncsn", "ncsnv2"],
    "loss": ["dsm", "ssm", "ssm_vr", "ansn_dsm"],
}
STAGES = ["annealed_langevin", "langevin", "denoise", "exact_sample", "inpainting", "preconditioned_langevin"]
# References to other values (issue 16.8): real paths, defaults, unknown blocks/params/stages,
# values that are strings or expressions, and paths that make cycles with the PARAMS above.
REFS = [
    "train.iterations", "noise.levels", "noise.sigma_max", "train.batch_size", "evaluate.samples",
    "sample.annealed_langevin.steps_per_level", "sample.stage1.step_size", "sample.stage9.x",
    "train.optimizer.lr", "data.dequantize", "loss.weight", "network.hidden", "nosie.levels",
    "train.nope", "sample.langevin.steps", "a.b.c.d",
]  # fmt: skip
# Values of `--set` (commas outside brackets sweep), right and wrong.
SET_VALUES = [
    "1,2", "1, 2", "[1,2]", "[1,2],[3]", "1,,2", "1,", ",1", "[1,2", "1],2", '"a,b"', '"a,b",x',
    "adam(lr=1e-4, beta1=0.5)", "1e-4,2e-4", "train.iterations/2,3", "auto,1", "(1,2)", '"\\",1',
]  # fmt: skip
SET_KEYS = [
    "seed",
    "noise.levels",
    "train.iterations",
    "train.optimizer.lr",
    "evaluate.metrics",
    "sweep.seed",
]
PARAMS = [
    "sigma_max", "sigma_min", "levels", "hidden", "layers", "ngf", "weight", "iterations",
    "batch_size", "samples", "init", "optimizer", "steps_per_level", "step_size", "metrics",
    "flip", "root", "record_every", "overlap", "act", "conditional", "seed", "lr",
]  # fmt: skip


def _number(r: random.Random) -> str:
    return r.choice(
        [
            str(r.randint(0, 10)),
            str(r.randint(0, 10**6)),
            f"{r.uniform(1e-6, 10):.3g}",
            f"{r.randint(1, 9)}e-{r.randint(1, 9)}",
            f"{r.randint(1, 99)}k",
            f"-{r.randint(0, 100)}",
            r.choice(HUGE_NUMBERS),
        ]
    )


def _expr(r: random.Random, depth: int = 0) -> str:
    if depth > 3 or r.random() < 0.4:
        return r.choice([_number(r), "sigma", "sigma_max", "t", r.choice(REFS)])
    op = r.choice(["+", "-", "*", "/", "**"])
    form = r.randrange(4)
    if form == 0:
        return f"{_expr(r, depth + 1)} {op} {_expr(r, depth + 1)}"
    if form == 1:
        return f"({_expr(r, depth + 1)})"
    if form == 2:
        return f"-{_expr(r, depth + 1)}"
    return f"{r.choice(['sqrt', 'exp', 'log', 'cube'])}({_expr(r, depth + 1)})"


def _value(r: random.Random, depth: int = 0) -> str:
    k = r.randrange(9)
    if k <= 2:
        return _expr(r)
    if k == 3:
        return '"' + r.choice(["", "x", "data/", "a b", "\\n"]) + '"'
    if k == 4:
        return r.choice(["true", "false", "auto", "uniform", "elu", "fid", "gaussian"])
    if k == 5 and depth < 3:
        return "[" + ", ".join(_value(r, depth + 1) for _ in range(r.randrange(4))) + "]"
    if k == 6 and depth < 3:
        kws = ", ".join(f"{r.choice(PARAMS)} = {_value(r, depth + 1)}" for _ in range(r.randrange(3)))
        return f"{r.choice(['adam', 'sgd', 'rmsprop', 'adma'])}({kws})"
    return _number(r)


def _assign(r: random.Random) -> str:
    return f"{r.choice(PARAMS)} = {_value(r)}"


def _block(r: random.Random) -> str:
    kind = r.choice([*VOCAB, "train", "sample", "evaluate", "nosie"])
    head = f"{kind} {r.choice(VOCAB.get(kind, ['']))}".strip()
    items = [_assign(r) for _ in range(r.randrange(4))]
    if kind == "sample":
        for _ in range(r.randrange(3)):
            body = ", ".join(_assign(r) for _ in range(r.randrange(3)))
            items.append(f"stage {r.choice(STAGES)} {{ {body} }}")
    return f"{head} {{ {', '.join(items)} }}"


# Settings a sweep may cover (generated grids; tests/test_dsl_errors.py reuses them).
SWEEP_PATHS = (
    "seed",
    "noise.levels",
    "train.iterations",
    "train.batch_size",
    "noise.sigma_max",
    "sample.samples",
)


def gen_valid(r: random.Random) -> str:
    """An experiment file built from the grammar and the vocabulary (often semantically
    wrong, always syntactically right)."""
    out = []
    if r.random() < 0.1:
        out.append(f'import "{r.choice(["other.exp", "missing.exp", "ncsn_toy_fig2.exp"])}"')
    names: list[str] = []
    for i in range(r.randint(1, 3)):
        name = f"e{i}"
        ext = f" extends {r.choice(names + ['other_base', 'nothere'])}" if names and r.random() < 0.4 else ""
        names.append(name)
        body = []
        if r.random() < 0.8:
            base = [
                "data digits { }",
                "noise geometric { sigma_max = 1.0, sigma_min = 0.01, levels = 10 }",
                "network mlp { hidden = 16 }",
                "loss dsm { }",
                "train { iterations = 10, batch_size = 8 }",
                "sample { stage annealed_langevin { steps_per_level = 2 } }",
            ]
            body += [b for b in base if r.random() < 0.85]
        body += [_block(r) for _ in range(r.randrange(3))]
        body += [
            f"{r.choice([*VOCAB, 'train', 'sample'])}.{r.choice(PARAMS)} = {_value(r)}"
            for _ in range(r.randrange(3))
        ]
        if r.random() < 0.3:
            body.append(f"seed = {_number(r)}")
        if r.random() < 0.3:
            axis = r.choice(
                ["seed", "noise.levels", "train.iterations", "sample.annealed_langevin.step_size"]
            )
            body.append(f"sweep {axis} = [" + ", ".join(_number(r) for _ in range(r.randrange(5))) + "]")
        if r.random() < 0.2:
            val = f"{r.uniform(0, 100):.2f}" + (f" ± {r.uniform(-1, 1):.2f}" if r.random() < 0.5 else "")
            body.append(f'published "Table 1" {{ fid = {val} }}')
        r.shuffle(body)
        sep = r.choice(["\n    ", ", ", " "])
        out.append(f"experiment {name}{ext} {{\n    " + sep.join(body) + "\n}")
    return "\n".join(out) + "\n"


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _nest(r: random.Random, k: int) -> str:
    kind = r.randrange(5)
    if kind == 0:
        return "(" * k + "1" + ")" * k
    if kind == 1:
        return "-" * k + "1"
    if kind == 2:
        return "[" * k + "]" * k
    if kind == 3:
        return " + ".join(["1"] * k)
    return "2 ** " * k + "1"


def _special(r: random.Random) -> str:
    """Whole files aimed at the bounds: extends chains, import chains, sweep grids."""
    k = r.randrange(5)
    if k == 0:
        n = r.choice([10, 31, 32, 33, 60, 500])
        lines = ["experiment c0 { data digits { }, noise geometric { } }"]
        lines += [f"experiment c{i} extends c{i - 1} {{ seed = {i} }}" for i in range(1, n)]
        return "\n".join(lines) + "\n"
    if k == 1:
        axes = r.randint(1, 6)
        size = r.choice([1, 2, 10, 31, 32, 100])
        vals = ", ".join(str(i) for i in range(size))
        sweeps = "\n".join(f"    sweep {p} = [{vals}]" for p in SWEEP_PATHS[:axes])
        return f"experiment s {{\n    data digits {{ }}\n    noise geometric {{ }}\n{sweeps}\n}}\n"
    if k == 2:
        return f'import "{r.choice(IMPORTS)}"\n' + gen_valid(r)
    if k == 3:
        return "experiment e { seed = " + _nest(r, r.choice(NESTING)) + " }\n"
    return "\n".join(f"# {i}" for i in range(r.randrange(3)))  # defines no experiment


def mutate(text: str, r: random.Random) -> bytes:
    """One to three random edits of ``text`` (tokens, bytes, numbers, nesting...)."""
    toks = _tokens(text)
    data: bytes | None = None
    for _ in range(r.randint(1, 3)):
        if not toks:
            toks = ["experiment", " ", "e", " ", "{", "}"]
        i = r.randrange(len(toks))
        k = r.randrange(14)
        if k == 0:
            del toks[i]
        elif k == 1:
            toks.insert(i, toks[i])
        elif k == 2:
            j = r.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif k == 3:
            toks.insert(i, r.choice(toks))
        elif k == 4:
            nums = [n for n, t in enumerate(toks) if t[:1].isdigit()]
            toks[r.choice(nums) if nums else i] = r.choice(HUGE_NUMBERS)
        elif k == 5:
            nums = [n for n, t in enumerate(toks) if t[:1].isdigit()]
            toks[r.choice(nums) if nums else i] = _nest(r, r.choice(NESTING))
        elif k == 6:
            toks.insert(i, "\x00")
        elif k == 7:
            toks.insert(
                i, "".join(chr(r.choice([r.randrange(32, 127), r.randrange(0x80, 0x3000)])) for _ in range(3))
            )
        elif k == 8:
            braces = [n for n, t in enumerate(toks) if t in "{}" and t]
            if braces:
                del toks[r.choice(braces)]
        elif k == 9:
            toks = toks[: r.randrange(len(toks) + 1)]
        elif k == 10:
            toks.insert(0, f'import "{r.choice(IMPORTS)}"\n')
        elif k == 11:
            toks.insert(i, r.choice(["{", "}", "[", "]", "(", ")", "=", ",", ".", "±", "**", '"', "#", "\n"]))
        elif k == 12:
            toks.insert(
                i, r.choice(["experiment", "extends", "sweep", "stage", "published", "import", "auto"])
            )
        else:
            other = _tokens(r.choice(PAPERS).read_text(encoding="utf-8"))
            a = r.randrange(len(other))
            toks[i:i] = other[a : a + r.randint(1, 40)]
    data = "".join(toks).encode("utf-8")
    if r.random() < 0.1:  # raw byte damage: bad UTF-8 and random bytes
        pos = r.randrange(len(data) + 1)
        junk = r.choice(
            [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", bytes(r.randrange(256) for _ in range(4))]
        )
        data = data[:pos] + junk + data[pos:]
    return data


def gen_input(r: random.Random) -> bytes:
    """One fuzz input: a generated file, a special bound-testing file or a mutated paper."""
    k = r.random()
    if k < 0.25:
        return gen_valid(r).encode("utf-8")
    if k < 0.3:
        return _special(r).encode("utf-8")
    if k < 0.4:
        return mutate(gen_valid(r), r)
    return mutate(r.choice(PAPERS).read_text(encoding="utf-8"), r)


# ----------------------------------------------------------------------------- runner
def warm_up(d: Path) -> None:
    """Import everything the front end loads lazily (torch, the registry) outside the time
    bound: an alarm in the middle of a first import would leave modules half loaded."""
    for p in PAPERS:
        run_front_end(d / p.name)


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def check_one(
    data: bytes, d: Path, timeout: float, sets: list[str] | tuple[str, ...] = ()
) -> tuple[str, str]:
    """(outcome, detail): outcome is ok, user error, traceback or hang; ``sets`` are
    ``--set`` arguments applied as `repro check --set` does.

    The bound is on CPU time (SIGPROF), so that a loaded machine does not turn slow
    inputs into hangs; a wall-clock alarm at 10× catches an input that blocks without
    computing (a FIFO opened for reading)."""
    path = d / INPUT_NAME
    path.write_bytes(data)
    _SETS[:] = sets
    old_prof = signal.signal(signal.SIGPROF, _alarm)
    old_alrm = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)
    signal.setitimer(signal.ITIMER_REAL, 10 * timeout)
    c0 = time.process_time()
    try:
        outcome = run_front_end(path)
        detail = ""
    except Hang:
        outcome, detail = "hang", f"over {timeout}s of CPU or {10 * timeout}s of wall-clock time"
    except Exception:  # noqa: BLE001 - every other exception (RecursionError...) is the finding
        outcome, detail = "traceback", traceback.format_exc(limit=-8)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alrm)
    cpu = time.process_time() - c0
    if outcome in ("ok", "user error") and cpu > timeout:  # C code ignores signals until done
        outcome, detail = "hang", f"took {cpu:.1f}s of CPU (> {timeout}s)"
    return outcome, detail


# ----------------------------------------------------------------------------- files
FILE_KINDS = ("runs", "released", "checkpoint", "zip", "idx")


def _bounded(fn, timeout: float) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """check_one's bounds around ``fn()`` (which returns "ok" or "user error")."""
    old_prof = signal.signal(signal.SIGPROF, _alarm)
    old_alrm = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)
    signal.setitimer(signal.ITIMER_REAL, 10 * timeout)
    try:
        return fn(), ""
    except Hang:
        return "hang", f"over {timeout}s of CPU or {10 * timeout}s of wall-clock time"
    except Exception:  # noqa: BLE001 - every other exception is the finding
        return "traceback", traceback.format_exc(limit=-8)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alrm)


def _damage_bytes(r: random.Random, good: bytes) -> bytes:
    """``good`` flipped, cut, grown, emptied, or replaced by deep or wrongly typed JSON."""
    b = bytearray(good)
    k = r.randrange(8)
    if k == 0 and b:
        for _ in range(r.randint(1, 8)):
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    elif k == 1:
        del b[r.randrange(len(b) + 1) :]
    elif k == 2:
        at = r.randrange(len(b) + 1)
        b[at:at] = r.randbytes(r.randint(1, 64))
    elif k == 3:
        return b""
    elif k == 4:
        n = r.choice([100, 5000, 100_000])
        return ("[" * n + "]" * n).encode() if r.random() < 0.5 else ('{"a":' * n + "1" + "}" * n).encode()
    elif k == 5:
        return r.choice([b"[1, 2]", b'"x"', b"null", b'{"fid": "x"}', b"1e999999", b'{"step": []}', b"NaN"])
    elif k == 6:
        return r.randbytes(r.randint(1, 256))
    return bytes(b)


def _damage(r: random.Random, path: Path, outside: Path) -> None:
    """Replace the file at ``path`` by damaged bytes or by something that is not a file."""
    good = path.read_bytes() if path.is_file() else b"{}"
    path.unlink(missing_ok=True)
    k = r.randrange(10)
    if k == 0 and hasattr(os, "mkfifo"):
        os.mkfifo(path)
    elif k == 1:
        path.mkdir()
    elif k == 2 and os.path.exists("/dev/zero"):
        path.symlink_to("/dev/zero")
    elif k == 3:
        (outside / path.name).write_bytes(good)
        path.symlink_to(outside / path.name)
    elif k == 4:
        path.symlink_to(path.name)  # a loop
    else:
        path.write_bytes(_damage_bytes(r, good))


def _good_run(run: Path) -> list[Path]:
    """A complete run folder (spec, train, sample, select, eval records); its files."""
    import json

    seed = run / "seed-0"
    files = {
        "spec.json": {"experiment": run.parent.name, "hash": run.name, "paper": "p", "sweep": {"a": "1"}},
        "overrides.json": ["a=1"],
        "source.exp": "experiment x { }",
        "seed-0/train/stage.json": {"stage": "train", "hash": "t"},
        "seed-0/train/results.json": {"iterations": 3, "final_loss": 0.5, "seconds": 1.0},
        "seed-0/train/log.jsonl": '{"step": 1, "loss": 1.0}\n{"step": 3, "loss": 0.5}\n',
        "seed-0/train/DONE": "x",
        "seed-0/sample-s/stage.json": {"stage": "sample", "hash": "s", "train": "../train"},
        "seed-0/sample-s/results.json": {"seconds": 1.0, "nfe_per_sample": 10},
        "seed-0/sample-s/DONE": "x",
        "seed-0/select-c/selection.json": {"metric": "fid", "candidates": [{"step": 3, "fid": 1.0}]},
        "seed-0/select-c/candidates/step-00000003.json": {"step": 3, "fid": 1.0},
        "seed-0/eval-e/stage.json": {"stage": "eval", "hash": "e"},
        "seed-0/eval-e/metrics.json": {
            "fid": 12.5,
            "protocol": {"samples": 10},
            "per_sample": {"fid": [1.0]},
        },
        "seed-0/eval-e/DONE": "x",
    }
    out = []
    for name, v in files.items():
        p = run / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(v if isinstance(v, str) else json.dumps(v))
        out.append(p)
    assert seed.is_dir()
    return out


def gen_file_case(kind: str, r: random.Random, d: Path) -> Path:
    """A fresh folder under ``d`` with one ``kind`` input, valid and then damaged."""
    import zipfile

    case = Path(tempfile.mkdtemp(dir=d))
    outside = case / "outside"
    outside.mkdir()
    if kind == "runs":
        root = case / "runs"
        files = [f for i in range(r.randint(1, 2)) for f in _good_run(root / f"exp{i}" / f"h{i}")]
        for p in r.sample(files, r.randint(1, 3)):
            _damage(r, p, outside)
        if r.random() < 0.2:
            (root / "linked").symlink_to(outside, target_is_directory=True)
            _good_run(outside / "h9")
        return root
    target = case / {"released": "ck.pth", "checkpoint": "step-00000003.pt", "zip": "img.zip"}.get(
        kind, "x-idx3-ubyte"
    )
    if kind in ("released", "checkpoint"):
        import torch

        sd = {"begin.weight": torch.arange(6.0).reshape(2, 3)}
        obj = [sd, {"state": {}, "param_groups": []}] if kind == "released" else {"step": 3, "model": sd}
        torch.save(obj, target)
    elif kind == "zip":
        import io as _io

        from PIL import Image

        with zipfile.ZipFile(target, "w") as z:
            for i in range(2):
                buf = _io.BytesIO()
                Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(buf, "PNG")
                z.writestr(f"img{i}.png", buf.getvalue())
    else:
        target.write_bytes(b"\0\0\x08\x03" + (2).to_bytes(4, "big") + (4).to_bytes(4, "big") * 2 + bytes(32))
    if r.random() < 0.9:
        _damage(r, target, outside)
    return target


def run_file_case(kind: str, path: Path) -> str:
    """Read ``path`` as repro does for ``kind``: "ok", or "user error" for a ReproError;
    raises :class:`Failure` when a command printed a traceback or gave another exit code."""
    from ncsn_core.errors import ReproError

    try:
        if kind == "runs":
            from typer.testing import CliRunner

            from dsl.cli import app

            for args in (["ls", str(path), "--json"], ["report", str(path), "--format", "md"]):
                res = CliRunner().invoke(app, args)
                if isinstance(res.exception, Hang):
                    raise Hang()
                if res.exit_code != 0 or "Traceback" in res.output:
                    if res.exception is not None and not isinstance(res.exception, SystemExit):
                        raise res.exception
                    raise Failure(f"repro {args[0]} exited {res.exit_code}: {res.output[-2000:]}")
        elif kind == "released":
            from ncsn_core import released, released_files

            released_files.file_sha256(path)  # the run's preflight: a regular file or an error
            released.read(path, "ncsn")
        elif kind == "checkpoint":  # `repro export CHECKPOINT` (ckpt.load itself: see docs/security.md)
            from ncsn_core import released

            released.export(path, "ncsnv2", path.parent / "outside" / "exported.pth", force=True)
        elif kind == "zip":
            from ncsn_core import data_images

            data_images.images(str(path), 8, False, "none", 0, 0.0)  # `data images { path = ... }`
        else:
            from ncsn_core import data_files

            data_files.read_idx(path)
    except ReproError:
        return "user error"
    return "ok"


def check_file_case(kind: str, r: random.Random, d: Path, timeout: float) -> tuple[str, str]:
    """(outcome, detail) of one generated ``kind`` case (see :func:`check_one`)."""
    path = gen_file_case(kind, r, d)
    outcome, detail = _bounded(lambda: run_file_case(kind, path), timeout)
    return outcome, f"{kind} case {path}\n{detail}" if detail else ""


def _watchdog(state: dict, limit: float) -> None:
    """Numbers too big for SIGALRM (C loops) would freeze the run: report and exit."""
    while True:
        time.sleep(limit / 4)
        started, data = state.get("started"), state.get("data")
        if started is not None and time.monotonic() - started > limit:
            sys.stdout.write(f"\nHANG (no answer in {limit:.0f}s, the process is stuck); input:\n{data!r}\n")
            sys.stdout.flush()
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per input")
    ap.add_argument("--show", type=int, default=5, help="failures printed in full")
    ap.add_argument("--files", type=int, default=0, help="file cases (runs folders, checkpoints, zips...)")
    ap.add_argument("--long", action="store_true", help="the long version: --n 100000 --files 5000")
    a = ap.parse_args(argv)
    if a.long:
        a.n, a.files = max(a.n, 100_000), max(a.files, 5000)

    sys.setrecursionlimit(1000)  # the default, whatever a caller set
    d = workdir()
    warm_up(d)
    r = random.Random(a.seed)
    counts: Counter[str] = Counter()
    shown = 0
    state: dict = {}
    threading.Thread(target=_watchdog, args=(state, max(30.0, 10 * a.timeout)), daemon=True).start()
    t0 = time.monotonic()
    for i in range(a.n):
        data = gen_input(r)
        sets = gen_sets(r) if r.random() < 0.2 else []
        state.update(started=time.monotonic(), data=data)
        outcome, detail = check_one(data, d, a.timeout, sets)
        state["started"] = None
        counts[outcome] += 1
        if outcome in ("traceback", "hang"):
            if shown < a.show:
                shown += 1
                print(
                    f"--- {outcome} on input #{i} (seed {a.seed}) --set {sets}:\n{data!r}\n{detail}",
                    flush=True,
                )
        if (i + 1) % 5000 == 0:
            print(f"[{i + 1}/{a.n}] {dict(counts)} {time.monotonic() - t0:.0f}s", flush=True)
    for i in range(a.files):
        kind = FILE_KINDS[i % len(FILE_KINDS)]
        state.update(started=time.monotonic(), data=f"file case {kind} #{i}")
        outcome, detail = check_file_case(kind, r, d, max(a.timeout, 10.0))
        state["started"] = None
        counts[f"files {outcome}"] += 1
        if outcome in ("traceback", "hang") and shown < a.show:
            shown += 1
            print(f"--- {outcome} on file case #{i} (seed {a.seed}):\n{detail}", flush=True)
    if a.files:
        print(
            "file cases: "
            + ", ".join(f"{k[6:]} {v}" for k, v in sorted(counts.items()) if k.startswith("files "))
        )
    wall = time.monotonic() - t0
    print(
        f"inputs {a.n}, ok {counts['ok']}, user errors {counts['user error']}, "
        f"tracebacks {counts['traceback']}, hangs {counts['hang']}, wall {wall:.0f}s (seed {a.seed})"
    )
    bad = ("traceback", "hang", "files traceback", "files hang")
    return 1 if any(counts[k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
