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

import difflib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from dsl.ast import Pos
from dsl.errors import Diagnostic, DiagnosticError, error
from dsl.parser import read_source, unreadable

SOURCES = ("ncsn", "ncsnv2")

# Every key the official code of each repository reads (its configs and runners).
KNOWN: dict[str, dict[str, tuple[str, ...]]] = {
    "ncsn": {
        "training": (
            "batch_size",
            "n_epochs",
            "n_iters",
            "ngpu",
            "snapshot_freq",
            "algo",
            "anneal_power",
            "n_particles",
            "noise_std",
        ),
        "data": ("dataset", "image_size", "channels", "logit_transform", "random_flip"),
        "model": (
            "sigma_begin",
            "sigma_end",
            "num_classes",
            "batch_norm",
            "ngf",
            "n_particles",
            "lam",
            "z_dim",
            "nef",
            "ndf",
        ),
        "optim": ("weight_decay", "optimizer", "lr", "beta1", "amsgrad"),
    },
    "ncsnv2": {
        "training": (
            "batch_size",
            "n_epochs",
            "n_iters",
            "snapshot_freq",
            "snapshot_sampling",
            "anneal_power",
            "log_all_sigmas",
        ),
        "sampling": (
            "batch_size",
            "data_init",
            "step_lr",
            "n_steps_each",
            "ckpt_id",
            "final_only",
            "fid",
            "denoise",
            "num_samples4fid",
            "inpainting",
            "interpolation",
            "n_interpolations",
        ),
        "fast_fid": (
            "batch_size",
            "num_samples",
            "step_lr",
            "n_steps_each",
            "begin_ckpt",
            "end_ckpt",
            "verbose",
            "ensemble",
        ),
        "test": ("begin_ckpt", "end_ckpt", "batch_size"),
        "data": (
            "dataset",
            "category",
            "image_size",
            "channels",
            "logit_transform",
            "uniform_dequantization",
            "gaussian_dequantization",
            "random_flip",
            "rescaled",
            "num_workers",
        ),
        "model": (
            "sigma_begin",
            "num_classes",
            "ema",
            "ema_rate",
            "spec_norm",
            "sigma_dist",
            "sigma_end",
            "normalization",
            "nonlinearity",
            "ngf",
        ),
        "optim": ("weight_decay", "optimizer", "lr", "beta1", "amsgrad", "eps"),
    },
}
# configs/toy.yml of ermongroup/ncsn is `placeholder: "placeholder"`: ToyRunner reads nothing.
TOP_LEVEL_SCALARS = {"ncsn": ("placeholder",), "ncsnv2": ()}

# The NCSN repository's runners (main.py --runner; its default is AnnealRunner).
RUNNERS = ("anneal", "baseline", "scorenet", "toy")
CHECKPOINT_CHOICES = ("fast_fid", "ckpt_id")
NETWORKS = ("ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest", "mlp")

_DATASETS = {  # official data.dataset → (repro data component, channels)
    "CIFAR10": ("cifar10", 3),
    "CELEBA": ("celeba", 3),
    "MNIST": ("mnist", 1),
    "LSUN": ("lsun", 3),
    "FFHQ": ("images", 3),
}
_LSUN = (
    "bedroom",
    "bridge",
    "church_outdoor",
    "classroom",
    "conference_room",
    "dining_room",
    "kitchen",
    "living_room",
    "restaurant",
    "tower",
)
_ACTS = {"elu": "elu", "relu": "relu", "swish": "swish"}
_PAPER = {"ncsn": "NCSN (Song & Ermon 2019)", "ncsnv2": "NCSNv2 (Song & Ermon 2020)"}


class _Item:
    """One scalar of the YAML file: its value, its dotted key, where it is."""

    __slots__ = ("key", "value", "pos", "raw")

    def __init__(self, key: str, value: Any, pos: Pos, raw: str) -> None:
        self.key, self.value, self.pos, self.raw = key, value, pos, raw


def _pos(file: str, node: Any) -> Pos:
    s, e = node.start_mark, node.end_mark
    return Pos(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def read_config(path: str | Path, source: str, diags: list[Diagnostic] | None = None) -> dict[str, _Item]:
    """The YAML file's settings as ``{"section.key": _Item}``; unknown keys, duplicates and
    values that are not scalars are positioned errors, appended to ``diags`` when given (the
    importer then adds its own, so a file's errors come all at once), else raised together."""
    import yaml  # PyYAML: composed with the safe loader, scalars built by SafeConstructor

    file = str(path)
    why = unreadable(path)
    if why is not None:
        raise error(None, f"{file}: {why}")
    text = read_source(path)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = Pos(file, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise error(where, f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    constructor = yaml.constructor.SafeConstructor()
    raise_here = diags is None
    diags = [] if diags is None else diags
    items: dict[str, _Item] = {}
    if root is None:
        raise error(Pos(file, 1, 1, 1, 2), f"the file is empty: expected an official {source} config")
    if not isinstance(root, yaml.MappingNode):
        raise error(_pos(file, root), "expected a mapping of sections (training:, data:, model:, ...)")
    known = KNOWN[source]

    def scalar(key: str, node: Any) -> None:
        if not isinstance(node, yaml.ScalarNode):
            diags.append(
                Diagnostic(_pos(file, node), f"'{key}': expected a single value, not a list or mapping")
            )
            return
        try:
            value = constructor.construct_object(node)
        except yaml.YAMLError as e:
            diags.append(Diagnostic(_pos(file, node), f"'{key}': {getattr(e, 'problem', e)}"))
            return
        prev = items.get(key)
        if prev is not None:  # PyYAML keeps the last; the same value twice is harmless
            if prev.value != value or type(prev.value) is not type(value):
                diags.append(
                    Diagnostic(
                        _pos(file, node),
                        f"'{key}' is set twice, to {prev.raw} and {node.value}",
                        (f"first set at {prev.pos}",),
                    )
                )
            return
        items[key] = _Item(key, value, _pos(file, node), node.value)

    def unknown(key: str, node: Any, choices: list[str], what: str) -> None:
        near = difflib.get_close_matches(key.split(".")[-1], choices, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        diags.append(
            Diagnostic(
                _pos(file, node), f"unknown {what} '{key}' for --from {source}{hint}", (_known_note(source),)
            )
        )

    seen: dict[str, Pos] = {}

    def first(key: str, node: Any) -> bool:
        if key in seen:
            diags.append(
                Diagnostic(_pos(file, node), f"duplicate key '{key}'", (f"first set at {seen[key]}",))
            )
            return False
        seen[key] = _pos(file, node)
        return True

    for knode, vnode in root.value:
        name = str(knode.value)
        if not first(name, knode):
            continue
        if name in TOP_LEVEL_SCALARS[source]:
            scalar(name, vnode)
            continue
        if name not in known:
            unknown(name, knode, [*known, *TOP_LEVEL_SCALARS[source]], "section")
            continue
        if not isinstance(vnode, yaml.MappingNode):
            diags.append(Diagnostic(_pos(file, vnode), f"'{name}': expected a mapping of settings"))
            continue
        for k2, v2 in vnode.value:
            key = f"{name}.{k2.value}"
            if str(k2.value) not in known[name]:
                unknown(key, k2, list(known[name]), "key")
                continue
            scalar(key, v2)
    if diags and raise_here:
        raise DiagnosticError(diags)
    return items


def _known_note(source: str) -> str:
    return f"the keys of --from {source} are listed in docs/import-config.md"


# --------------------------------------------------------------------------------- number text
def num(v: float | int) -> str:
    """A number as the .exp files write it: 200_000, 1e-4, 1.24e-5, 50.0."""
    if isinstance(v, bool):
        raise TypeError(v)
    if isinstance(v, int):
        return f"{v:_}" if abs(v) >= 10_000 else str(v)
    text = repr(float(v))
    m = re.fullmatch(r"(-?[0-9.]+)e([+-])0*([0-9]+)", text)
    if m:
        mant, sign, exp = m.groups()
        return f"{mant}e{'-' if sign == '-' else ''}{exp}"
    return text


def _double(v: float) -> float:
    """2·step_lr without binary noise (6.2e-6 → 1.24e-5, not 1.2400000000000001e-05)."""
    return float(Decimal(repr(float(v))) * 2)


# ------------------------------------------------------------------------------------ output model
class Block:
    def __init__(self, header: str) -> None:
        self.header = header
        self.lines: list[str] = []
        self.children: list[Block] = []

    def set(self, key: str, value: str, comment: str) -> None:
        self.lines.append(f"{key} = {value}" + (f"  # {comment}" if comment else ""))

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def render(self, indent: int) -> list[str]:
        pad = " " * indent
        if not self.lines and not self.children:
            return [f"{pad}{self.header} {{ }}"]
        out = [f"{pad}{self.header} {{"]
        out += [f"{pad}    {ln}" for ln in self.lines]
        for c in self.children:
            out += c.render(indent + 4)
        out.append(f"{pad}}}")
        return out


class _Importer:
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
    def _ncsn(self, runner: str) -> list[Block]:
        if runner == "toy":
            return self._ncsn_toy()
        algo = self.get("training.algo", "str", "dsm")
        if algo not in ("dsm", "ssm"):
            self.fail("training.algo", f"'training.algo': {algo!r} is not dsm or ssm")
        ds = self.items.get("data.dataset")
        dataset = ds.value if ds is not None else ""
        data = self.data(("uniform", "always on in the NCSN runners: X / 256. * 255. + U / 256."))
        self.flag_off("model.batch_norm", "NCSN's CondRefineNetDilated uses no batch norm")
        train = Block("train")
        self.set_optimizer(train, has_eps=False)
        self.batch_and_checkpoints(train)
        self.iterations(train)
        self.unmapped("training.ngpu", "GPUs are chosen by repro run --gpus, not by the experiment")
        if runner == "scorenet":
            return self._ncsn_scorenet(data, train, algo)
        if runner == "baseline":
            noise = Block("noise geometric")
            noise.set("sigma_max", "0.01", "runners/baseline_runner.py: dsm_score_estimation(sigma=0.01)")
            noise.set("sigma_min", "0.01", "one noise level")
            noise.set("levels", "1", "")
            for k in ("model.sigma_begin", "model.sigma_end", "model.num_classes"):
                self.unmapped(k, "not read by BaselineRunner (σ = 0.01 fixed)")
            loss = Block("loss dsm")
            loss.set("weight", "sigma ** 2", "the runner's unweighted loss at one σ (a constant factor)")
            self.unmapped("training.anneal_power", "not read by BaselineRunner")
            self.unmapped("training.n_particles", "not read by BaselineRunner (no SSM)")
        else:
            noise = self.noise()
            if algo == "ssm":
                loss = Block("loss ssm_vr")
                loss.note(self.c("training.algo") + ": anneal_sliced_score_estimation_vr")
                n = self.positive("training.n_particles", "int", 1)
                loss.set("n_particles", str(n), self.c("training.n_particles"))
                self.unmapped("training.anneal_power", "not read with algo ssm")
            else:
                loss = Block("loss dsm")
                loss.note(self.c("training.algo") + ": anneal_dsm_score_estimation")
                p = self.get("training.anneal_power", "float", 2.0)
                loss.set(
                    "weight", f"sigma ** {num(int(p) if p == int(p) else p)}", self.c("training.anneal_power")
                )
                self.unmapped("training.n_particles", "read only with algo ssm")
        network = Block(f"network {self.network_choice or 'ncsn'}")
        ngf = self.positive("model.ngf", "int", 64)
        network.set("ngf", str(ngf), self.c("model.ngf"))
        for k in ("model.n_particles", "model.lam", "model.z_dim", "model.nef", "model.ndf"):
            self.unmapped(k, "read only by ScoreNetRunner")
        self.unmapped("training.noise_std", "read only by ScoreNetRunner")
        sample = Block("sample")
        if runner == "baseline":
            sample.set("samples", "100", "runners/baseline_runner.py test(): 100 samples")
            sample.set("init", "uniform", "torch.rand: U[0, 1]")
            st = Block("stage langevin")
            st.set("steps", "1000", "Langevin_dynamics(samples, score, 1000, 0.00002)")
            st.set("step_size", "4e-5", "step_lr 0.00002 = ε/2")
        else:
            sample.set("samples", "25", "runners/anneal_runner.py test(): grid_size ** 2 = 25 samples")
            sample.set("init", "uniform", "torch.rand: U[0, 1]")
            st = Block("stage annealed_langevin")
            st.set("steps_per_level", "100", "anneal_Langevin_dynamics(samples, score, sigmas, 100, 0.00002)")
            st.set("step_size", "4e-5", "step_lr 0.00002 = ε/2 (Alg. 1's convention)")
        sample.children.append(st)
        metrics = {"CIFAR10": "[inception_score, fid]", "MNIST": "[fid_domain, is_domain]"}.get(
            dataset, "[fid]"
        )
        ev = Block("evaluate")
        ev.set("metrics", metrics, "the NCSN code computes none; the paper's metrics (§5)")
        ev.set("samples", "50k", "the NCSN paper: 50,000 samples")
        return [data, noise, network, loss, train, sample, ev]

    def _ncsn_scorenet(self, data: Block, train: Block, algo: str) -> list[Block]:
        sigma = self.positive("training.noise_std", "float", 0.01)
        noise = Block("noise geometric")
        noise.set("sigma_max", num(sigma), self.c("training.noise_std") + " (the data are perturbed by it)")
        noise.set("sigma_min", num(sigma), "one noise level")
        noise.set("levels", "1", "")
        network = Block(f"network {self.network_choice or 'mlp'}")
        network.note("repro has no ResScore (models/scorenet.py, an encoder-decoder of nef/ndf filters):")
        network.note("an MLP of the default size stands in for it")
        for k in ("model.nef", "model.ndf", "model.z_dim", "model.lam", "model.n_particles", "model.ngf"):
            if k in self.items:
                network.note(f"{self.c(k)}: no counterpart in network {self.network_choice or 'mlp'}")
        if algo == "ssm":
            loss = Block("loss ssm_vr")
            loss.set("n_particles", "1", "sliced_score_estimation_vr(..., n_particles=1)")
            loss.set("weight", "1", "unweighted")
        else:
            loss = Block("loss dsm")
            loss.set("weight", "1", "dsm_score_estimation: unweighted")
        self.unmapped("training.anneal_power", "not read by ScoreNetRunner")
        self.unmapped("training.n_particles", "not read by ScoreNetRunner (n_particles=1 in the code)")
        self.unmapped("model.sigma_begin", "not read by ScoreNetRunner")
        sample = Block("sample")
        sample.note("ScoreNetRunner has no sampler; plain Langevin at the one level as the baseline's")
        sample.set("init", "uniform", "")
        st = Block("stage langevin")
        st.set("steps", "1000", "")
        st.set("step_size", "4e-5", "")
        sample.children.append(st)
        return [data, noise, network, loss, train, sample]

    def _ncsn_toy(self) -> list[Block]:
        self.unmapped("placeholder", "ToyRunner reads nothing from its config (runners/toy_runner.py)")
        for key in sorted(self.items):
            if key != "placeholder":
                self.unmapped(key, "not read by ToyRunner")
        src = "runners/toy_runner.py train()"
        data = Block("data mixture2d")
        data.note("models/gmm.py GMMDist: 1/5 N((-5,-5), I) + 4/5 N((5,5), I), the defaults")
        noise = Block("noise none")
        noise.note("sliced score matching on the data itself (NCSN Fig. 2)")
        network = Block("network mlp")
        network.set("hidden", "128", f"{src}: hidden_units = 128")
        network.set("layers", "3", "Linear-Softplus-Linear-Softplus-Linear")
        network.set("act", "softplus", "")
        loss = Block("loss ssm_vr")
        loss.note(f"{src}: sliced_score_estimation_vr(score, samples, n_particles=1)")
        train = Block("train")
        train.set("optimizer", "adam(lr = 1e-3)", f"{src}: optim.Adam(lr=0.001)")
        train.set("batch_size", "128", "teacher.sample((128,))")
        train.set("iterations", "10_000", "for step in range(10000)")
        sample = Block("sample")
        sample.set("samples", "1280", "runners/toy_runner.py: 1280 samples")
        sample.set("init", "uniform(low = -8, high = 8)", "torch.rand(1280, 2) * 16 - 8")
        st = Block("stage langevin")
        st.set("steps", "1000", "langevin_dynamics(score, init, lr=0.1, step=1000)")
        st.set("step_size", "0.1", "")
        sample.children.append(st)
        ev = Block("evaluate")
        ev.set("metrics", "[mode_weights, mmd]", "Fig. 2/3: the modes' weights")
        ev.set("samples", "1280", "")
        return [data, noise, network, loss, train, sample, ev]

    # ---- NCSNv2 (ermongroup/ncsnv2)
    def _ncsnv2(self) -> list[Block]:
        uni = self.get("data.uniform_dequantization", "bool", False)
        deq = ("uniform" if uni else "none", self.c("data.uniform_dequantization"))
        data = self.data(deq)
        if self.get("data.gaussian_dequantization", "bool", False):
            self.fail(
                "data.gaussian_dequantization",
                "'data.gaussian_dequantization: true' is not supported by repro",
            )
        else:
            data.note(f"{self.c('data.gaussian_dequantization')}")
        self.flag_off(
            "data.rescaled", "data in [-1, 1]; repro's networks map [0, 1] inputs to [-1, 1] themselves", data
        )
        self.unmapped("data.num_workers", "data loading is repro's own")

        dist = self.get("model.sigma_dist", "str", "geometric")
        if dist not in ("geometric", "uniform"):
            self.fail("model.sigma_dist", f"'model.sigma_dist': {dist!r} is not geometric or uniform")
        noise = self.noise("geometric" if dist != "uniform" else "linear")
        noise.note(self.c("model.sigma_dist"))

        ds = self.items.get("data.dataset")
        dataset = ds.value if ds is not None else ""
        stem = Path(self.file).stem
        net = self.network_choice or (
            "ncsn"
            if stem == "ncsn_original"
            else {"LSUN": "ncsnv2_deeper", "FFHQ": "ncsnv2_deepest"}.get(dataset, "ncsnv2")
        )
        network = Block(f"network {net}")
        if net == "ncsn" and self.network_choice is None:
            network.note(
                "configs/ncsn_original.yml trains NCSN (models/ncsn.py), the NCSNv2 paper's baseline"
            )
        else:
            network.note(f"runners/ncsn_runner.py get_model: {dataset or 'this dataset'} → {net}")
        ngf = self.positive("model.ngf", "int", 128)
        network.set("ngf", str(ngf), self.c("model.ngf"))
        act = self.get("model.nonlinearity", "str", "elu")
        if act not in _ACTS:
            self.fail("model.nonlinearity", f"'model.nonlinearity': {act!r} is not one of {', '.join(_ACTS)}")
        elif act != "elu":
            network.set("act", act, self.c("model.nonlinearity"))
        else:
            network.note(self.c("model.nonlinearity") + " (the default act)")
        norm = self.get("model.normalization", "str", "InstanceNorm++")
        if norm != "InstanceNorm++":
            self.fail(
                "model.normalization",
                f"'model.normalization': {norm!r} is not supported (only InstanceNorm++)",
            )
        else:
            network.note(self.c("model.normalization") + " (the network's own)")
        self.flag_off("model.spec_norm", "spectral normalisation", network)

        loss = Block("loss dsm")
        p = self.get("training.anneal_power", "float", 2.0)
        loss.set("weight", f"sigma ** {num(int(p) if p == int(p) else p)}", self.c("training.anneal_power"))

        train = Block("train")
        self.set_optimizer(train, has_eps=True)
        every = self.batch_and_checkpoints(train)
        iters = self.iterations(train)
        ema = self.get("model.ema", "bool", False)
        rate = self.get("model.ema_rate", "float", 0.999, required=False)
        if ema:
            train.set("ema", num(rate), f"{self.c('model.ema')}; {self.c('model.ema_rate')}")
        else:
            train.note(f"{self.c('model.ema')}: no EMA; {self.c('model.ema_rate')} unused")
        if self.get("training.snapshot_sampling", "bool", False, required=False):
            train.note(
                f"{self.c('training.snapshot_sampling')}: repro's preview grids (train.preview_samples)"
            )
        elif "training.snapshot_sampling" in self.items:
            train.note(f"{self.c('training.snapshot_sampling')}")
        self.unmapped("training.log_all_sigmas", "repro logs the loss per noise level always")

        sample, select, keep = self._ncsnv2_sample(iters, every)
        if keep is not None:
            train.lines.insert(len(train.lines), keep)
        ev = Block("evaluate")
        n4fid = self.positive("sampling.num_samples4fid", "int", 10_000)
        metrics = "[inception_score, fid]" if dataset == "CIFAR10" else "[fid]"
        ev.set(
            "metrics",
            metrics,
            "evaluation/fid_score.py" + (" (and the paper's IS)" if dataset == "CIFAR10" else ""),
        )
        ev.set("samples", num(n4fid), self.c("sampling.num_samples4fid"))
        self.unmapped("sampling.fid", "sample mode's FID batch; repro's evaluate stage always runs")
        for k in ("test.begin_ckpt", "test.end_ckpt", "test.batch_size"):
            self.unmapped(k, "main.py --test (test-set loss of each checkpoint) has no repro stage")
        return [data, noise, network, loss, train, *([select] if select else []), sample, ev]

    def _ncsnv2_sample(self, iters: int | None, every: int) -> tuple[Block, Block | None, str | None]:
        sample = Block("sample")
        n = self.positive("sampling.batch_size", "int", 64)
        sample.set("samples", str(n), self.c("sampling.batch_size") + " (the grid of main.py --sample)")
        if self.get("sampling.data_init", "bool", False):
            std = self.items.get("model.sigma_begin")
            sample.set(
                "init",
                f"data_noise(std = {num(float(std.value)) if std else '1.0'})",
                self.c("sampling.data_init") + " (data + σ₁·z)",
            )
        else:
            sample.set("init", "uniform", self.c("sampling.data_init") + " (U[0, 1])")
        step_lr = self.positive("sampling.step_lr", "float", 2e-5)
        steps = self.positive("sampling.n_steps_each", "int", 100)
        inpaint = self.get("sampling.inpainting", "bool", False, required=False)
        if self.get("sampling.interpolation", "bool", False, required=False):
            self.fail(
                "sampling.interpolation",
                "'sampling.interpolation: true' is not supported by repro (no interpolation stage)",
            )
        elif "sampling.interpolation" in self.items:
            sample.note(self.c("sampling.interpolation"))
        self.unmapped("sampling.n_interpolations", "read only with interpolation: true")
        st = Block("stage inpainting" if inpaint else "stage annealed_langevin")
        if "sampling.inpainting" in self.items:
            sample.note(self.c("sampling.inpainting"))
        st.set("steps_per_level", str(steps), self.c("sampling.n_steps_each"))
        st.set("step_size", num(_double(step_lr)), self.c("sampling.step_lr") + " = ε/2")
        final_only = self.get("sampling.final_only", "bool", True, required=False)
        if not final_only and not inpaint:
            st.set("record_every", "1", self.c("sampling.final_only") + " (every step's samples kept)")
        elif "sampling.final_only" in self.items:
            sample.note(self.c("sampling.final_only"))
        sample.children.append(st)
        if self.get("sampling.denoise", "bool", False):
            sample.children.append(Block("stage denoise"))
            sample.note(self.c("sampling.denoise") + " → stage denoise")
        else:
            sample.note(self.c("sampling.denoise") + ": no final denoising")

        # Which checkpoint: fast_fid's best (when asked and its range is valid) or ckpt_id.
        select: Block | None = None
        keep: str | None = None
        ckpt = self.get("sampling.ckpt_id", "opt_int", None, required=False)
        fast = self._fast_fid(step_lr, steps, iters)
        if self.checkpoint_choice == "fast_fid" and fast is not None:
            select = fast
            sample.set("checkpoint", "best", "the fast_fid sweep's best FID (--checkpoint fast_fid)")
            keep = f"keep_every = {num(5000)}  # the checkpoints fast_fid reads (range(begin, end + 1, 5000))"
            if "sampling.ckpt_id" in self.items:
                sample.note(f"{self.c('sampling.ckpt_id')}: superseded by fast_fid's choice")
        elif ckpt is None or (iters is not None and ckpt == iters):
            why = " (the last checkpoint)" if ckpt is not None else " (checkpoint.pth, the last)"
            sample.set("checkpoint", "last", self.c("sampling.ckpt_id") + why)
        else:
            if ckpt % every:
                self.fail(
                    "sampling.ckpt_id",
                    f"'sampling.ckpt_id': no checkpoint {ckpt}: snapshots are every {every} steps",
                )
            elif iters is not None and ckpt > iters:
                self.fail("sampling.ckpt_id", f"'sampling.ckpt_id': {ckpt} is after the last step ({iters})")
            else:
                sample.set("checkpoint", num(ckpt), self.c("sampling.ckpt_id"))
                if iters is not None:
                    k = (iters - ckpt) // every + 1
                    if k > 3:  # train.keep_checkpoints' default
                        keep = (
                            f"keep_checkpoints = {k}  # the newest {k}, back to checkpoint {ckpt:,} "
                            "(the official code keeps them all)"
                        )
        if self.checkpoint_choice == "ckpt_id":
            for key in KNOWN["ncsnv2"]["fast_fid"]:
                self.unmapped(f"fast_fid.{key}", "main.py --fast_fid (not used: --checkpoint ckpt_id)")
        return sample, select, keep

    def _fast_fid(self, step_lr: float, steps: int, iters: int | None) -> Block | None:
        if not any(k.startswith("fast_fid.") for k in self.items):
            return None
        begin = self.get("fast_fid.begin_ckpt", "int", 5000)
        end = self.get("fast_fid.end_ckpt", "int", iters or 5000)
        n = self.positive("fast_fid.num_samples", "int", 1000)
        bs = self.positive("fast_fid.batch_size", "int", 1000)
        fl = self.positive("fast_fid.step_lr", "float", step_lr)
        fs = self.positive("fast_fid.n_steps_each", "int", steps)
        if self.get("fast_fid.ensemble", "bool", False, required=False):
            self.fail(
                "fast_fid.ensemble",
                "'fast_fid.ensemble: true' is not supported by repro (no checkpoint ensembles)",
            )
        verbose_note = (
            f"{self.c('fast_fid.verbose')}: logging only" if "fast_fid.verbose" in self.items else None
        )
        if self.checkpoint_choice != "fast_fid":
            return None
        if begin > end or (iters is not None and begin > iters):
            self.notes.append(
                f"{self.c('fast_fid.begin_ckpt')}, {self.c('fast_fid.end_ckpt')}: an empty range "
                "(no checkpoint to select); sampling.ckpt_id is used"
            )
            return None
        for key, v, ref in (("fast_fid.step_lr", fl, step_lr), ("fast_fid.n_steps_each", fs, steps)):
            if v != ref:
                self.fail(
                    key,
                    f"'{key}' differs from sampling's ({self.items[key].raw}); repro selects with the sample "
                    "block's stages",
                    "make them equal, or use --checkpoint ckpt_id",
                )
        b = Block("select")
        b.set("metric", "fid", "runners/ncsn_runner.py fast_fid: get_fid")
        b.set("samples", num(n), self.c("fast_fid.num_samples"))
        b.set("from", num(begin), self.c("fast_fid.begin_ckpt"))
        b.set("to", num(min(end, iters) if iters is not None else end), self.c("fast_fid.end_ckpt"))
        b.set("every", num(5000), "range(begin_ckpt, end_ckpt + 1, 5000) in the runner")
        if bs != 1000:
            b.set("batch_size", str(bs), self.c("fast_fid.batch_size"))
        else:
            b.note(self.c("fast_fid.batch_size"))
        b.note(f"{self.c('fast_fid.step_lr')}; {self.c('fast_fid.n_steps_each')}: the sample block's stages")
        if "fast_fid.ensemble" in self.items:
            b.note(self.c("fast_fid.ensemble"))
        if verbose_note:
            b.note(verbose_note)
        return b


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
