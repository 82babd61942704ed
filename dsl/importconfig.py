"""`repro import-config`: an official NCSN / NCSNv2 YAML config → an `.exp` file.

The configs of ermongroup/ncsn (``--from ncsn``: configs/anneal.yml, baseline.yml,
scorenet.yml, toy.yml) and ermongroup/ncsnv2 (``--from ncsnv2``: configs/cifar10.yml,
celeba.yml, church.yml, bedroom.yml, tower.yml, ffhq.yml, ncsn_original.yml) are read with
PyYAML's safe composer (nothing in the file is executed or constructed beyond plain
scalars) so every key keeps its line. Each setting becomes a value of the experiment with
its YAML key in a comment, or, where repro has no counterpart (``ngpu``, ``num_workers``,
the ``test`` section, ...), a comment saying why it has none. An unknown key, a value of the
wrong type, or a setting repro cannot run (``logit_transform: true``, ``spec_norm: true``)
is an error at its line; all errors of a file are reported together.

The mapping follows docs/fidelity.md (docs/import-config.md lists it): the official
``step_lr`` is ε/2 of Alg. 1, ``n_iters`` = 200001 trains 200,000 kept iterations (the
official loop returns before saving step n_iters), the NCSN runners' sampler constants are
written out, NCSNv2's ``fast_fid`` sweep becomes a ``select`` block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dsl.ast import Pos
from dsl.errors import Diagnostic, DiagnosticError, error
from dsl.importconfig_read import (  # noqa: F401
    _DATASETS,
    _LSUN,
    _PAPER,
    CHECKPOINT_CHOICES,
    NETWORKS,
    RUNNERS,
    SOURCES,
    Block,
    _Item,
    num,
    read_config,
)
from dsl.importconfig_runners import _RunnerMappings


class _Importer(_RunnerMappings):
    def __init__(
        self,
        items: dict[str, _Item],
        source: str,
        file: str,
        runner: str | None,
        checkpoint: str,
        network: str | None,
    ) -> None:
        self.items, self.source, self.file = items, source, file
        self.runner, self.checkpoint_choice, self.network_choice = runner, checkpoint, network
        self.diags: list[Diagnostic] = []
        self.used: set[str] = set()
        self.notes: list[str] = []  # experiment-level notes (settings with no counterpart)

    # ---- reading values
    def item(self, key: str) -> _Item | None:
        it = self.items.get(key)
        if it is not None:
            self.used.add(key)
        return it

    def c(self, key: str) -> str:
        """The comment naming the YAML key and its value as written."""
        it = self.items.get(key)
        self.used.add(key)
        return f"{key}: {it.raw}" if it is not None else f"{key} (absent)"

    def fail(self, key: str, message: str, *notes: str) -> None:
        it = self.items.get(key)
        pos = it.pos if it is not None else Pos(self.file, 1, 1, 1, 2)
        self.diags.append(Diagnostic(pos, message, notes))

    def get(self, key: str, kind: str, default: Any = None, required: bool = True) -> Any:
        """The value of ``key`` checked against ``kind`` (int, float, number, bool, str); a
        missing required key or a wrong type is an error (and gives ``default``)."""
        it = self.item(key)
        if it is None:
            if required and default is None:
                section = key.split(".")[0]
                self.diags.append(
                    Diagnostic(
                        Pos(self.file, 1, 1, 1, 2),
                        f"missing key '{key}' (the official {self.source} code reads it)",
                        (f"add it under '{section}:'",),
                    )
                )
            return default
        v = it.value
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "str": isinstance(v, str),
            "opt_int": v is None or (isinstance(v, int) and not isinstance(v, bool)),
        }[kind]
        if not ok:
            want = {
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "str": "a string",
                "opt_int": "an integer or null",
            }[kind]
            notes: tuple[str, ...] = ()
            if isinstance(v, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", v):
                notes = (f"YAML 1.1 reads {v} (no '.' in the mantissa) as a string; write e.g. 1.0e-4",)
            got = "a string" if isinstance(v, str) else type(v).__name__ if v is not None else "null"
            self.fail(key, f"'{key}': expected {want}, got {got} ({it.raw})", *notes)
            return default
        if kind == "float":
            return float(v)
        return v

    def positive(self, key: str, kind: str = "int", default: Any = None) -> Any:
        v = self.get(key, kind, default)
        if v is not None and v <= 0:
            self.fail(key, f"'{key}': must be > 0, got {self.items[key].raw}")
            return default
        return v

    def flag_off(self, key: str, what: str, block: Block | None = None) -> None:
        """A boolean setting repro has no counterpart for: false is noted, true is an error."""
        v = self.get(key, "bool", False, required=False)
        if key not in self.items:
            return
        if v:
            self.fail(key, f"'{key}: true' is not supported by repro: {what}")
        else:
            (block.note if block else self.notes.append)(f"{self.c(key)}: off, as in repro ({what})")

    def unmapped(self, key: str, why: str) -> None:
        if key in self.items:
            self.notes.append(f"{self.c(key)}: {why}")

    # ---- the experiment
    def build(self, name: str) -> str:
        if self.source == "ncsn":
            runner = self.runner or "anneal"
            blocks = self._ncsn(runner)
        else:
            if self.runner is not None:
                self.diags.append(Diagnostic(None, "--runner is for --from ncsn (NCSNv2 has one runner)"))
            blocks = self._ncsnv2()
        if self.diags:
            raise DiagnosticError(self.diags)
        text = self._render(name, blocks)
        missed = [k for k in sorted(self.items) if f"{k}: {self.items[k].raw}" not in text]
        for key in missed:  # every key of the file is named in the output
            self.notes.append(f"{self.c(key)}" + ("" if key in self.used else ": not read by this runner"))
        return self._render(name, blocks) if missed else text

    def _render(self, name: str, blocks: list[Block]) -> str:
        runner = f", runner {self.runner or 'anneal'}" if self.source == "ncsn" else ""
        head = [
            f"# Imported by `repro import-config --from {self.source}` from {Path(self.file).name}{runner}.",
            "# Each value names the YAML key (and value) it comes from; settings repro has no",
            "# counterpart for are listed as comments (docs/import-config.md).",
            f"experiment {name} {{",
            f'    paper = "{_PAPER[self.source]}"',
            f'    description = "imported from {Path(self.file).name}"',
        ]
        body: list[str] = []
        for b in blocks:
            body += b.render(4)
        tail = [f"    # {n}" for n in self.notes]
        return "\n".join(head + body + tail + ["}"]) + "\n"

    # ---- shared pieces
    def data(self, dequant: tuple[str, str] | None) -> Block:
        ds = self.get("data.dataset", "str", "")
        if ds and ds not in _DATASETS:
            self.fail(
                "data.dataset",
                f"'data.dataset': {ds!r} is not one repro reads; known: {', '.join(_DATASETS)}",
            )
            ds = ""
        comp, channels = _DATASETS.get(ds, ("cifar10", 3))
        b = Block(f"data {comp}")
        b.note(f"{self.c('data.dataset')} → data {comp}")
        if comp == "lsun":
            cat = self.get("data.category", "str", "")
            if cat and cat not in _LSUN:
                self.fail(
                    "data.category",
                    f"'data.category': {cat!r} is not an LSUN category; known: {', '.join(_LSUN)}",
                )
            elif cat:
                b.set("category", cat, self.c("data.category"))
        elif "data.category" in self.items:
            b.note(f"{self.c('data.category')}: read only for LSUN")
        if comp == "images":
            b.set(
                "path",
                '"data/ffhq/images1024x1024"',
                "FFHQ's official images1024x1024/ folder (datasets/ffhq.py)",
            )
        size = self.positive("data.image_size")
        if size is not None:
            if comp == "cifar10" and size != 32:
                b.set("image_size", str(size), self.c("data.image_size") + " (resized from 32)")
            else:
                b.set("image_size", str(size), self.c("data.image_size"))
        ch = self.get("data.channels", "int", channels)
        if "data.channels" in self.items and ch != channels:
            self.fail(
                "data.channels",
                f"'data.channels': {ds or 'this dataset'} has {channels} channel(s), not {ch}",
            )
        elif "data.channels" in self.items:
            b.note(f"{self.c('data.channels')} (the dataset's)")
        flip = self.get("data.random_flip", "bool", False, required=self.source == "ncsnv2")
        b.set("flip", "true" if flip else "false", self.c("data.random_flip"))
        if dequant is not None:
            b.set("dequantize", dequant[0], dequant[1])
        self.flag_off("data.logit_transform", "the logit transform of the data", b)
        return b

    def noise(self, dist: str = "geometric") -> Block:
        smax = self.positive("model.sigma_begin", "float")
        smin = self.positive("model.sigma_end", "float")
        levels = self.positive("model.num_classes")
        b = Block(f"noise {dist}")
        if smax is not None:
            b.set("sigma_max", num(smax), self.c("model.sigma_begin"))
        if smin is not None:
            b.set("sigma_min", num(smin), self.c("model.sigma_end"))
        if levels is not None:
            b.set("levels", num(levels), self.c("model.num_classes"))
        return b

    def set_optimizer(self, train: Block, has_eps: bool) -> None:
        value, comments = self.optimizer(has_eps)
        train.set("optimizer", value, comments[0] if comments else "")
        for c in comments[1:]:
            train.note(c)

    def optimizer(self, has_eps: bool) -> tuple[str, list[str]]:
        opt = self.get("optim.optimizer", "str", "Adam")
        lr = self.positive("optim.lr", "float", 1e-3)
        wd = self.get("optim.weight_decay", "float", 0.0)
        comments = [self.c("optim.optimizer"), self.c("optim.lr"), self.c("optim.weight_decay")]
        if opt == "Adam":
            args = [f"lr = {num(lr)}"]
            beta1 = self.get("optim.beta1", "float", 0.9)
            if beta1 != 0.9:
                args.append(f"beta1 = {num(beta1)}")
            comments.append(self.c("optim.beta1") + " (β₂ 0.999 in the code)")
            if has_eps and "optim.eps" in self.items:
                eps = self.positive("optim.eps", "float", 1e-8)
                if eps != 1e-8:
                    args.append(f"eps = {num(eps)}")
                comments.append(self.c("optim.eps"))
            if wd:
                args.append(f"weight_decay = {num(wd)}")
            if "optim.amsgrad" in self.items:
                if self.get("optim.amsgrad", "bool", False):
                    args.append("amsgrad = true")
                comments.append(self.c("optim.amsgrad"))
            return f"adam({', '.join(args)})", comments
        if opt == "RMSProp":
            args = [f"lr = {num(lr)}"] + ([f"weight_decay = {num(wd)}"] if wd else [])
            return f"rmsprop({', '.join(args)})", comments
        if opt == "SGD":  # the official code: momentum 0.9 and no weight decay
            return f"sgd(lr = {num(lr)}, momentum = 0.9)", [
                *comments[:2],
                comments[2] + " (not passed to SGD)",
            ]
        self.fail("optim.optimizer", f"'optim.optimizer': {opt!r} is not one of Adam, RMSProp, SGD")
        return "adam", []

    def iterations(self, b: Block) -> int | None:
        n_iters = self.positive("training.n_iters")
        if n_iters is None:
            return None
        iters = n_iters - 1
        b.set(
            "iterations",
            num(iters),
            self.c("training.n_iters") + " (the official loop returns at step n_iters before saving it)",
        )
        epochs = self.positive("training.n_epochs", "int", 10**9)
        if "training.n_epochs" in self.items:
            if epochs < n_iters:
                self.fail(
                    "training.n_epochs",
                    f"'training.n_epochs': {epochs} epochs may end training before n_iters = {n_iters}; "
                    "repro counts iterations only",
                    "set n_epochs ≥ n_iters, or n_iters to the iterations those epochs make",
                )
            else:
                b.note(f"{self.c('training.n_epochs')}: never ends training first (n_epochs ≥ n_iters)")
        return iters

    def batch_and_checkpoints(self, b: Block) -> int:
        bs = self.positive("training.batch_size")
        if bs is not None:
            b.set("batch_size", str(bs), self.c("training.batch_size"))
        every = self.positive("training.snapshot_freq", "int", 5000)
        b.set("checkpoint_every", num(every), self.c("training.snapshot_freq"))
        return every

    # ---- NCSN (ermongroup/ncsn)


def _name(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return out if re.match(r"[A-Za-z_]", out) else f"e_{out}"


def import_config(
    path: str | Path,
    source: str,
    *,
    name: str | None = None,
    runner: str | None = None,
    checkpoint: str = "fast_fid",
    network: str | None = None,
) -> str:
    """The `.exp` text of the official config at ``path`` (``source`` ncsn or ncsnv2).
    Raises :class:`dsl.errors.DiagnosticError` with every mistake, positioned in the YAML."""
    if source not in SOURCES:
        raise error(None, f"--from must be one of {', '.join(SOURCES)}, not {source!r}")
    if checkpoint not in CHECKPOINT_CHOICES:
        raise error(None, f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, not {checkpoint!r}")
    if runner is not None and runner not in RUNNERS:
        raise error(None, f"--runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
    if network is not None and network not in NETWORKS:
        raise error(None, f"--network must be one of {', '.join(NETWORKS)}, not {network!r}")
    stem = Path(path).stem
    if source == "ncsn" and runner is None and stem in RUNNERS:
        runner = stem  # configs/anneal.yml goes with AnnealRunner, baseline.yml with BaselineRunner, ...
    exp = name or _name(f"{source}_{stem}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", exp):
        raise error(None, f"--name {exp!r} is not an experiment name (letters, digits, _)")
    diags: list[Diagnostic] = []
    items = read_config(path, source, diags)
    importer = _Importer(items, source, str(path), runner, checkpoint, network)
    importer.diags = diags
    return importer.build(exp)
