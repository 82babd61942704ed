"""Settings of a run as flat dotted keys, and the differences between two runs.

A ``spec.json`` (``RunSpec.canonical()``) holds one ``{"name", "params"}`` object per block and
the ``stages`` list of the ``sample`` block. Flattened: ``noise`` → ``"geometric"``,
``noise.levels`` → ``10``, ``train.iterations`` → ``200000``, ``sample.annealed_langevin.step_size``
→ ``2e-05`` (stages by name, ``sample.stages`` → their order). Speed settings (``schema.UNHASHED``:
how fast, not what) are left out: they change no result. Torch-free.
"""

from __future__ import annotations

import json
from typing import Any

from ncsn_core import schema

BLOCK_ORDER = ("data", "noise", "network", "loss", "train", "sample", "evaluate")
# The blocks that make the method (NCSN / NCSNv2 / ANSN): its noise, loss, network, sampler;
# and the settings a method's paper fixes outside them: the EMA of the weights (NCSNv2's
# Technique 5) and the dequantisation of the data (NCSN's code dequantises, NCSNv2's does not).
METHOD_PREFIXES = ("noise", "loss", "network", "sample.stages", "sample.")
METHOD_KEYS = ("train.ema", "data.dequantize")
KEY_SETTINGS = (
    "data",
    "noise",
    "noise.levels",
    "network",
    "loss",
    "train.iterations",
    "sample.stages",
    "evaluate.samples",
)


def _text(v: Any) -> str:
    if isinstance(v, dict) and "expr" in v and len(v) == 1:
        return str(v["expr"])
    if isinstance(v, dict) and "call" in v:
        inner = ", ".join(f"{k} = {_text(x)}" for k, x in (v.get("params") or {}).items())
        return f"{v['call']}({inner})"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_text(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict,)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def flatten(spec: dict[str, Any]) -> dict[str, str]:
    """Every setting of a spec.json as ``dotted key → value text``."""
    out: dict[str, str] = {}
    if not isinstance(spec, dict):
        return out
    for block in BLOCK_ORDER:
        b = spec.get(block)
        if not isinstance(b, dict):
            continue
        name = str(b.get("name", block))
        if name != block:  # a component block: its name is a setting
            out[block] = name
        speed = schema.UNHASHED.get(block, frozenset())
        for k, v in (b.get("params") or {}).items():
            if k not in speed:
                out[f"{block}.{k}"] = _text(v)
    stages = spec.get("stages")
    if isinstance(stages, list) and stages:
        names = [str(s.get("name", "?")) for s in stages if isinstance(s, dict)]
        out["sample.stages"] = ", ".join(names)
        for s in stages:
            if isinstance(s, dict):
                for k, v in (s.get("params") or {}).items():
                    out[f"sample.{s.get('name', '?')}.{k}"] = _text(v)
    return out


def diff(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(key, value in a, value in b)`` for every setting that differs ("–": unset)."""
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k, "–"), b.get(k, "–")) for k in keys if a.get(k) != b.get(k)]


def is_method_key(key: str) -> bool:
    return key in METHOD_KEYS or any(
        key == p or key.startswith(p + ".") or (p.endswith(".") and key.startswith(p))
        for p in METHOD_PREFIXES
    )


def method_label(flat: dict[str, str]) -> str:
    """NCSN, NCSNv2 or ANSN, from the blocks that make the method: ANSN's adaptive noise or
    its samplers; NCSN's σ ladder (σ₁ ≤ 1 on data in [0, 1], the paper's, whatever the network
    and EMA: a fair comparison gives every arm EMA, and the official CelebA NCSN baseline runs
    on NCSNv2's network); else NCSNv2's Technique 1 σ₁ or EMA (Technique 5)."""
    stages = flat.get("sample.stages", "")
    if flat.get("noise") == "adaptive" or "preconditioned_langevin" in stages or "ansn_langevin" in stages:
        return "ANSN"
    try:
        sigma_max = float(flat.get("noise.sigma_max", "nan"))
    except ValueError:
        sigma_max = float("nan")
    if flat.get("noise") == "geometric" and sigma_max <= 1.0:
        return "NCSN"
    ema = flat.get("train.ema", "0")
    if ema not in ("0", "0.0", "") or (flat.get("network") == "ncsnv2" and "train.ema" not in flat):
        return "NCSNv2"
    if flat.get("network") in ("ncsn", "ncsnv2") or flat.get("noise") == "geometric":
        return "NCSN"
    return f"{flat.get('noise', '?')} / {flat.get('network', '?')}"


def collapse(changes: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Without the parameters that only come and go with a changed component or stage
    (``noise geometric → adaptive`` stands for its parameters' ``–`` entries)."""
    keys = {k for k, _, _ in changes}

    def owner(k: str) -> str:
        parts = k.split(".")
        return "sample.stages" if parts[0] == "sample" and len(parts) == 3 else parts[0]

    return [c for c in changes if not (("–" in (c[1], c[2])) and owner(c[0]) in keys and owner(c[0]) != c[0])]


def describe(changes: list[tuple[str, str, str]], limit: int = 4) -> str:
    """``noise.levels 10 → 5, network.ngf 128 → 64`` (at most ``limit``, then "and N more")."""
    parts = [f"{k} {a} → {b}" for k, a, b in changes[:limit]]
    if len(changes) > limit:
        parts.append(f"and {len(changes) - limit} more")
    return ", ".join(parts)
