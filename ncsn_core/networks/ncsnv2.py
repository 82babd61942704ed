"""The NCSNv2 score networks: NCSNv2, NCSNv2Deeper, NCSNv2Deepest.

The RefineNet of ncsn_core/networks/refinenet.py made unconditional (NCSNv2 Technique 3:
s_θ(x, σ) = s_θ(x)/σ), with InstanceNorm++ in the residual blocks and the final norm only,
unnormalised refine blocks and 5×5 max pooling in CRP, as the official code. Parameter counts
(independent of L) equal the official ones: NCSNv2 29,694,083 at 3×32×32 (ngf 128);
NCSNv2Deeper 83,445,379 (LSUN church 96, bedroom/tower 128); NCSNv2Deepest 94,132,611 (FFHQ
256). The counts do not depend on the resolution either.
"""

from __future__ import annotations

import torch

from ncsn_core.networks.refinenet import RefineNet, check_image


def _build(name: str, arch: str, ngf: int, act: str, centered: bool, shape: tuple[int, ...],
           sigmas: torch.Tensor) -> RefineNet:  # fmt: skip
    check_image(shape, name)
    return RefineNet(shape, ngf, act, centered, sigmas, arch, conditional=False)


def ncsnv2(ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor) -> RefineNet:
    return _build("ncsnv2", "ncsn", ngf, act, centered, shape, sigmas)


def ncsnv2_deeper(
    ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor
) -> RefineNet:
    return _build("ncsnv2_deeper", "deeper", ngf, act, centered, shape, sigmas)


def ncsnv2_deepest(
    ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor
) -> RefineNet:
    return _build("ncsnv2_deepest", "deepest", ngf, act, centered, shape, sigmas)
