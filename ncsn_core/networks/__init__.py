"""Score networks; importing this package registers them."""

from __future__ import annotations

from typing import Any

import torch

from ncsn_core.networks import toy  # noqa: F401

try:  # the RefineNet family lives in its own modules
    from ncsn_core.networks import ncsnv2, refinenet  # noqa: F401
except ImportError:  # pragma: no cover - during development only
    pass


def count_parameters(name: str, params: dict[str, Any], shape: tuple[int, ...], num_levels: int) -> int:
    """Parameter count of a network, built on the meta device (no memory spent)."""
    from ncsn_core import registry

    comp = registry.lookup("network", name)
    full, errors = comp.check_params(params)
    if errors:
        raise ValueError("; ".join(m for _, m in errors))
    with torch.device("meta"):
        model = comp.builder(**full, shape=tuple(shape), sigmas=torch.ones(num_levels))
    return sum(p.numel() for p in model.parameters())
