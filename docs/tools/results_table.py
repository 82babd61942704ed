"""The measured table of docs/results.md, generated from run folders (never typed by hand).

    python docs/tools/results_table.py RUNS [--experiments a,b,c] [--img docs/img] [--write docs/results.md]

RUNS is a runs folder (``repro run ... --runs RUNS``). For every experiment found there (or
the ones named, in that order) it reads each seed's ``train/results.json``,
``sample-*/results.json`` and ``eval-*/metrics.json`` (where ``repro run`` reused a seed's
stages from another experiment with the same run hash, there) and prints one Markdown row per
experiment: wall times per stage, NFE per sample, and each metric as mean ± spread (sample
standard deviation) over the seeds; then the floor row (real images in place of samples)
and the domain classifier's test accuracy. ``--img`` copies each experiment's first seed's
``grid.png`` there as ``<experiment>.png``. The evaluation stage's wall time is not in its
files: it is the time between its ``stage.json`` and its ``DONE`` marker. ``--write FILE``
replaces the text between FILE's ``<!-- results-table:begin -->`` and
``<!-- results-table:end -->`` lines with the table instead of printing it (``--block B``:
the ``results-table:B:begin`` / ``:end`` lines, for a second table in the same file).

Reads the run folders only through their documented layout (docs/architecture.md); no torch.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reports import stats

# metric key → (column title, format)
METRICS = (
    ("fid_domain", "FID (domain) ↓", "{:.2f}"),
    ("kid_domain", "KID (domain) ↓", "{:.4f}"),
    ("precision_domain", "precision ↑", "{:.3f}"),
    ("recall_domain", "recall ↑", "{:.3f}"),
    ("is_domain", "IS (domain) ↑", "{:.2f}"),
    ("fid_pixel_pca", "FID (pixel PCA) ↓", "{:.3f}"),
    ("class_coverage", "class coverage ↑", "{:.2f}"),
)


def _json(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text(encoding="utf-8"))


def _one(folder: Path, pattern: str) -> Path | None:
    found = sorted(p for p in folder.glob(pattern) if (p / "DONE").exists())
    return found[-1] if found else None


def _with_stages(seed_dir: Path, others: list[Path]) -> Path:
    """The seed folder that holds this seed's stages: its own, or, where `repro run` reused
    them (another experiment of the runs folder with the same run hash and seed: "train:
    reusing ..."), that one."""
    for d in [seed_dir, *others]:
        if (d / "train" / "results.json").exists() or _one(d, "eval-*") is not None:
            return d
    return seed_dir


def _linked_train(seed_dir: Path) -> Path | None:
    """The training a sample stage of this seed used (its stage.json's ``train``, recorded
    relative to the run folder) when the seed folder has none of its own."""
    for sample in sorted(seed_dir.glob("sample-*")):
        info = sample / "stage.json"
        if info.exists():
            rel = _json(info).get("train")
            if rel:
                t = (seed_dir.parent / rel).resolve()
                if (t / "results.json").exists():
                    return t
    return None


def read_seed(seed_dir: Path, others: list[Path] | None = None) -> dict[str, Any]:
    """Everything the table needs from one seed folder (missing stages are left out);
    ``others``: the same run hash and seed under other experiments, where reused stages live."""
    row: dict[str, Any] = {"seed": seed_dir.name.removeprefix("seed-")}
    seed_dir = _with_stages(seed_dir, others or [])
    env = seed_dir / "env.json"
    if env.exists():
        row["env"] = _json(env)
    train = seed_dir / "train"
    if not train.is_dir():  # reused from another run (another arm of the same training)
        train = _linked_train(seed_dir) or train
    if (train / "results.json").exists():
        t = _json(train / "results.json")
        row["train_s"] = float(t["seconds"])
        row["iterations"] = int(t["iterations"])
        if isinstance(t.get("init_hash"), str):
            row["init_hash"] = t["init_hash"]
    sample = _one(seed_dir, "sample-*")
    ev_dir = _one(seed_dir, "eval-*")
    # what computed each stage (the seed folder's env.json is rewritten whenever a run restarts)
    row["stage_envs"] = [
        _json(d / "env.json") for d in (train, sample, ev_dir) if d is not None and (d / "env.json").exists()
    ]
    if sample is not None:
        s = _json(sample / "results.json")
        row.update(sample_s=float(s["seconds"]), nfe=int(s["nfe_per_sample"]), samples=int(s["samples"]))
        if (sample / "grid.png").exists():
            row["grid"] = sample / "grid.png"
    ev = _one(seed_dir, "eval-*")
    if ev is not None:
        m = _json(ev / "metrics.json")
        row["metrics"] = {k: float(v) for k, v in m.items() if isinstance(v, (int, float))}
        row["protocol"] = m.get("protocol", {})
        row["eval_s"] = (ev / "DONE").stat().st_mtime - (ev / "stage.json").stat().st_mtime
        row["finished"] = (ev / "DONE").stat().st_mtime
    return row


def read_runs(runs: Path, experiments: list[str] | None = None) -> list[dict[str, Any]]:
    """One entry per experiment: its spec's description and its seeds' rows."""
    if not runs.is_dir():
        raise SystemExit(f"{runs}: no such runs folder (the --runs of `repro run`)")
    names = experiments or sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = []
    for name in names:
        runs_of = sorted((runs / name).glob("*/spec.json"))
        if not runs_of:
            raise SystemExit(f"no run of experiment {name!r} under {runs}")
        for spec_file in runs_of:
            spec = _json(spec_file)
            h = spec_file.parent.name
            seeds = [
                read_seed(d, sorted(p for p in runs.glob(f"*/{h}/{d.name}") if p != d))
                for d in sorted(spec_file.parent.glob("seed-*"))
            ]
            out.append({"experiment": name, "description": spec.get("description", ""), "seeds": seeds})
    return out


def _stat(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(statistics.stdev(values))}"


def _floor(v: Any, fmt: str) -> str:
    """A floor: one draw of real images (a number), or mean ± sd over several (a list)."""
    if v is None:
        return "–"
    st = stats.mean_sd(v if isinstance(v, list) else [v])
    return "–" if st is None else _floor_text(*st, fmt)


def _floor_text(mean: float, sd: float | None, n: int, fmt: str) -> str:
    """``mean ± sd (n draws)``, or the mean alone for one draw."""
    return fmt.format(mean) + (f" ± {fmt.format(sd)} ({n} draws)" if sd is not None and n > 1 else "")


def table(entries: list[dict[str, Any]]) -> str:
    head = ["method", "seeds", "iterations", "train s", "s/it", "NFE", "sample s", "eval s"]
    head += [title for _, title, _ in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    floor: dict[str, Any] | None = None
    classifier: dict[str, Any] | None = None
    for e in entries:
        seeds = e["seeds"]

        def col(k: str, seeds: list[dict[str, Any]] = seeds) -> list[Any]:
            return [s[k] for s in seeds if k in s]

        its = sorted(set(col("iterations")))
        per_it = [s["train_s"] / s["iterations"] for s in seeds if s.get("iterations")]
        cells = [
            f"`{e['experiment']}`",
            str(len(seeds)),
            ", ".join(map(str, its)) or "–",
            _stat(col("train_s"), "{:.0f}"),
            _stat(per_it, "{:.2f}"),
            ", ".join(map(str, sorted(set(col("nfe"))))) or "–",
            _stat(col("sample_s"), "{:.0f}"),
            _stat(col("eval_s"), "{:.0f}"),
        ]
        for key, _, fmt in METRICS:
            cells.append(_stat([s["metrics"][key] for s in seeds if key in s.get("metrics", {})], fmt))
        lines.append("| " + " | ".join(cells) + " |")
        for s in seeds:
            p = s.get("protocol", {})
            floor = floor or p.get("domain_floor")
            classifier = classifier or p.get("domain_classifier")
    drawn = _recorded_floors(entries)
    if floor or drawn:
        cells = ["floor: real images", "", "", "", "", "", "", ""]
        cells += [
            _floor_text(*drawn[k], fmt) if k in drawn else _floor((floor or {}).get(k), fmt)
            for k, _, fmt in METRICS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if drawn:
        n = next(iter(drawn.values()))[2]
        notes.append(
            f"Floor: the same metrics for as many real images as samples, against the same reference, "
            f"mean ± sd over {n} draws (recorded by the evaluation)."
        )
    elif floor:
        notes.append(f"Floor: {floor['what']} (the same metrics, the same reference).")
    if classifier:
        notes.append(
            f"Domain classifier `{classifier['arch']}` ({classifier['hash']}): trained on "
            f"{classifier['train_size']} training images, test accuracy "
            f"{100 * classifier['test_accuracy']:.2f}% on {classifier['test_size']} test images; "
            f"FID (domain) of the whole test split against the whole training split "
            f"{classifier['floor_fid_domain_test_vs_train']:.3f}; IS (domain) of the test split "
            f"{classifier['is_domain_test_split']:.2f}."
        )
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def _recorded_floors(entries: list[dict[str, Any]]) -> dict[str, tuple[float, float | None, int]]:
    """Per metric, the floor the evaluation recorded as ``<metric>_floor_mean/_sd/_n`` (real
    images at the run's sample count, several draws), from the first seed that has one."""
    out: dict[str, tuple[float, float | None, int]] = {}
    for key, _, _ in METRICS:
        for e in entries:
            for s in e["seeds"]:
                m = s.get("metrics", {})
                if f"{key}_floor_mean" in m and key not in out:
                    out[key] = (
                        m[f"{key}_floor_mean"],
                        m.get(f"{key}_floor_sd"),
                        int(m.get(f"{key}_floor_n", 1)),
                    )
    return out


def significance(
    entries: list[dict[str, Any]], alpha: float = stats.ALPHA, pairs: list[tuple[str, str]] | None = None
) -> str:
    """With several seeds: each method against the first row, per metric, tested as the report
    tests it (reports/stats.py): Welch's t-test over seeds taken as independent, the paired
    t-test where both record the same initial weights per seed (``init_hash``); the p-value and
    n shown, "significant" only at p < ``alpha``. ``pairs``: (base, other) experiment names to
    compare instead of every row against the first."""

    def seeds(e: dict[str, Any], key: str) -> tuple[list[float], list[str | None]]:
        have = [s for s in e["seeds"] if key in s.get("metrics", {})]
        return [s["metrics"][key] for s in have], [s.get("init_hash") for s in have]

    if len(entries) < 2 or any(len(seeds(e, METRICS[0][0])[0]) < 2 for e in entries):
        return ""
    by_name = {e["experiment"]: e for e in entries}
    if pairs:
        unknown = sorted({n for pair in pairs for n in pair} - set(by_name))
        if unknown:
            raise SystemExit(f"--pairs names experiments not in the table: {', '.join(unknown)}")
        todo = [(by_name[a], by_name[b]) for a, b in pairs]
    else:
        todo = [(entries[0], e) for e in entries[1:]]
    found: list[tuple[dict[str, Any], dict[str, Any], str, str, str, Any, float]] = []
    pairings = set()
    for base, e in todo:
        for key, title, fmt in METRICS:
            (a, ai), (b, bi) = seeds(base, key), seeds(e, key)
            c = stats.seed_test(a, b, alpha, ai, bi)
            if c.test and c.p is not None and math.isfinite(c.p):
                pairings.add(c.pairing)
                found.append((base, e, title, fmt, key, c, statistics.fmean(b) - statistics.fmean(a)))
    adjusted = stats.holm([f[5].p for f in found])
    lines, by_pair = [], {}
    for (base, e, title, fmt, _key, c, d), hp in zip(found, adjusted, strict=True):
        by_pair.setdefault((base["experiment"], e["experiment"]), []).append((title, fmt, c, d, hp))
    for (bname, ename), items in by_pair.items():
        parts, how = [], ""
        for title, fmt, c, d, hp in items:
            this = f"{c.test}, n = {c.n[0]} vs {c.n[1]}"
            how = how or this
            verdict = "significant" if hp < alpha else "not significant"
            parts.append(
                f"{title.rstrip(' ↑↓')} {'+' if d >= 0 else '−'}{fmt.format(abs(d))} ({verdict}), "
                f"p {stats.fmt_p(c.p)}, Holm p {stats.fmt_p(hp)}" + (f" ({this})" if this != how else "")
            )
        lines.append(f"- `{ename}` vs `{bname}`: " + "; ".join(parts) + f" ({how})")
    return (
        f"\nDifferences of the means over seeds, each tested at the {alpha:g} level; "
        f'{"; ".join(sorted(pairings))}. "Significant" after Holm\'s adjustment over all '
        f"{len(found)} tests below (family-wise error {alpha:g}); p is each test's own:\n\n"
        + "\n".join(lines)
        + "\n"
    )


def header(entries: list[dict[str, Any]]) -> str:
    envs = [v for e in entries for s in e["seeds"] for v in s.get("stage_envs", [])]
    envs = envs or [s["env"] for e in entries for s in e["seeds"] if "env" in s]
    if not envs:
        return ""
    first = min(envs, key=lambda v: v.get("time", ""))
    ends = [s["finished"] for e in entries for s in e["seeds"] if "finished" in s]
    span = ""
    if ends and first.get("time"):
        start = datetime.fromisoformat(first["time"]).timestamp()
        end = datetime.fromtimestamp(max(ends), tz=timezone.utc)
        span = (
            f" Wall time of the whole comparison, from the first stage's start to the last evaluation's "
            f"end ({end.strftime('%Y-%m-%dT%H:%M:%S%z')}, pauses and restarts included): "
            f"{(max(ends) - start) / 60:.1f} min."
        )
    commits = sorted(
        {(v.get("git_commit") or "?")[:10] + (" (dirty)" if v.get("git_dirty") else "") for v in envs}
    )
    return (
        f"Measured {first.get('time', '?')} on {first.get('platform', '?')}, device {first.get('device', '?')}, "
        f"torch {first.get('torch', '?')}, commit {', '.join(commits)}.{span}\n" + bit_identity(envs)
    )


# What decides bit-identity (docs/reproducibility.md): the same values here are needed for a
# rerun to repeat these numbers to the digit.
BIT_IDENTITY = (
    ("threads", "threads"),
    ("interop_threads", "inter-op threads"),
    ("cpu", "CPU"),
    ("cpu_capability", "CPU capability"),
    ("blas", "BLAS"),
    ("mkl", "MKL"),
    ("onednn", "oneDNN"),
    ("deterministic_algorithms", "deterministic algorithms"),
    ("gpu", "GPU"),
    ("cuda", "CUDA"),
    ("cudnn", "cuDNN"),
    ("world_size", "processes"),
    ("backend", "backend"),
)


def bit_identity(envs: list[dict[str, Any]]) -> str:
    """One line of the fields that decide bit-identity; a field whose runs differ lists each value."""
    parts = []
    for key, name in BIT_IDENTITY:
        vals = sorted({str(v.get(key)) for v in envs if key in v})
        if vals:
            parts.append(f"{name} {' | '.join(vals)}")
    return (
        ("Environment (what bit-identity needs, docs/reproducibility.md): " + "; ".join(parts) + ".\n")
        if parts
        else ""
    )


def all_finite(entries: list[dict[str, Any]]) -> bool:
    return all(
        s.get("metrics") and all(math.isfinite(v) for v in s["metrics"].values())
        for e in entries
        for s in e["seeds"]
    )


BEGIN, END = "<!-- results-table:begin -->", "<!-- results-table:end -->"


def markers(block: str = "") -> tuple[str, str]:
    """The marker lines of one table in a document: ``results-table`` or ``results-table:<block>``."""
    if not block:
        return BEGIN, END
    return f"<!-- results-table:{block}:begin -->", f"<!-- results-table:{block}:end -->"


def write_between(path: Path, text: str, block: str = "") -> None:
    begin, end = markers(block)
    doc = path.read_text(encoding="utf-8")
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} ... {end} lines to put the table between")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python docs/tools/results_table.py", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("runs", type=Path)
    ap.add_argument(
        "--experiments", default="", help="comma-separated, in table order (default: all, sorted)"
    )
    ap.add_argument("--img", type=Path, default=None, help="copy each experiment's first grid.png here")
    ap.add_argument(
        "--write", type=Path, default=None, help="put the table between FILE's results-table markers"
    )
    ap.add_argument(
        "--block",
        default="",
        help="with --write: the markers results-table:BLOCK:begin/end (several tables in one file)",
    )
    ap.add_argument(
        "--pairs",
        default="",
        help="comma-separated BASE:OTHER experiment pairs to test (default: every row against the first)",
    )
    a = ap.parse_args(argv)
    entries = read_runs(a.runs, [x for x in a.experiments.split(",") if x] or None)
    pairs = [tuple(p.split(":", 1)) for p in a.pairs.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("--pairs: BASE:OTHER,BASE:OTHER")
    text = header(entries) + "\n" + table(entries) + significance(entries, pairs=pairs or None)  # type: ignore[arg-type]
    if a.write is None:
        sys.stdout.write(text)
    else:
        write_between(a.write, text, a.block)
    if a.img is not None:
        a.img.mkdir(parents=True, exist_ok=True)
        for e in entries:
            grids = [s["grid"] for s in e["seeds"] if "grid" in s]
            if grids:
                shutil.copyfile(grids[0], a.img / f"{e['experiment']}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
