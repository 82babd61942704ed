"""`repro verify RUN [--stage S] [--steps N] [--batches K]`: recompute a run's stages from their
recorded inputs in a scratch folder and compare with what is on disk (ncsn_core/verify.py,
docs/reproducibility.md). Exit 0: bit-identical, or equal within the tolerance where the
environment differs (named); 1: a stage differs; 2: RUN is not a run, or a mistake in the options.

RUN is a run folder (``runs/<experiment>/<run-hash>``, every seed in it), one of its seed
folders or one of its stage folders. The spec is rebuilt from the run's spec.json alone (as
`.exp` text, compiled, and checked against the recorded hashes), so a runs folder copied from
another machine verifies without the files it was made from.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

_KINDS = {"train": "train", "sample": "sample", "eval": "evaluate"}  # a stage folder's kind → --stage


def _value(v: Any) -> str:
    """A spec.json value (:func:`ncsn_core.values.to_json`) as the language writes it."""
    if isinstance(v, dict):
        if set(v) == {"expr"}:
            return str(v["expr"])
        if set(v) == {"auto"}:
            return "auto"
        name = v.get("call", v.get("name"))
        if name is not None:
            params = v.get("params") or {}
            inner = ", ".join(f"{k} = {_value(x)}" for k, x in params.items())
            return f"{name}({inner})" if params else str(name)
        raise ValueError(f"unexpected value {v!r}")
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, str):
        return v if v in ("inf", "-inf", "nan") else json.dumps(v)
    raise ValueError(f"unexpected value {v!r}")


def exp_text(spec: dict[str, Any], seed: int) -> str:
    """A spec.json as an `.exp` experiment with every value written out (and ``seed``)."""
    from ncsn_core import schema

    lines = [f"experiment {spec['experiment']} {{", f"    seed = {int(seed)}"]
    for key in ("paper", "description"):
        if spec.get(key):
            lines.append(f"    {key} = {json.dumps(spec[key])}")
    for b in schema.BLOCKS:
        block = spec.get(b.name)
        if not isinstance(block, dict):
            continue
        lines.append(f"    {b.name} {block['name']} {{" if b.holds else f"    {b.name} {{")
        lines += [f"        {k} = {_value(x)}" for k, x in (block.get("params") or {}).items()]
        for child in (spec.get(b.child_field) or []) if b.child else []:
            lines.append(f"        {b.child} {child['name']} {{")
            lines += [f"            {k} = {_value(x)}" for k, x in (child.get("params") or {}).items()]
            lines.append("        }")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def spec_of_run(run_dir: Path, seed: int):  # type: ignore[no-untyped-def]
    """The RunSpec of a run folder for ``seed``, rebuilt from its spec.json and checked against
    the hashes recorded there."""
    from dsl.compiler import compile_file
    from dsl.errors import DiagnosticError
    from ncsn_core.errors import UserError

    try:
        from ncsn_core import layout

        recorded = layout.read_json(run_dir / "spec.json")  # bounded: the run may be anyone's
        text = exp_text(recorded, seed)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{run_dir / 'spec.json'}: cannot be read as a run's spec ({e})") from None
    with tempfile.TemporaryDirectory(prefix="repro-verify-spec-") as tmp:
        path = Path(tmp) / "spec.exp"
        path.write_text(text, encoding="utf-8")
        try:
            specs = compile_file(path)
        except DiagnosticError as e:
            raise UserError(
                f"{run_dir / 'spec.json'}: its settings do not compile with this version of repro "
                f"({e.render().splitlines()[0]})"
            ) from None
    spec = specs[0]
    want = {k: recorded.get(k) for k in ("hash", "train_hash", "select_hash", "sample_hash", "eval_hash")}
    got = {
        "hash": spec.hash(),
        "train_hash": spec.train_hash(),
        "select_hash": spec.select_hash() if spec.select is not None else None,
        "sample_hash": spec.sample_hash(),
        "eval_hash": spec.eval_hash(),
    }
    wrong = [f"{k} {want[k]} → {got[k]}" for k in want if want[k] != got[k]]
    if wrong or run_dir.name != spec.hash():
        raise UserError(
            f"{run_dir}: its spec.json rebuilt gives other hashes ({', '.join(wrong) or 'folder ' + run_dir.name}): "
            "this version of repro computes the run differently, so it cannot be verified here"
        )
    return spec


def locate(arg: Path, seed: int | None, stage: str | None) -> tuple[Path, list[Path], str | None]:
    """RUN → (the run folder, the seed folders to verify, the stage a stage folder implies)."""
    from ncsn_core.errors import UserError

    p = Path(arg)
    if (p / "stage.json").is_file() and (p.parent.parent / "spec.json").is_file():
        from ncsn_core import layout

        try:
            kind = str(layout.read_json(p / "stage.json").get("stage", ""))
        except (OSError, ValueError, AttributeError) as e:  # layout.DamagedFile is a ValueError
            raise UserError(f"{p / 'stage.json'}: cannot be read as a stage record ({e})") from None
        if kind not in _KINDS:
            raise UserError(
                f"{p}: a {kind or 'unknown'} stage; verify recomputes train, sample and eval stages"
            )
        if stage is not None and stage != _KINDS[kind]:
            raise UserError(f"{p} is a {kind} stage folder; --stage {stage} names another")
        return p.parent.parent, [p.parent], _KINDS[kind]
    if re.fullmatch(r"seed-\d+", p.name) and (p.parent / "spec.json").is_file():
        return p.parent, [p], stage
    if (p / "spec.json").is_file():
        seeds = sorted(
            (d for d in p.iterdir() if d.is_dir() and re.fullmatch(r"seed-\d+", d.name)),
            key=lambda d: int(d.name[5:]),
        )
        if seed is not None:
            seeds = [d for d in seeds if d.name == f"seed-{seed}"]
        if not seeds:
            have = "" if seed is None else f" seed-{seed}"
            raise UserError(f"{p}: no seed folder{have} in this run folder")
        return p, seeds, stage
    raise UserError(
        f"{p}: not a run folder (no spec.json), nor one of its seed-<k> or stage folders; "
        "give runs/<experiment>/<run-hash>"
    )


def verify_command(
    run: Path,
    stage: str | None = None,
    steps: int | None = None,
    batches: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    quiet: bool = False,
) -> tuple[int, list[str]]:
    """What `repro verify` does: (exit code, the lines it prints)."""
    from ncsn_core.errors import UserError
    from ncsn_core.verify import STAGES, verify_seed

    if stage is not None and stage not in STAGES:
        raise UserError(f"--stage must be train, sample or evaluate, not '{stage}'")
    for name, v in (("--steps", steps), ("--batches", batches), ("--threads", threads)):
        if v is not None and v < 1:
            raise UserError(f"{name} {v}: must be at least 1")
    run_dir, seeds, implied = locate(run, seed, stage)
    stage = stage or implied
    lines: list[str] = []
    failed = False
    for seed_dir in seeds:
        spec = spec_of_run(run_dir, int(seed_dir.name[5:]))
        verdicts = verify_seed(
            spec,
            seed_dir,
            stages=(stage,) if stage else STAGES,
            steps=steps,
            batches=batches,
            device=device,
            threads=threads,
            log=None if quiet else lambda m: typer.echo(m, err=True),
        )
        if stage and verdicts[0].result == "skipped":
            raise UserError(
                f"{seed_dir}: the {stage} stage is {verdicts[0].text.removeprefix('not verified ')}"
            )
        for v in verdicts:
            lines.append(f"{seed_dir.name} {v.line()}")
            failed |= v.failed
    return (1 if failed else 0), lines


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_(
        run: Annotated[
            Path,
            typer.Argument(help="a run folder (runs/<experiment>/<hash>), a seed or stage folder of one"),
        ],
        stage: Annotated[
            Optional[str],  # noqa: UP045 - typer needs Optional here
            typer.Option("--stage", help="only this stage: train, sample or evaluate (default: every one)"),
        ] = None,
        steps: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option("--steps", help="train: recompute only the first N steps"),
        ] = None,
        batches: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option("--batches", help="sample: recompute only the first K batches"),
        ] = None,
        seed: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option("--seed", help="only this seed of a run folder"),
        ] = None,
        device: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option("--device", help="default: the recorded device's kind if here, else cpu"),
        ] = None,
        threads: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option(
                "--threads", help="intra-op CPU threads (default: this process's; env.json has the run's)"
            ),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only the verdicts")] = False,
    ) -> None:
        """Recompute a run's stages from their recorded inputs (in a scratch folder) and compare."""
        from ncsn_core.errors import ReproError

        try:
            code, lines = verify_command(run, stage, steps, batches, seed, device, threads, quiet)
        except ReproError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        for line in lines:
            typer.echo(line)
        raise typer.Exit(code)
