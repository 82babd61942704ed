"""Schemas of the fixed blocks: ``experiment`` fields, ``train`` and ``sample``.

(``evaluate`` is registered by :mod:`ncsn_core.evaluation.metrics`.) These are registered
like components (kind ``block``) so the checker, ``repro explain`` and the docs treat them
uniformly; their builders are never called.
"""

from __future__ import annotations

from ncsn_core.registry import Bool, ComponentOf, Either, Float, Int, Param, Str, register
from ncsn_core.values import Call


def _schema() -> None:  # pragma: no cover - blocks are schemas, never built
    raise RuntimeError("blocks are schemas")


register(
    "block",
    "experiment",
    params=[
        Param(
            "seed", Int(min=0), 0, "random seed; sweeping it gives repeats of the same run (not in the hash)"
        ),
        Param("paper", Str(), "", "which paper's table this experiment reproduces (groups the report)"),
        Param("description", Str(), "", "one line shown in reports"),
    ],
    doc="top-level fields of an experiment",
)(_schema)

register(
    "block",
    "train",
    params=[
        Param("optimizer", ComponentOf("optimizer"), Call("adam", ()), "optimizer, e.g. adam(lr = 1e-3)"),
        Param("batch_size", Int(min=1), 128, "training batch size"),
        Param("iterations", Int(min=0), 200_000, "optimizer steps"),
        Param("checkpoint_every", Int(min=1), 5_000, "steps between checkpoints (written atomically)"),
        Param("keep_checkpoints", Int(min=1), 3, "how many recent checkpoints to keep on disk"),
        Param("ema", Float(0.0, 1.0), 0.0, "EMA rate of the parameters (NCSNv2 Technique 5: 0.999; 0 = off)"),
        Param("grad_clip", Float(min=0.0), 0.0, "clip the gradient norm to this value (0 = off)"),
        Param("log_every", Int(min=1), 100, "steps between log lines (losses are averaged in between)"),
    ],
    doc="training loop settings",
)(_schema)

register(
    "block",
    "sample",
    params=[
        Param(
            "init",
            ComponentOf("init"),
            Call("uniform", ()),
            "initial samples, e.g. uniform(low = -8, high = 8)",
        ),
        Param("samples", Int(min=1), 64, "how many samples to draw (the grid and samples.pt)"),
        Param("batch_size", Int(min=1), 1000, "samples drawn at once"),
        Param("use_ema", Bool(), True, "sample with the EMA weights when training kept them (Technique 5)"),
        Param(
            "checkpoint",
            Either((Int(min=0), Str())),
            "last",
            'which checkpoint to sample from: "last" or a training step',
        ),
    ],
    doc="sampling settings; the ordered `stage` list inside it runs one stage after another",
)(_schema)
