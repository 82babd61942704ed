"""Score networks; importing this package registers them.

``mlp`` (toy.py), ``ncsn`` (refinenet.py), ``ncsnv2``, ``ncsnv2_deeper``, ``ncsnv2_deepest``
(ncsnv2.py); the shared blocks are in layers.py. Each builder is called as
``builder(**params, shape=per_sample_shape, sigmas=L_sigmas_decreasing)`` and returns a module
whose ``forward(x, idx)`` gives the score at noise levels ``idx`` (0 = the largest σ).
"""

from __future__ import annotations

from typing import Any

import torch

from ncsn_core.networks import layers, ncsnv2, refinenet, toy  # noqa: F401  (registers them)


def count_parameters(name: str, params: dict[str, Any], shape: tuple[int, ...], num_levels: int) -> int:
    """Parameter count of network ``name`` with ``params`` (defaults filled in) for data of
    per-sample ``shape`` and ``num_levels`` noise levels, built on the meta device (no memory
    spent, no initialisation run)."""
    from ncsn_core import registry

    comp = registry.lookup("network", name)
    full, errors = comp.check_params(params)
    if errors:
        raise ValueError("; ".join(m for _, m in errors))
    with torch.device("meta"):
        model = comp.builder(**full, shape=tuple(shape), sigmas=torch.ones(num_levels))
    return sum(p.numel() for p in model.parameters())
