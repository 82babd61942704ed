"""Released checkpoints (issue 17): weights from the official NCSN / NCSNv2 code, or from
another repro run, instead of training; and ``repro export``, the other way.

``train { from = released(path = "checkpoints/ncsn_cifar10.pth", format = ncsn) }`` makes the
train stage read the file instead of training. Formats (docs/released.md):

- ``ncsn``: the NCSN code's ``checkpoint.pth``: ``[score_state_dict, optimizer_state_dict]``,
  keys with DataParallel's ``module.`` prefix, no σ buffer.
- ``ncsnv2``: the NCSNv2 code's ``[score, optimizer, epoch, step, ema]``; the EMA helper's
  state dict holds the shadow parameters the paper sampled from (parameters only, named
  *without* ``module.``: models/ema.py registers ``module.module``'s names), used when
  ``sample.use_ema`` (the default). Reading accepts either spelling.
- ``repro``: a repro training checkpoint (``train/checkpoints/step-<n>.pt``).

Every file is read with ``torch.load(..., weights_only=True)``: no pickled code runs, and a
file that needs it is refused. The official networks name their modules differently
(``begin_conv``, ``res1``, ``refine1.adapt_convs.0.1_1_conv``, ``normalizer``, ``end_conv``);
:func:`official_name` maps repro's names to theirs, and every key and shape is checked.

The file's identity (path, SHA-256, where it is published) is :mod:`ncsn_core.released_files`,
which imports no torch: the spec's hash and ``repro check`` stay light.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ncsn_core import checkpoint as ckpt
from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.errors import CheckpointError, UserError
from ncsn_core.released_files import (
    SOURCES,
    description,
    file_path,
    file_sha256,
    identity,
    missing_message,
    preflight,
    weights_kwargs,
    weights_text,
)

PREFIX = "module."


def released(path: str, format: str, published: str = "") -> dict[str, Any]:  # noqa: A002
    """The ``weights released`` component: its checked parameters (read by the train stage)."""
    return {"path": path, "format": format, "published": published}


# --------------------------------------------------------------------------- names
_RCU = re.compile(r"^(adapt_convs\.\d+|output_convs)\.(convs|norms)\.(\d+)\.(.*)$")


# NCSNv2Deepest (ermongroup/ncsnv2 models/ncsnv2.py) names its six encoder stages res1, res2,
# res3, res31, res4, res5 and its refine blocks, deepest first, refine1, refine2, refine31,
# refine3, refine4, refine5; the 4- and 5-stage networks number them straight through.
_DEEPEST_RES = ("res1", "res2", "res3", "res31", "res4", "res5")
_DEEPEST_REFINE = ("refine1", "refine2", "refine31", "refine3", "refine4", "refine5")


def n_stages(keys: Any) -> int:
    """How many encoder stages a repro RefineNet state dict has (4, 5 or 6)."""
    found = [int(k.split(".")[1]) for k in keys if k.startswith("stages.")]
    return max(found) + 1 if found else 0


def official_name(key: str, stages: int = 4) -> str:
    """repro's parameter name → the official code's (without ``module.``); ``stages``: the
    network's number of encoder stages (:func:`n_stages`; 6 = NCSNv2Deepest's res31/refine31).

    ``begin`` → ``begin_conv``, ``end`` → ``end_conv``, ``final_norm`` → ``normalizer``,
    ``stages.k.j`` → ``res<k+1>.j`` (``norm1/2`` → ``normalize1/2``), ``refines.k`` →
    ``refine<k+1>`` (``adapt`` → ``adapt_convs``, ``out`` → ``output_convs``, an RCU's
    ``convs.n`` / ``norms.n`` → ``<n//2+1>_<n%2+1>_conv`` / ``_norm``: 2 stages per block);
    MSF and CRP keep ``convs`` / ``norms``; ``sigmas`` (NCSNv2's buffer) is the same.
    """
    parts = key.split(".")
    head = parts[0]
    if head in ("begin", "end", "final_norm"):
        return ".".join(
            [{"begin": "begin_conv", "end": "end_conv", "final_norm": "normalizer"}[head]] + parts[1:]
        )
    if head == "stages":
        rest = [{"norm1": "normalize1", "norm2": "normalize2"}.get(parts[3], parts[3]), *parts[4:]]
        k = int(parts[1])
        return ".".join([_DEEPEST_RES[k] if stages == 6 else f"res{k + 1}", parts[2], *rest])
    if head == "refines":
        rest = ".".join(parts[2:])
        rest = re.sub(r"^adapt\.", "adapt_convs.", rest)
        rest = re.sub(r"^out\.", "output_convs.", rest)
        m = _RCU.match(rest)
        if m:
            n = int(m.group(3))
            kind = "conv" if m.group(2) == "convs" else "norm"
            rest = f"{m.group(1)}.{n // 2 + 1}_{n % 2 + 1}_{kind}.{m.group(4)}"
        k = int(parts[1])
        return f"{_DEEPEST_REFINE[k] if stages == 6 else f'refine{k + 1}'}.{rest}"
    return key


def _official_keys(model: Any, fmt: str) -> dict[str, str]:
    """repro name → official name of every state-dict entry the official network has (NCSN's
    network has no σ buffer)."""
    sd = model.state_dict()
    depth = n_stages(sd)
    return {k: official_name(k, depth) for k in sd if not (fmt == "ncsn" and k == "sigmas")}


# --------------------------------------------------------------------------- reading
def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not present: {path}") from None
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} was refused: it is read weights-only (no pickled code runs), and this "
            f"file needs more than tensors and plain containers ({first}). Only load it the unsafe way "
            f"if you trust its source; a checkpoint of the official code or of repro loads weights-only."
        ) from None
    except Exception as e:  # noqa: BLE001 - a damaged file is named, never a traceback
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None


def _strip(sd: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path}: the {what} is not a state dict of tensors")
    return {(k[len(PREFIX) :] if k.startswith(PREFIX) else k): v for k, v in sd.items()}


def read(path: Path, fmt: str) -> dict[str, Any]:
    """The file as ``{"model": sd, "ema": sd | None, "step": int | None, "noise": dict | None,
    "optimizer": dict | None}``, names as in the file without ``module.`` (official names for
    ncsn/ncsnv2, repro's for repro)."""
    obj = _load(path)
    if fmt == "repro":
        if not isinstance(obj, dict) or "model" not in obj:
            raise CheckpointError(f"checkpoint {path} is not a repro training checkpoint (no model entry)")
        ema = obj.get("ema")
        return {
            "model": _strip(obj["model"], path, "model"),
            "ema": None if ema is None else _strip(ema, path, "EMA"),
            "step": int(obj.get("step", 0)),
            "noise": obj.get("noise"),
            "optimizer": obj.get("optimizer"),
        }
    layout = "[score, optimizer]" if fmt == "ncsn" else "[score, optimizer, epoch, step, ema]"
    need = 1 if fmt == "ncsn" else 4
    if not isinstance(obj, (list, tuple)) or len(obj) < need:
        got = type(obj).__name__ + (f" of {len(obj)}" if isinstance(obj, (list, tuple)) else "")
        hint = " (a dict: is it a repro checkpoint? use format = repro)" if isinstance(obj, dict) else ""
        raise CheckpointError(
            f"checkpoint {path} is not in the {fmt} format: expected a list {layout}, got a {got}{hint}"
        )
    out: dict[str, Any] = {"model": _strip(obj[0], path, "score network"), "ema": None, "step": None}
    out["optimizer"] = obj[1] if len(obj) > 1 else None
    out["noise"] = None
    if fmt == "ncsnv2":
        out["step"] = int(obj[3])
        if len(obj) >= 5 and obj[-1] is not None:
            out["ema"] = _strip(obj[-1], path, "EMA shadow")
    return out


def looks_like(sd: dict[str, Any]) -> str:
    """What the file's shapes say about the network it was trained with."""
    if "begin.weight" in sd:
        return "a network with repro's parameter names (a repro checkpoint: use format = repro)"
    w = sd.get("begin_conv.weight")
    if w is None or w.dim() != 4:
        return "no known network (no begin_conv.weight)"
    cascades = {k.split(".")[0] for k in sd if re.fullmatch(r"res\d+", k.split(".")[0])}
    conditional = any(k.endswith("embed.weight") for k in sd)
    if conditional:
        emb = sd.get("normalizer.embed.weight")
        levels = emb.shape[0] if emb is not None else "?"
        net = "ncsn"
    else:
        s = sd.get("sigmas")
        levels = s.shape[0] if s is not None else "?"
        net = {4: "ncsnv2", 5: "ncsnv2_deeper", 6: "ncsnv2_deepest"}.get(len(cascades), "")
        net = net or f"an unknown network with {len(cascades)} cascades"
    return f"network {net}, ngf {w.shape[0]}, {w.shape[1]} channel(s), L = {levels}"


def _listing(title: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return f" {title} ({len(items)}): {', '.join(items[:10])}{more}."


def _match(
    file_sd: dict[str, Any], names: dict[str, str], ours: dict[str, Any], path: Path, expects: str, what: str
) -> dict[str, Any]:
    """``file_sd`` (file names) → repro-named state dict for the keys in ``names``; every key and
    shape checked, every problem listed."""
    back = {v: k for k, v in names.items()}
    unknown = sorted(k for k in file_sd if k not in back)
    missing = sorted(v for v in names.values() if v not in file_sd)
    shaped = sorted(
        f"{k} {tuple(file_sd[k].shape)} (expected {tuple(ours[back[k]].shape)})"
        for k in file_sd
        if k in back and tuple(file_sd[k].shape) != tuple(ours[back[k]].shape)
    )
    if unknown or missing or shaped:
        raise CheckpointError(
            f"checkpoint {path}: its {what} does not fit the experiment's network ({expects})."
            + _listing("Unknown keys", unknown)
            + _listing("Missing keys", missing)
            + _listing("Mis-shaped keys", shaped)
            + f" The file looks like it was trained with {looks_like(file_sd)}."
        )
    return {back[k]: v for k, v in file_sd.items()}


def to_repro(
    model: Any, noise: Any, w: Any, *, expects: str = "", path: Path | None = None
) -> dict[str, Any]:
    """Read the released file ``w`` names and return a repro checkpoint for ``model`` (our
    names; ``model`` and ``noise`` are not changed): ``step``, ``model``, ``ema``, ``noise``."""
    kw = weights_kwargs(w)
    fmt = kw["format"]
    path = path or file_path(w)
    if not path.is_file():
        raise UserError(missing_message(w))
    f = read(path, fmt)
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = {k: k for k in ours} if fmt == "repro" else _official_keys(model, fmt)
    sd = _match(f["model"], names, ours, path, expects, "score network")
    if fmt == "ncsn":
        sd["sigmas"] = ours["sigmas"]  # NCSN's network has no σ buffer: the experiment's noise
    s_file, s_ours = sd.get("sigmas"), ours.get("sigmas")
    if s_file is not None and s_ours is not None and not torch.allclose(s_file.float(), s_ours, rtol=1e-4):
        raise CheckpointError(
            f"checkpoint {path}: its σ ladder (σ₁ = {float(s_file[0]):g}, σ_L = {float(s_file[-1]):g}, "
            f"L = {s_file.numel()}) is not the experiment's noise block (σ₁ = {float(s_ours[0]):g}, "
            f"σ_L = {float(s_ours[-1]):g}, L = {s_ours.numel()}); make the noise block match the file."
        )
    ema = None
    if f["ema"] is not None:
        params = dict(model.named_parameters())
        pnames = {k: v for k, v in names.items() if k in params}
        if fmt == "repro":  # repro's EMA covers buffers too
            pnames = names
        ema = {**sd, **_match(f["ema"], pnames, ours, path, expects, "EMA shadow")}
    noise_state = f["noise"] if fmt == "repro" and f["noise"] is not None else noise.state_dict()
    return {"step": int(f["step"] or 0), "model": sd, "ema": ema, "noise": noise_state}


def import_into(run: Any, folder: Path) -> None:
    """The train stage of a run whose ``train.from`` names a released checkpoint: the file is read,
    checked against the experiment's network and written as this stage's repro checkpoint (the
    sample stage then loads it as a trained model's); results.json says where it came from."""
    spec = run.spec
    w = spec.weights()
    path = file_path(w)
    preflight(spec)
    sha = file_sha256(path) or ""
    net = spec.network
    expects = f"network {net.name}, ngf {net.get('ngf', '?')}, L = {spec.noise.get('levels', '?')}"
    model = run.network()
    state = to_repro(model, run.noise(), w, expects=expects, path=path)
    ckpt.save(layout.checkpoint_file(layout.checkpoints_dir(folder), state["step"]), state)
    kw = weights_kwargs(w)
    atomic.write_json(
        folder / layout.RESULTS,
        {
            "iterations": state["step"] if kw["format"] != "ncsn" else None,
            "weights": weights_text(w, sha),
            "released": {
                "path": kw["path"],
                "format": kw["format"],
                "sha256": sha,
                "ema": state["ema"] is not None,
            },
        },
    )
    run.log(f"train: {weights_text(w, sha[:12] + '…')}")


# --------------------------------------------------------------------------- export
def find_checkpoint(src: Path) -> Path:
    """A repro checkpoint file, or the last checkpoint of the one train stage under a folder
    (a run folder, a seed folder or a train folder)."""
    if src.is_file():
        return src
    if not src.is_dir():
        raise UserError(f"repro export: {src} does not exist (give a run folder or a checkpoint file)")
    trains = sorted(
        {p.parent.parent for p in src.rglob("step-*.pt") if layout.checkpoint_step(p) is not None}
    )
    if not trains:
        for st in sorted(src.rglob(layout.STAGE)):  # a run that reused another run's train stage
            info = layout.stage_info(st.parent) or {}
            found = layout.resolve(info["train"], src) if info.get("train") else None
            if found is not None:
                trains.append(found)
        trains = sorted(set(trains))
    if len(trains) != 1:
        what = "no train stage with a checkpoint" if not trains else f"{len(trains)} train stages"
        listed = "".join(f"\n  {t}" for t in trains[:10])
        raise UserError(
            f"repro export: {src} holds {what}; give one seed's train folder or a checkpoint file{listed}"
        )
    cks = ckpt.list_checkpoints(layout.checkpoints_dir(trains[0]))
    if not cks:
        raise UserError(f"repro export: {trains[0]} has no checkpoint")
    return cks[-1][1]


def export(src: Path, fmt: str, out: Path, force: bool = False) -> str:
    """Write ``src`` (a repro checkpoint or run folder) as the official code's checkpoint.
    ``out`` is checked first (:func:`ncsn_core.io.safe_export_target`): a directory, FIFO or
    device node is refused, an existing file replaced only with ``force``; the file is written
    beside it and renamed into place."""
    if fmt not in ("ncsn", "ncsnv2"):
        raise UserError(f"repro export: --format must be ncsn or ncsnv2, not '{fmt}'")
    out = atomic.safe_export_target(out, force)
    path = atomic.regular_file(find_checkpoint(Path(src)), "checkpoint")  # a FIFO never blocks
    f = read(path, "repro")
    sd = f["model"]
    conditional = any(k.endswith("embed.weight") for k in sd)
    if "begin.weight" not in sd or "stages.0.0.conv1.weight" not in sd:
        raise CheckpointError(
            f"checkpoint {path} does not hold a RefineNet (ncsn / ncsnv2): nothing to export"
        )
    if conditional != (fmt == "ncsn"):
        net = "ncsn" if conditional else "an NCSNv2 network"
        raise UserError(
            f"repro export: {path} holds {net}; export it with --format {'ncsn' if conditional else 'ncsnv2'}"
        )
    depth = n_stages(sd)
    score = {
        PREFIX + official_name(k, depth): v for k, v in sd.items() if not (fmt == "ncsn" and k == "sigmas")
    }
    optimizer = f["optimizer"] if f["optimizer"] is not None else {"state": {}, "param_groups": []}
    if fmt == "ncsn":
        states: list[Any] = [score, optimizer]
    else:
        # The official EMA helper (models/ema.py) unwraps DataParallel before it registers, so
        # its shadow is named without ``module.``: ema_helper.load_state_dict followed by
        # ema(module) looks every parameter up by that name. Parameters only; without an EMA in
        # training the shadow is the weights themselves.
        ema_src = f["ema"] if f["ema"] is not None else sd
        shadow = {official_name(k, depth): v for k, v in ema_src.items() if k != "sigmas"}
        states = [score, optimizer, 0, int(f["step"] or 0), shadow]
    atomic.safe_export_target(out, force)  # again: something may have appeared there meanwhile
    atomic.write_with(out, lambda fh: torch.save(states, fh))
    return f"wrote {out} ({fmt} format, from {path}, step {f['step']})"


__all__ = [
    "SOURCES",
    "description",
    "export",
    "file_sha256",
    "identity",
    "import_into",
    "official_name",
    "preflight",
    "read",
    "released",
    "to_repro",
]
