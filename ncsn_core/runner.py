"""Run a RunSpec: train → sample → evaluate, each stage cached under its own hash.

Layout (:mod:`ncsn_core.layout`, docs/architecture.md): ``runs/<experiment>/<run-hash>/
seed-<k>/{train, sample-<h>, eval-<h>}``; a stage folder with a ``DONE`` file is complete and
reused. A training stage with the same train hash and seed anywhere under the runs folder is
reused too, so a sampler ablation never retrains and an evaluation change never resamples.
Every file is written atomically (:mod:`ncsn_core.io`), and every path written into the run
folder is relative to it, so a runs folder can be moved whole.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import ncsn_core
import ncsn_core.layout as layout
from ncsn_core import checkpoint as ckpt
from ncsn_core import distributed as dist
from ncsn_core import evaluation, progress, registry, released, released_files
from ncsn_core import io as atomic
from ncsn_core.errors import EvaluationError, ReproError, RunError, SamplerDiverged, UserError
from ncsn_core.evaluation.inpainting import with_sample_stage
from ncsn_core.images import save_grid, save_inpainting, save_strip
from ncsn_core.io import WriteError
from ncsn_core.lock import stage_lock
from ncsn_core.samplers import SampleContext, fast_network, on_level_end
from ncsn_core.spec import ComponentSpec, RunSpec, digest
from ncsn_core.training import Trainer, plain_progress

SELECT_SEED_OFFSET = 2  # the selection's samples (0: the sample stage's, 1: extra evaluation samples)


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


def _env(device: torch.device) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "repro": ncsn_core.__version__,
        "platform": platform.platform(),
        "device": str(device),
        # the hardware never enters a hash; it is recorded here (docs/scale.md)
        "world_size": dist.world(),
        "backend": dist.backend(),
        "devices": _devices(device),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _devices(device: torch.device) -> list[str]:
    """Every rank's device: ``cuda:<physical index>`` (CUDA_VISIBLE_DEVICES mapped) or cpu."""
    n = dist.world()
    if device.type != "cuda":
        return [str(device)] * n
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    first = (device.index or 0) if n == 1 else 0
    idx = [first + r for r in range(n)]
    return [f"cuda:{visible[i] if i < len(visible) else i}" for i in idx]


class RunsFolderNotWritable(UserError):
    """The runs folder (``--runs``) cannot be written at all (read-only, no permission)."""


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(folder, e) from None


def _write_json(path: Path, obj: Any) -> None:
    atomic.write_json(path, obj, default=str)


def _save_tensors(path: Path, obj: Any) -> None:
    atomic.write_with(path, lambda f: torch.save(obj, f))


def _open_stage(seed_dir: Path, kind: str, stage_hash: str, **meta: str) -> tuple[Path, bool]:
    """The stage folder ``<kind>-<hash>``: (folder, True) when complete, else created and
    described by stage.json, (folder, False)."""
    folder = layout.stage_dir(seed_dir, kind, stage_hash)
    if layout.is_complete_stage(folder, stage_hash):
        return folder, True
    _mkdir(folder)
    _write_json(folder / layout.STAGE, {"stage": kind, "hash": stage_hash, **meta})
    return folder, False


def _mark_done(folder: Path) -> None:
    atomic.write_text(folder / layout.DONE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


def _sample_count(sample_dir: Path) -> int | None:
    """How many samples a complete sample stage holds (its results.json), None if unknown."""
    try:
        return int(json.loads((sample_dir / layout.RESULTS).read_text())["samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_record(path: Path) -> str:
    """A file of the user cache as recorded in a run folder: ``<user cache>/<name>`` (the
    cache is per machine; the name is its content key)."""
    try:
        return (
            "<user cache>/" + Path(path).resolve().relative_to(layout.user_cache_dir().resolve()).as_posix()
        )
    except ValueError:
        return Path(path).name


@contextmanager
def _progress(label: str, total: int):  # type: ignore[no-untyped-def]
    """A rich progress bar on a terminal, plain periodic lines otherwise."""
    if sys.stderr.isatty() and not os.environ.get("CI"):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        ) as prog:
            task = prog.add_task(label, total=total, info="")
            t0 = [time.perf_counter(), 0]

            def update(step: int, total_: int, loss: float | None) -> None:
                now = time.perf_counter()
                rate = (step - t0[1]) / max(now - t0[0], 1e-9)
                t0[0], t0[1] = now, step
                prog.update(task, completed=step, info=f"loss {loss:.4g}  {rate:.1f} it/s")

            yield update
    else:
        yield plain_progress(label)


class Run:
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

    # ---- stages
    def write_meta(self) -> None:
        if not dist.is_main():
            return
        _mkdir(self.seed_dir)
        _write_json(self.dir / layout.SPEC, self.spec.canonical() | {"seed": None})
        if self.source_text and not (self.dir / layout.SOURCE).exists():
            atomic.write_text(self.dir / layout.SOURCE, self.source_text)
        if self.overrides and not (self.dir / layout.OVERRIDES).exists():  # for `repro ls`'s stale check
            _write_json(self.dir / layout.OVERRIDES, list(self.overrides))
        _write_json(self.seed_dir / layout.ENV, _env(self.device))

    @contextmanager
    def locked(self, kind: str):  # type: ignore[no-untyped-def]
        """Hold the lock of this run's ``kind`` stage folder while computing it
        (:mod:`ncsn_core.lock`): a concurrent run of the same stage waits, then reuses it."""
        applies, h = {
            layout.TRAIN: (self.spec.trains, ""),
            layout.SELECT: (self.spec.select is not None and self.spec.trains, self.spec.select_hash),
            layout.SAMPLE: (self.spec.sample is not None, self.spec.sample_hash),
            layout.EVAL: (self.spec.evaluate is not None, self.spec.eval_hash),
        }[kind]
        if not applies:
            yield
            return
        folder = layout.stage_dir(self.seed_dir, kind, h() if callable(h) else h)
        if not dist.active():
            with stage_lock(folder, wait=self.wait, log=self.log), self._shared_train_lock(kind):
                yield
            return
        # Data-parallel: rank 0 holds the lock for the group; every rank starts the stage
        # after it has it and leaves it after every rank is done (files written by rank 0).
        if dist.is_main():
            with stage_lock(folder, wait=self.wait, log=self.log), self._shared_train_lock(kind):
                dist.barrier()
                yield
                dist.barrier()
        else:
            dist.barrier()
            yield
            dist.barrier()

    @contextmanager
    def _shared_train_lock(self, kind: str):  # type: ignore[no-untyped-def]
        """For the train stage, also the lock of its train hash (:func:`layout.train_lock_stage`):
        concurrent runs of a sweep sharing the training stage train it once."""
        if kind != layout.TRAIN or self.find_trained() is not None:
            yield
            return
        h = self.spec.train_hash()

        def log(msg: str) -> None:
            if msg.startswith("waiting for"):
                self.log(f"train: waiting for another run training the same train stage ({h})…")

        with stage_lock(layout.train_lock_stage(self.runs_dir, h, self.spec.seed), wait=self.wait, log=log):
            yield

    def record(self, path: Path) -> str:
        """``path`` as recorded in this run's files: relative to the run folder."""
        return layout.record(path, self.dir)

    # ---- stage lookup across the runs folder (issue 16.1)
    def find_stage(self, kind: str, stage_hash: str) -> Path | None:
        """A complete ``kind`` stage with this hash and seed: this run's own, else the first
        anywhere under the runs folder (another experiment, another run of a sweep). The one
        lookup of every stage kind: equal hashes are equal work."""
        own = layout.stage_dir(self.seed_dir, kind, stage_hash)
        if layout.is_complete_stage(own, stage_hash):
            return own
        for folder in layout.stage_dirs_anywhere(self.runs_dir, self.spec.seed, kind, stage_hash):
            if layout.is_complete_stage(folder, stage_hash):
                return folder
        return None

    def _reused(self, kind: str, found: Path, stage_hash: str) -> None:
        """Say, once, which stage of another run is reused (its path under the runs folder)."""
        if found != layout.stage_dir(self.seed_dir, kind, stage_hash):
            where = layout.record(found, self.dir).removeprefix("../../")
            self.log(f"{kind}: reusing {where} (same {kind} hash {stage_hash}, seed {self.spec.seed})")

    def find_trained(self) -> Path | None:
        """A complete train stage with this train hash and seed anywhere under runs/."""
        return self.find_stage(layout.TRAIN, self.spec.train_hash())

    def train(self) -> Path | None:
        if not self.spec.trains:
            return None
        found = self.find_trained()
        if found is not None:
            self._reused(layout.TRAIN, found, self.spec.train_hash())
            return found
        folder = layout.stage_dir(self.seed_dir, layout.TRAIN)
        main = dist.is_main()
        if main:
            _mkdir(folder)
            _write_json(folder / layout.STAGE, {"stage": layout.TRAIN, "hash": self.spec.train_hash()})
        if self.spec.weights() is not None:  # a released checkpoint instead of training (issue 17)
            if main:
                released.import_into(self, folder)
                _mark_done(folder)
            return folder
        torch.manual_seed(self.spec.seed)  # network initialisation
        assert self.spec.train is not None and self.spec.loss is not None
        s = self.spec.train.kwargs()
        trainer = Trainer(
            model=self.network(),
            loss=build("loss", self.spec.loss),
            noise=self.noise(),
            data=self.data,
            optimizer_factory=build("optimizer", s["optimizer"]),
            settings=s,
            seed=self.spec.seed,
            device=self.device,
            folder=folder,
        )
        start = trainer.resume()
        if start:
            self.log(f"train: resuming from step {start}")
        t0 = time.perf_counter()
        with _progress(f"train {self.spec.experiment}", s["iterations"]) as prog:
            trainer.progress = prog
            result = trainer.train()
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result["resumed_from"] = start
        if dist.active():
            result["world_size"] = dist.world()
        if main:
            _write_json(folder / layout.RESULTS, result)
            _mark_done(folder)
        return folder

    def load_model(self, train_dir: Path | None, use_ema: bool, which: Any) -> tuple[Any, dict[str, Any]]:
        if train_dir is None:
            return None, {}
        ckdir = layout.checkpoints_dir(train_dir)
        cks = ckpt.list_checkpoints(ckdir)
        if not cks:
            raise ReproError(f"no checkpoint in {ckdir}; run the train stage first")
        if which == "best":  # the checkpoint the select stage chose
            which = self.chosen_step()
        if which == "last":
            step, path = cks[-1]
        else:
            match = [c for c in cks if c[0] == which]
            if not match:
                raise ReproError(
                    f"sample.checkpoint = {which}: no such checkpoint in {ckdir} "
                    f"(kept: {', '.join(str(c[0]) for c in cks)})"
                )
            step, path = match[0]
        self.log(f"sampling: loading {layout.record(path, self.dir).removeprefix('../../')} (step {step})")
        st = ckpt.load(path, map_location=self.device)
        model = self.network().to(self.device)
        weights = st["ema"] if (use_ema and st.get("ema") is not None) else st["model"]
        model.load_state_dict(weights)
        model.eval()
        noise = self.noise()
        noise.load_state_dict(st["noise"])  # ANSN: the covariance learned in training
        return model, {
            "checkpoint": self.record(path),
            "step": step,
            "ema": bool(use_ema and st.get("ema") is not None),
        }

    def draw(
        self,
        model: Any,
        n: int,
        seed_offset: int,
        record: bool,
        shards: Path,
        batch_size: int | None = None,
        label: str = "sampling",
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """Run init + stages for n samples in batches; returns samples (CPU, on rank 0; None on
        other ranks) and info.

        Batch ``k`` draws from its own generator seeded by (seed, seed_offset, k)
        (:func:`ncsn_core.distributed.batch_seed`; batch 0 as the one generator of old), so a
        sample depends on its global index only: the batches go to the ranks round-robin and
        their union is the one-process result whatever the process count. Each batch is
        written to ``shards`` as it finishes; batches already there are not drawn again.
        """
        assert self.spec.sample is not None
        s = self.spec.sample.kwargs()
        noise = self.noise()
        init = build("init", s["init"])
        stages = [(st.name, build("stage", st)) for st in self.spec.stages]
        mixture = getattr(self.data, "mixture", None)
        bs = batch_size or s["batch_size"]
        n_batches = math.ceil(n / bs)
        t0 = time.perf_counter()
        drawn = 0

        # noise adaptive with output = preconditioned: the network gives Ĉs, the score is Ĉ⁻¹ of it
        converts = bool(getattr(noise, "preconditioned_output", False))

        def score(x: torch.Tensor, i: int) -> torch.Tensor:
            out = output(x, i)
            return noise.score_of(out, i) if converts else out

        def output(x: torch.Tensor, i: int) -> torch.Tensor:  # the network's output (not always the score)
            if model is None:
                raise ReproError(
                    "this experiment has no network; its sampler stages must use the exact score"
                )
            idx = torch.full((x.shape[0],), int(i) % noise.num_levels, device=x.device, dtype=torch.long)
            return net(x, idx)

        # speed settings (not hashed): bf16 autocast, a compiled / CUDA-graph score step
        net = (
            None
            if model is None
            else fast_network(model, s.get("precision", "fp32"), s.get("compile", "off"), self.device)
        )
        _mkdir(shards)
        mine = list(dist.my_batches(n_batches))
        bar = progress.Bar(label, sum(min(bs, n - k * bs) for k in mine), unit="samples")
        where = {"batch": 0, "stage": 0, "done": 0, "b": 0}

        def level_end(stage_name: str, i: int, levels: int) -> None:  # after the level's host sync
            part = (where["stage"] + (i + 1) / max(levels, 1)) / max(len(stages), 1)
            bar.update(
                where["done"] + where["b"] * part,
                f"batch {where['batch'] + 1}/{len(mine)} · {stage_name} level {i + 1}/{levels}",
            )

        with torch.inference_mode(), on_level_end(level_end), bar:
            for pos, k in enumerate(mine):
                where["batch"] = pos
                shard = layout.shard_file(shards, k)
                if shard.exists():
                    where["done"] += min(bs, n - k * bs)
                    continue
                gen = torch.Generator(device=self.device).manual_seed(
                    dist.batch_seed(self.spec.seed, seed_offset, k)
                )
                lo = k * bs
                b = min(bs, n - lo)
                where["b"] = b
                x = init(b, tuple(self.data.shape), gen, self.device, self.data)
                intermediates: dict[str, list[torch.Tensor]] = {}

                def rec(
                    name: str, x_: torch.Tensor, first: bool = k == 0, into: dict = intermediates
                ) -> None:
                    if first and record:
                        into.setdefault(name, []).append(x_[:8].detach().cpu())

                for j, (name, stage) in enumerate(stages):
                    where["stage"] = j
                    ctx = SampleContext(
                        score=score,
                        noise=noise,
                        generator=gen,
                        record=rec,
                        exact_score=None if mixture is None else mixture.score,
                        data=self.data,
                        stage_name=name,
                        first_index=lo,
                        seed=self.spec.seed,
                        output=output if converts else None,
                    )
                    try:
                        x = stage.run(x, ctx)
                    except SamplerDiverged as e:  # named with the run, the seed and the samples
                        raise SamplerDiverged(
                            f"sampling {self.spec.experiment} (seed {self.spec.seed}, samples {lo}–{lo + b} "
                            f"of {n}): {e} No samples were written and the stage is not marked done."
                        ) from None
                shard_data: dict[str, Any] = {"x": x.detach().cpu(), "intermediates": intermediates}
                for _, stage in stages:
                    if hasattr(stage, "rows_of_call"):  # inpainting: what this batch used, by image
                        shard_data["inpainting"] = stage.rows_of_call()
                        shard_data["inpainting_repeats"] = stage.repeats
                _save_tensors(shard, shard_data)
                drawn += 1
                where["done"] += b
        dist.barrier()
        L = noise.num_levels
        info = {
            "samples": n,
            "seconds": round(time.perf_counter() - t0, 3),
            "nfe_per_sample": sum(st.nfe(L) for _, st in stages),
            "device": str(self.device),
        }
        if dist.active():
            info["world_size"] = dist.world()
        if not dist.is_main():
            return None, {"info": info, "intermediates": {}}
        parts = [torch.load(layout.shard_file(shards, k), weights_only=True) for k in range(n_batches)]
        if drawn < n_batches and not dist.active():
            self.log(f"sample: {n_batches - drawn} of {n_batches} batches were already drawn; drew the rest")
        extra = {"info": info, "intermediates": parts[0]["intermediates"]}
        rows = {r: v for p in parts for r, v in p.get("inpainting", {}).items()}  # stage inpainting
        if rows:  # its reference images and masks, one row per image (NCSN Fig. 6), from every shard
            keys = sorted(rows)
            extra["inpainting"] = {
                "reference": torch.stack([rows[r][0] for r in keys]),
                "mask": torch.stack([rows[r][1] for r in keys]),
                "repeats": int(parts[0]["inpainting_repeats"]),
            }
        return torch.cat([p["x"] for p in parts]), extra

    # ---- checkpoint selection (schema `select`; issue 11.6): between train and sample
    def select_dir(self) -> Path:
        return layout.stage_dir(self.seed_dir, layout.SELECT, self.spec.select_hash())

    def chosen_step(self) -> int:
        """The step the select stage chose (``sample.checkpoint = best``)."""
        path = self.select_dir() / layout.SELECTION
        if self.spec.select is None:
            raise UserError("sample.checkpoint = best needs a select block")
        try:
            chosen = json.loads(path.read_text(encoding="utf-8"))["best"]["step"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RunError(
                f"sample.checkpoint = best: the select stage has not chosen a checkpoint ({path} is "
                "missing or incomplete); run the experiment again to finish it"
            ) from None
        return int(chosen)

    def candidates(self, train_dir: Path) -> list[int]:
        """The kept checkpoints the select block's from/to/every admit, by step."""
        assert self.spec.select is not None
        sel = self.spec.select.kwargs()
        lo, hi, every = sel.get("from"), sel.get("to"), sel.get("every")
        steps = [step for step, _ in ckpt.list_checkpoints(layout.checkpoints_dir(train_dir))]
        return [
            st
            for st in steps
            if (lo is None or st >= lo) and (hi is None or st <= hi) and (every is None or st % every == 0)
        ]

    def select(self, train_dir: Path | None) -> Path | None:
        """Sample ``select.samples`` images from each candidate checkpoint with the sample block's
        init and stages (the same seeds for every candidate), score them by ``select.metric`` and
        write ``selection.json`` with the best. Each candidate's record is written atomically as
        it finishes, so a killed selection redoes only the candidates without one."""
        if self.spec.select is None or train_dir is None or self.spec.sample is None:
            return None
        h = self.spec.select_hash()
        main = dist.is_main()
        if main:
            _open_stage(self.seed_dir, layout.SELECT, h, train=self.record(train_dir))
        dist.barrier()
        folder = layout.stage_dir(self.seed_dir, layout.SELECT, h)
        if layout.is_complete_stage(folder, h):
            return folder
        sel = self.spec.select.kwargs()
        metric = sel["metric"]
        output = registry.lookup("metric", metric.name).facts.outputs[0]
        steps = self.candidates(train_dir)
        if not steps:
            kept = [st for st, _ in ckpt.list_checkpoints(layout.checkpoints_dir(train_dir))]
            raise RunError(
                f"select: no kept checkpoint in {layout.checkpoints_dir(train_dir)} is between "
                f"select.from and select.to at a multiple of select.every (kept: "
                f"{', '.join(map(str, kept)) or 'none'}); set train.keep_every to keep the candidates"
            )
        e = self.spec.evaluate.kwargs() if self.spec.evaluate is not None else {}
        settings = {k: e[k] for k in ("reference", "inception_weights", "cache") if k in e}
        settings |= {"samples": sel["samples"], "batch_size": sel["batch_size"]}
        use_ema = self.spec.sample.get("use_ema", True)
        n = sel["samples"]
        self.log(f"select: {len(steps)} candidate checkpoints, {metric.name} on {n} samples each")
        for step in steps:
            record = layout.candidate_file(folder, step)
            if record.exists():
                continue  # evaluated before the stage was interrupted
            t0 = time.perf_counter()
            model, minfo = self.load_model(train_dir, use_ema, step)
            shards = layout.candidate_shards(folder, step)
            rec: dict[str, Any] = {"step": step, "metric": output.key, "samples": n}
            try:
                x, _ = self.draw(
                    model, n, SELECT_SEED_OFFSET, record=False, shards=shards, batch_size=sel["batch_size"]
                )
                if main:
                    assert x is not None
                    m = evaluation.evaluate(
                        (metric,),
                        x,
                        self.data,
                        settings=settings,
                        run_key=f"{h}-{step}",
                        cache_dir=layout.cache_dir(self.runs_dir),
                        device=self.device,
                    )
                    rec["value"] = float(m[output.key])
            except (SamplerDiverged, EvaluationError) as exc:  # a diverging early checkpoint loses
                rec["value"], rec["error"] = None, str(exc)
            rec |= {"seconds": round(time.perf_counter() - t0, 3), "ema": minfo["ema"]}
            if main:
                _write_json(record, rec)
                shutil.rmtree(shards, ignore_errors=True)
                shown = "failed" if rec["value"] is None else f"{rec['value']:.4g}"
                self.log(f"select: step {step}: {output.key} {shown} ({rec['seconds']}s)")
            dist.barrier()
        if main:
            records = [
                json.loads(layout.candidate_file(folder, st).read_text(encoding="utf-8")) for st in steps
            ]
            scored = [r for r in records if r.get("value") is not None]
            if not scored:
                raise RunError(f"select: no candidate checkpoint could be scored ({records[0].get('error')})")
            sign = 1.0 if output.better == "lower" else -1.0
            best = min(scored, key=lambda r: (sign * r["value"], r["step"]))
            _write_json(
                folder / layout.SELECTION,
                {
                    "metric": output.key,
                    "better": output.better,
                    "samples": n,
                    "candidates": records,
                    "best": {"step": best["step"], "value": best["value"]},
                    "seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
                },
            )
            _mark_done(folder)
            self.log(f"select: step {best['step']} has the best {output.key} ({best['value']:.4g})")
        dist.barrier()
        return folder

    def sample(self, train_dir: Path | None) -> Path | None:
        if self.spec.sample is None:
            return None
        main = dist.is_main()
        h = self.spec.sample_hash()
        found = self.find_stage(layout.SAMPLE, h)  # this run's, or an equal one of another run
        if found is not None:
            self._reused(layout.SAMPLE, found, h)
            return found
        if main:
            _open_stage(
                self.seed_dir,
                layout.SAMPLE,
                h,
                train="" if train_dir is None else self.record(train_dir),
            )
        dist.barrier()
        folder = layout.stage_dir(self.seed_dir, layout.SAMPLE, h)
        if layout.is_complete_stage(folder, h):
            return folder
        s = self.spec.sample.kwargs()
        model, minfo = self.load_model(train_dir, s["use_ema"], s["checkpoint"])
        shards = layout.shards_dir(folder)
        x, extra = self.draw(model, s["samples"], 0, record=True, shards=shards)
        if not main:
            return folder
        assert x is not None
        _save_tensors(folder / layout.SAMPLES, x)
        save_grid(x, self.data, folder / layout.GRID)
        if extra["intermediates"]:
            inter = {k: torch.stack(v) for k, v in extra["intermediates"].items()}
            _save_tensors(folder / layout.INTERMEDIATES, inter)
            save_strip(inter, self.data, folder / layout.STRIP)
        if "inpainting" in extra:  # stage inpainting: its reference images and masks, Fig. 6's rows
            used = extra["inpainting"]
            _save_tensors(folder / layout.INPAINTING, used)
            save_inpainting(x, used, folder / layout.INPAINTING_FIGURE)
        _write_json(folder / layout.RESULTS, {**extra["info"], **minfo})
        _mark_done(folder)
        shutil.rmtree(shards, ignore_errors=True)  # every batch is in samples.pt now
        self.log(f"sample: {s['samples']} samples in {extra['info']['seconds']}s → {folder / layout.GRID}")
        return folder

    def evaluation_samples(self, train_dir: Path | None, sample_dir: Path, n: int) -> tuple[Any, Path]:
        """The ``n`` samples to evaluate (rank 0; None elsewhere) and the file they come from:
        the sample stage's own when it has at least ``n`` (its first ``n``: a smaller evaluation
        never resamples), else ``n`` samples drawn once for evaluation, cached as
        ``evalsamples-<key>.pt`` and found by that key anywhere under the runs folder."""
        main = dist.is_main()
        stage_file = sample_dir / layout.SAMPLES
        kept = _sample_count(sample_dir)
        if kept is not None and n <= kept:
            x = torch.load(stage_file, weights_only=True)[:n] if main else None
            if n < kept:
                self.log(f"evaluate: on the first {n} of the {kept} samples of the sample stage")
            return x, stage_file
        key = digest([self.spec.sample_hash(), n])
        cache = layout.eval_samples_file(self.seed_dir, key)
        for other in [cache, *layout.eval_samples_anywhere(self.runs_dir, self.spec.seed, key)]:
            if other.exists():
                if other != cache:
                    self.log(f"evaluate: reusing {layout.record(other, self.dir).removeprefix('../../')} "
                             f"({n} evaluation samples of sample hash {self.spec.sample_hash()})")  # fmt: skip
                return (torch.load(other, weights_only=True) if main else None), other
        s = self.spec.sample.kwargs() if self.spec.sample else {}
        model, _ = self.load_model(train_dir, s["use_ema"], s["checkpoint"])
        x, _ = self.draw(
            model, n, 1, record=False, shards=layout.shards_dir(cache), label="evaluation samples"
        )
        if main:
            _save_tensors(cache, x)
            shutil.rmtree(layout.shards_dir(cache), ignore_errors=True)
        return x, cache

    def evaluate(self, train_dir: Path | None, sample_dir: Path | None) -> Path | None:
        if self.spec.evaluate is None or sample_dir is None:
            return None
        h = self.spec.eval_hash()
        main = dist.is_main()
        found = self.find_stage(layout.EVAL, h)
        if found is not None:
            self._reused(layout.EVAL, found, h)
            return found
        if main:
            _open_stage(self.seed_dir, layout.EVAL, h, samples_from=self.record(sample_dir))
        dist.barrier()
        folder = layout.stage_dir(self.seed_dir, layout.EVAL, h)
        e = self.spec.evaluate.kwargs()
        x, source = self.evaluation_samples(train_dir, sample_dir, e["samples"])
        if not main:  # the metrics are computed by rank 0 on the gathered samples
            return folder
        metrics = evaluation.evaluate(
            self.spec.evaluate.get("metrics"),
            x,
            self.data,
            settings=with_sample_stage(e, self.spec, sample_dir),
            run_key=h,
            cache_dir=layout.user_cache_dir(),
            device=self.device,
        )
        trained = {}
        if train_dir is not None and (train_dir / layout.RESULTS).exists():
            trained = json.loads((train_dir / layout.RESULTS).read_text())
        protocol = metrics.setdefault("protocol", {})
        protocol["iterations_trained"] = trained.get("iterations")
        if trained.get("weights"):  # "released checkpoint <file> (sha256 …, format …)"
            protocol["weights"] = trained["weights"]
        protocol["samples_from"] = self.record(source)  # which samples (issue 16.1)
        protocol["samples_used"] = int(x.shape[0])
        classifier = protocol.get("domain_classifier")
        if isinstance(classifier, dict) and classifier.get("file"):  # in the user cache
            classifier["file"] = _cache_record(Path(classifier["file"]))
        _write_json(folder / layout.METRICS, metrics)
        _mark_done(folder)
        return folder


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
) -> str:
    """Execute one run; returns a one-line summary. Raises ReproError subclasses for
    problems the user can fix. Each stage is computed under its lock; ``wait=False`` stops
    with :class:`~ncsn_core.lock.StageBusy` instead of waiting for another process's."""
    if spec.weights() is not None:  # a missing released checkpoint stops the run before anything
        released_files.preflight(spec)
    r = Run(spec, Path(runs_dir), device, source_text, quiet, wait, overrides)
    if spec.evaluate is not None and until == "evaluate":
        # Fail before any training or sampling when, e.g., Inception weights are missing.
        evaluation.preflight(spec.evaluate.get("metrics"), with_sample_stage(spec.evaluate.kwargs(), spec))
    if spec.select is not None and spec.trains and until != "train":  # its metric too (Inception weights)
        e = spec.evaluate.kwargs() if spec.evaluate is not None else {}
        evaluation.preflight((spec.select.get("metric"),), {k: v for k, v in e.items() if k != "samples"})
    try:
        r.write_meta()
    except WriteError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise RunsFolderNotWritable(
                f"the runs folder {runs_dir} cannot be written ({e}); make it writable or choose "
                f"another with --runs"
            ) from None
        raise
    with progress.reporting(r.log):  # sampling's and evaluation's progress lines (quiet: none)
        with r.locked(layout.TRAIN):
            train_dir = r.train()
        if until == "train":
            return f"trained → {train_dir}"
        with r.locked(layout.SELECT):
            select_dir = r.select(train_dir)
        if until == "select":
            return f"selected → {select_dir}"
        with r.locked(layout.SAMPLE):
            sample_dir = r.sample(train_dir)
        if until == "sample":
            return f"sampled → {sample_dir}"
        with r.locked(layout.EVAL):
            eval_dir = r.evaluate(train_dir, sample_dir)
    if eval_dir is not None:
        m = json.loads((eval_dir / layout.METRICS).read_text())
        nums = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
        return f"{nums} → {eval_dir}"
    return f"done → {sample_dir or train_dir or r.seed_dir}"
