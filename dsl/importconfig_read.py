"""import-config, reading: the official YAML with positions, the known keys, and the `.exp` block builder."""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from dsl.ast import Pos
from dsl.errors import Diagnostic, DiagnosticError, error
from dsl.parser import read_source, unreadable
from ncsn_core.declarations.data import LSUN_CATEGORIES

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
_LSUN = LSUN_CATEGORIES  # the categories data lsun reads
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
