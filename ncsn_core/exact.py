"""Reference sampling for toy data with a known density (NCSN Fig. 3a: exact sampling)."""

from __future__ import annotations

import torch

from ncsn_core.errors import ReproError
from ncsn_core.samplers import SampleContext


class ExactSample:
    """Replace the batch by exact draws from the data distribution (toy mixtures only)."""

    def run(self, x: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        mixture = getattr(ctx.data, "mixture", None)
        if mixture is None:
            raise ReproError(
                f"stage exact_sample needs data with a known density (e.g. mixture2d); "
                f"{getattr(ctx.data, 'name', 'this data')} has none"
            )
        gen = ctx.generator
        if gen is not None and gen.device != torch.device("cpu"):
            gen = torch.Generator().manual_seed(
                int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator).item())
            )
        return mixture.sample(x.shape[0], gen).to(device=x.device, dtype=x.dtype)

    def nfe(self, num_levels: int) -> int:
        return 0


def exact_sample() -> ExactSample:
    return ExactSample()
