"""Score networks: ``mlp`` (toy.py), ``ncsn`` (refinenet.py), ``ncsnv2``, ``ncsnv2_deeper``,
``ncsnv2_deepest`` (ncsnv2.py); the shared blocks are in layers.py; their declarations are in
:mod:`ncsn_core.declarations.networks`. Each builder is called as
``builder(**params, shape=per_sample_shape, sigmas=L_sigmas_decreasing)`` and returns a module
whose ``forward(x, idx)`` gives the score at noise levels ``idx`` (0 = the largest σ).
"""

from __future__ import annotations

from typing import Any

import torch

from ncsn_core import registry
from ncsn_core.networks.ncsnv2 import ncsnv2, ncsnv2_deeper, ncsnv2_deepest
from ncsn_core.networks.refinenet import ncsn
from ncsn_core.networks.toy import mlp

__all__ = ["count_parameters", "mlp", "ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest"]


def count_parameters(name: str, params: dict[str, Any], shape: tuple[int, ...], num_levels: int) -> int:
    """Parameter count of network ``name`` with ``params`` (defaults filled in) for data of
    per-sample ``shape`` and ``num_levels`` noise levels, built on the meta device (no memory
    spent, no initialisation run)."""
    comp = registry.lookup("network", name)
    full, errors = comp.check_params(params)
    if errors:
        raise ValueError("; ".join(m for _, m in errors))
    with torch.device("meta"):
        model = comp.build(**full, shape=tuple(shape), sigmas=torch.ones(num_levels))
    return sum(p.numel() for p in model.parameters())
