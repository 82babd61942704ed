"""The Python API of repro: what the `repro` commands do, as functions returning values.

For notebooks and scripts; the command line (dsl/commands/) only formats what these return::

    from repro import api

    specs = api.check(["papers/ncsn_cifar10.exp"])           # RunSpecs; raises on any mistake
    specs = api.compile("papers/ncsn_cifar10.exp", sets=["train.iterations=100"])
    results = api.run("papers/ncsn_cifar10.exp", device="cpu", until="train")
    print(api.report("runs", format="text"))
    rows = api.ls("runs")                                      # one dict per run
    doc = api.diff("papers/a.exp:x", "papers/a.exp:y")          # settings and metric deltas

A mistake in the input raises :class:`dsl.errors.DiagnosticError` (a
:class:`ncsn_core.errors.UserError`; ``str(e)`` or ``e.render()`` is the compiler-style
message, ``e.diagnostics`` each mistake); a failed run raises a
:class:`ncsn_core.errors.RunError`. Nothing here imports torch until a run, a parameter
count or a cost needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from repro.prerequisites import preflight, prerequisites  # noqa: F401 - the API's names

DEFAULT_MAX_RUNS = 1000  # dsl.resolve.DEFAULT_MAX_RUNS (not imported here: keeps start-up light)
UNTIL = ("train", "select", "sample", "evaluate")
REPORT_FORMATS = ("md", "html", "tex", "json", "text")
LS_STATUSES = ("done", "running", "failed", "stale", "damaged")  # reports.runs.STATUSES


def check(
    files: Sequence[str | Path],
    *,
    sets: Sequence[str] = (),
    experiments: Sequence[str] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    warnings: list | None = None,
    multirun: bool = True,
) -> list:
    """Validate .exp files (syntax, names, types, ranges) without running anything or computing
    ``auto`` values. Returns the RunSpecs of every file; raises one DiagnosticError listing
    the mistakes of all files. Warnings are appended to ``warnings`` when given. A ``--set``
    with several values (``train.iterations=10,20``) checks every point unless
    ``multirun=False``."""
    from dsl.errors import DiagnosticError

    diags: list = []
    specs: list = []
    for f in files:
        try:
            specs += compile(
                f,
                experiments=experiments,
                sets=sets,
                compute_auto=False,
                warnings=warnings,
                max_runs=max_runs,
                multirun=multirun,
            )
        except DiagnosticError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise DiagnosticError(diags)
    return specs


def missing_released(specs: Sequence[Any]) -> dict[str, list[str]]:
    """Released checkpoints (``train.from``) the specs need that are not on disk: path → the
    experiments that need it (fine to check, needed to run; docs/released.md)."""
    from ncsn_core import released_files as released

    missing: dict[str, list[str]] = {}
    for spec in specs:
        w = spec.weights()
        if w is not None and released.file_sha256(released.file_path(w)) is None:
            missing.setdefault(str(w.kwargs()["path"]), []).append(spec.experiment)
    return missing


def compile(  # noqa: A001 - the command's name
    file: str | Path,
    *,
    sets: Sequence[str] = (),
    experiments: Sequence[str] | None = None,
    compute_auto: bool = True,
    max_runs: int = DEFAULT_MAX_RUNS,
    warnings: list | None = None,
    multirun: bool = False,
) -> list:
    """The RunSpecs of ``file``: canonical values (``spec.canonical()``), stage hashes, what
    each ``auto`` became (``compute_auto=False``: none computed, no torch imported). On a
    mistake the DiagnosticError's ``specs`` holds the experiments that did compile. A
    ``--set`` with several values sweeps only with ``multirun=True`` (``repro ... -m``)."""
    from dsl.compiler import compile_file

    return compile_file(
        file,
        experiments=experiments,
        sets=sets,
        compute_auto=compute_auto,
        warnings=warnings,
        max_runs=max_runs,
        multirun=multirun,
    )


def parameter_count(spec: Any) -> int:
    """The network's parameter count, built on the meta device from the data's declared shape
    (no dataset read or downloaded)."""
    from ncsn_core import registry
    from ncsn_core.networks import count_parameters

    shape = registry.lookup("data", spec.data.name).facts.shape(spec.data.kwargs())
    return count_parameters(spec.network.name, spec.network.kwargs(), shape, int(spec.noise.get("levels", 1)))


def check_until(until: str) -> None:
    """Refuse an ``until`` that is not a stage (a UserError, before anything is compiled)."""
    if until not in UNTIL:
        from dsl.errors import error

        raise error(None, f"--until must be train, select, sample or evaluate, not '{until}'")


def run(
    file: str | Path,
    *,
    sets: Sequence[str] = (),
    experiments: Sequence[str] | None = None,
    runs_dir: str | Path = "runs",
    device: str | None = None,
    until: str = "evaluate",
    wait: bool = True,
    max_runs: int = DEFAULT_MAX_RUNS,
    warnings: list | None = None,
    log: Callable[[str], None] | None = None,
    multirun: bool = False,
) -> list[tuple[Any, Any]]:
    """Train, sample and evaluate every run of ``file`` in this process, one after another,
    resuming what exists (every stage cached by its hash under ``runs_dir``); stop after
    ``until``. Returns (RunSpec, result) pairs. ``log`` receives one line per run of a sweep.
    Every missing prerequisite (dataset, Inception weights, released checkpoint) is reported
    at once before any work (:func:`prerequisites`).
    (Several GPUs or processes, SLURM: `repro run --gpus/--nproc/--launcher`, docs/scale.md.)"""
    check_until(until)
    specs = compile(
        file, sets=sets, experiments=experiments, max_runs=max_runs, warnings=warnings, multirun=multirun
    )
    preflight(specs, until)
    from dsl.parser import read_source

    return run_specs(
        specs,
        source_text=read_source(file),
        runs_dir=runs_dir,
        device=device,
        until=until,
        wait=wait,
        sets=sets,
        log=log,
    )


LABEL_VALUE_WIDTH = 24  # longer values are abbreviated in labels (…)


def short_value(text: str, width: int = LABEL_VALUE_WIDTH) -> str:
    """A value as a label shows it: spaces squeezed, cut to ``width`` characters with '…'."""
    t = " ".join(str(text).split()).replace(", ", ",").replace(" = ", "=")
    return t if len(t) <= width else t[: width - 1] + "…"


def point_label(experiment: str, sweep: Any = (), sets: Sequence[str] = ()) -> str:
    """`name[key=value,…]`: an experiment and its sweep point (``sweep``: (key, value text)
    pairs) and the single-valued ``--set`` values it was made with (``--use data=digits``,
    recorded as ``use:data=digits``, shows as `data=digits`), short values, long ones
    abbreviated; just `name` without either. The same label in `run`, `compile`, `ls`, `diff`."""
    from ncsn_core.layout import USE_PREFIX

    items = [(str(k), str(v)) for k, v in (sweep.items() if isinstance(sweep, dict) else sweep)]
    swept = {k for k, _ in items}
    for raw in sets:
        k, eq, v = str(raw).partition("=")
        k = k.strip()
        if k.startswith(USE_PREFIX):  # `--use data=digits`: `data=digits`
            k = k[len(USE_PREFIX) :].strip()
            if "," in v:  # several options: each run's option is in its sweep point
                continue
        if eq and k not in swept:
            items.append((k, v.strip()))
            swept.add(k)
    if not items:
        return experiment
    return experiment + "[" + ",".join(f"{k}={short_value(v)}" for k, v in items) + "]"


def run_label(spec: Any, sets: Sequence[str] = ()) -> str:
    """`name[key=value,…] seed k`: how a run of a sweep is named in progress lines."""
    return f"{point_label(spec.experiment, spec.sweep, sets)} seed {spec.seed}"


def run_specs(specs: Sequence[Any], **kwargs: Any) -> list[tuple[Any, Any]]:
    """Run compiled specs in this process (see :func:`run`), taking :func:`iter_runs`'s
    keywords (``source_text`` is kept in each run folder as source.exp, ``sets`` recorded as
    the run's overrides)."""
    return list(iter_runs(specs, **kwargs))


def iter_runs(
    specs: Sequence[Any],
    *,
    source_text: str,
    runs_dir: str | Path = "runs",
    device: str | None = None,
    until: str = "evaluate",
    wait: bool = True,
    sets: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    deterministic: bool | None = None,
    threads: int | None = None,
    keep_going: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """:func:`run_specs` one run at a time: yields (RunSpec, result) as each run finishes.
    ``deterministic`` (None: on for the CPU, off for CUDA) and ``threads`` as in
    :func:`ncsn_core.determinism.apply` (docs/reproducibility.md). ``keep_going``: a run that
    fails (a run error, exit code 1: a diverging loss, a non-positive-definite Ĉ…) is yielded
    as (RunSpec, the error) and the next run starts; input mistakes still stop at once."""
    from ncsn_core.errors import ReproError
    from ncsn_core.runner import run_spec

    for k, s in enumerate(specs):
        if len(specs) > 1 and log is not None:
            log(f"[{k + 1}/{len(specs)}] {run_label(s)}")
        try:
            out: Any = run_spec(
                s,
                runs_dir=Path(runs_dir),
                device=device or None,
                until=until,
                source_text=source_text,
                wait=wait,
                overrides=tuple(sets),
                deterministic=deterministic,
                threads=threads,
            )
        except ReproError as e:
            if not keep_going or e.exit_code != 1:
                raise
            out = e
        yield s, out


def report_format(format: str = "", out: str | Path | None = None, tty: bool = False) -> str:  # noqa: A002
    """The report format: ``format`` when given, else from ``out``'s suffix, else text on a
    terminal (``tty``), else md. A format that is not one of REPORT_FORMATS is a UserError."""
    if not format:
        suffix = {".html": "html", ".htm": "html", ".tex": "tex", ".json": "json", ".txt": "text"}
        if out is not None:
            format = suffix.get(Path(out).suffix, "md")
        else:
            format = "text" if tty else "md"
    if format not in REPORT_FORMATS:
        from dsl.errors import error

        raise error(None, f"--format must be md, html, tex, json or text, not '{format}'")
    return format


def papers_specs(papers: str | Path | None = None, log: Callable[[str], None] | None = None) -> list[dict]:
    """The canonical specs of every .exp file in ``papers`` (default: ./papers when present);
    a file that does not compile is skipped with a note to ``log``."""
    from dsl.errors import DiagnosticError

    expected: list[dict] = []
    folder = Path(papers) if papers is not None else (Path("papers") if Path("papers").is_dir() else None)
    if folder is not None:
        from dsl.compiler import compile_file

        for f in sorted(folder.glob("*.exp")):
            try:  # a broken file elsewhere must not hide the report
                expected += [s.canonical() for s in compile_file(f, compute_auto=False)]
            except DiagnosticError as e:
                if log is not None:
                    log(f"note: skipping {f} ({e.diagnostics[0].message})")
    return expected


def report(
    runs_dir: str | Path = "runs",
    *,
    format: str = "md",  # noqa: A002
    out: str | Path | None = None,
    papers: str | Path | None = None,
    tolerance: float = 0.10,
    show_all: bool = False,
    width: int = 100,
    log: Callable[[str], None] | None = None,
) -> str:
    """Reproduced numbers beside the published ones (md, html, tex, json or text), also written
    to ``out`` when given (atomically; a regular file there is replaced, a folder, FIFO or
    device refused before anything is read). ``papers``: a folder of .exp files whose published numbers are
    listed even if not run (default ./papers); ``tolerance``: the verdict's relative
    tolerance when a paper gives none."""
    from ncsn_core.io import safe_export_target
    from reports.reporter import report as render_report

    format = report_format(format, out)
    if out is not None:  # a report is regenerated: a regular file is replaced, anything else refused
        out = safe_export_target(out, force=True)
    expected = papers_specs(papers, log)
    return render_report(
        Path(runs_dir),
        format,
        None if out is None else Path(out),
        expected,
        tolerance,
        show_all=show_all,
        width=width,
    )


def compile_canonical(files: Sequence[str | Path], sets: Sequence[str] = ()) -> list[tuple[Path, Any, dict]]:
    """(file, resolved, canonical spec) of every experiment of ``files``; auto values computed
    only for the experiments that use them (their hashes depend on them)."""
    from dsl.check import check as check_resolved
    from dsl.resolve import load, resolve

    out = []
    for f in files:
        res = resolve(load(f), None, list(sets))
        plain = check_resolved(res, compute_auto=False)
        for r, s in zip(res, plain):
            spec = s
            if any(True for _ in _autos(s)):
                spec = check_resolved([r], compute_auto=True)[0]
            out.append((Path(f), r, spec.canonical()))
    return out


def _autos(spec: Any) -> Iterator[str]:
    from ncsn_core.values import AUTO

    for field in ("data", "noise", "network", "loss", "train", "sample", "evaluate"):
        b = getattr(spec, field)
        if b is not None:
            yield from (k for k, v in b.params if v is AUTO)
    for st in spec.stages:
        yield from (k for k, v in st.params if v is AUTO)


def ls(
    runs_dir: str | Path = "runs",
    *,
    file: str | Path | None = None,
    status: str | None = None,
    papers: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Every run under ``runs_dir`` as a dict: file, experiment, status (done / running /
    failed at a stage / stale against its file now / damaged: a folder that cannot be read
    safely, with why), hashes, key settings, metrics, age.
    ``file``: only the runs of this .exp file; ``status``: only runs with this status;
    ``papers``: where a run's source.exp is looked up (default ./papers). Files that do not
    compile now are noted to ``log``."""
    from dsl.errors import DiagnosticError, error
    from ncsn_core.layout import override_args
    from reports.reporter import collect
    from reports.runs import STATUSES, damaged_rows, find_source, ls_rows

    runs_dir = Path(runs_dir)
    file = None if file is None else Path(file)
    if status is not None and status not in STATUSES:
        raise error(None, f"--status must be one of {', '.join(STATUSES)}, not '{status}'")
    if file is not None and not file.is_file():
        raise error(None, f"--file {file}: no such file")
    if status == "damaged":
        return damaged_rows(runs_dir) if file is None else []
    folders = [file] if file is not None else [Path(papers) if papers else Path("papers")]
    files: dict[str, str] = {}
    needed: set[tuple[Path, tuple[str, ...]]] = set()  # (file, the --set values of a run made from it)
    runs = collect(runs_dir)
    from repro.invocations import files_by_run

    invoked = files_by_run(runs_dir)  # runs/.invocations/: the file each `repro run` ran
    for r in runs:
        f = find_source(r, folders)
        if f is None and file is None:  # --file: compared with that file only
            f = _invoked_file(r, runs_dir, invoked)
        if f is not None:
            files[str(r.path)] = str(f)
            needed.add((f, r.overrides))
    if file is not None:  # its runs may come from an earlier text of it: every run's --set values
        needed |= {(file, r.overrides) for r in runs} | {(file, ())}
    compiled: dict[object, list[dict]] = {}
    for f, sets in sorted(needed):
        try:
            for _, _, spec in compile_canonical([f], list(sets)):
                key = (str(spec["experiment"]), sets) if sets else str(spec["experiment"])
                compiled.setdefault(key, []).append(spec)
        except DiagnosticError as e:
            if log is not None:
                with_sets = f" with {override_args(sets)}" if sets else ""
                log(f"note: {f}{with_sets} does not compile now ({e.diagnostics[0].message})")
    rows = ls_rows(runs_dir, compiled, files)
    _point_labels(rows, {str(r.path): r.spec.get("sweep") for r in runs})
    if file is not None:
        names = {n if isinstance(n, str) else n[0] for n, specs in compiled.items() if specs}
        rows = [r for r in rows if r["experiment"] in names]
        for r in rows:
            r["file"] = r["file"] or str(file)
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    elif file is None:
        rows += damaged_rows(runs_dir)
    return rows


def _invoked_file(r: Any, runs_dir: Path, invoked: dict[str, str]) -> Path | None:
    """The .exp file an invocation record says made run ``r``, when its text is still the run's."""
    try:
        rel = str(Path(r.path).relative_to(runs_dir))
    except ValueError:
        return None
    f = invoked.get(rel)
    if not f or not Path(f).is_file():
        return None
    try:
        return Path(f) if Path(f).read_text(encoding="utf-8") == r.source else None
    except OSError:
        return None


def _sweep_items(sweep: Any) -> list[tuple[str, str]]:
    """A spec.json's ``sweep`` (a dict, or a list of pairs) as (key, value text) pairs."""
    if isinstance(sweep, dict):
        return [(str(k), str(v)) for k, v in sweep.items()]
    if isinstance(sweep, (list, tuple)):
        return [(str(p[0]), str(p[1])) for p in sweep if isinstance(p, (list, tuple)) and len(p) == 2]
    return []


def _point_labels(rows: list[dict], sweeps: dict[str, Any]) -> None:
    """Each row's label: `name[key=value,…]` from its sweep point and its --set values
    (overrides.json); runs that still share a label get their hash's first 8 characters."""
    for r in rows:
        r["label"] = point_label(r["experiment"], _sweep_items(sweeps.get(r["path"])), r["set"])
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    for r in rows:
        if seen[r["label"]] > 1 and r["hash"]:
            r["label"] += f" ({r['hash'][:8]})"


def _diff_side(arg: str, runs_dir: Path, sets: Sequence[str]) -> tuple[str, Any, Any, Any]:
    """A run folder (its spec.json), or FILE.exp[:experiment] compiled (with provenance)."""
    from dsl.errors import error
    from reports.reporter import collect
    from reports.runs import find_run, provenance

    p = Path(arg)
    if p.is_dir():
        recs = [r for r in collect(p) if r.path == p] or collect(p)
        if len(recs) != 1 or not recs[0].spec:
            raise error(None, f"{arg}: not a run folder (no spec.json)")
        return arg, recs[0].spec, None, recs[0]
    file, _, name = arg.partition(":")
    if not Path(file).is_file():
        raise error(None, f"{arg}: neither a run folder nor FILE.exp[:experiment]")
    pairs = compile_canonical([Path(file)], sets)
    if name:
        pairs = [x for x in pairs if x[2]["experiment"] == name]
    if not pairs:
        raise error(None, f"{arg}: no experiment '{name}' in {file}")
    if len({x[2]["experiment"] for x in pairs}) > 1 or len(pairs) > 1:
        names = ", ".join(dict.fromkeys(str(x[2]["experiment"]) for x in pairs))
        raise error(None, f"{arg}: {file} compiles to several runs ({names}); name one: {file}:NAME")
    _, res, spec = pairs[0]
    return arg, spec, provenance(res), find_run(runs_dir, spec)


def diff(
    a: str, b: str, *, runs_dir: str | Path = "runs", sets: Sequence[str] = (), runs: list | None = None
) -> dict:
    """The settings that differ between two runs or experiments (each a run folder or
    ``FILE.exp[:experiment]``), where each value came from, and the metric deltas (B − A) when
    both have a run folder (compiled files' runs are looked up under ``runs_dir``). ``runs``,
    when given, receives each side's run record (None: no run folder). Each side's
    ``label`` is `name[key=value,…]` (its sweep point and --set values)."""
    from reports.runs import diff_doc

    an, aspec, awhere, arun = _diff_side(a, Path(runs_dir), sets)
    bn, bspec, bwhere, brun = _diff_side(b, Path(runs_dir), sets)
    if runs is not None:
        runs[:] = [arun, brun]
    doc = diff_doc(an, aspec, bn, bspec, awhere, bwhere, arun, brun)
    for side, spec, where, rec in (("a", aspec, awhere, arun), ("b", bspec, bwhere, brun)):
        made = sets if where is not None else (getattr(rec, "overrides", ()) or ())
        doc[side]["label"] = point_label(str(spec.get("experiment")), _sweep_items(spec.get("sweep")), made)
    return doc
