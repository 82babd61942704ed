"""The NCSN score network (NCSN App. A) and the RefineNet skeleton NCSNv2 shares.

NCSN: a 4-cascade RefineNet of pre-activation residual blocks, dilations 2 and 4 instead of
the last two subsamplings (App. A.2), CondInstanceNorm++ before every convolution and pooling
(App. A.1), average pooling in the chained residual pooling and ELU (App. A.3).
The NCSNv2 family (ncsn_core/networks/ncsnv2.py) is the same skeleton, unconditional, with
deeper encoders. Widths follow the official implementations, so the parameter counts are
theirs: 30,117,635 for NCSN at CIFAR-10 size (ngf 128, L = 10), 7,638,657 for MNIST (ngf 64).
The single-σ baseline of NCSN §4 is this network with L = 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ncsn_core.errors import ReproError
from ncsn_core.networks.layers import (
    ACTS,
    CondInstanceNormPP,
    InstanceNormPP,
    NoNorm,
    NormFactory,
    RefineBlock,
    ResidualBlock,
)

# Encoder cascades: (in, out, resample, dilation) per residual block, in multiples of ngf.
ENCODERS: dict[str, list[list[tuple[int, int, str | None, int]]]] = {
    # NCSN / NCSNv2: C→ngf, ngf→2ngf (down), 2ngf dilation 2, 2ngf dilation 4
    "ncsn": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
             [(2, 2, "down", 2), (2, 2, None, 2)], [(2, 2, "down", 4), (2, 2, None, 4)]],
    # NCSNv2Deeper: one more real down-sampling and 4ngf in the dilated cascades
    "deeper": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
               [(2, 2, "down", 1), (2, 2, None, 1)], [(2, 4, "down", 2), (4, 4, None, 2)],
               [(4, 4, "down", 4), (4, 4, None, 4)]],
    # NCSNv2Deepest: one more again
    "deepest": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
                [(2, 2, "down", 1), (2, 2, None, 1)], [(2, 2, "down", 1), (2, 2, None, 1)],
                [(2, 4, "down", 2), (4, 4, None, 2)], [(4, 4, "down", 4), (4, 4, None, 4)]],
}  # fmt: skip


def decoder_widths(stage_widths: list[int]) -> list[tuple[list[int], int]]:
    """(input widths, output width) of each refine block, deepest first.

    The first takes the deepest cascade alone; each next one fuses a cascade with the
    previous output and narrows to the width of the cascade above it (NCSN: 2ngf, 2ngf,
    ngf, ngf)."""
    w = stage_widths
    blocks = [([w[-1]], w[-1])]
    for k in range(len(w) - 2, -1, -1):
        blocks.append(([w[k], blocks[-1][1]], w[max(k - 1, 0)]))
    return blocks


class RefineNet(nn.Module):
    """s_θ(x, σ_i) as a RefineNet; ``forward(x, idx)`` with idx the level indices [B].

    conditional=True: NCSN (CondInstanceNorm++ everywhere, average pooling in CRP).
    conditional=False: NCSNv2 (InstanceNorm++ in the residual blocks and the final norm
    only, max pooling in CRP, output divided by σ_idx: Technique 3).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        ngf: int,
        act: str,
        centered: bool,
        sigmas: torch.Tensor,
        arch: str,
        conditional: bool,
    ) -> None:
        super().__init__()
        c, h = shape[0], shape[-1]
        levels = int(sigmas.numel())
        self.act = ACTS[act]()
        self.centered = centered
        self.conditional = conditional
        norm: NormFactory
        refine_norm: NormFactory
        if conditional:
            norm = refine_norm = lambda ch: CondInstanceNormPP(ch, levels)  # noqa: E731
        else:
            norm = InstanceNormPP
            refine_norm = lambda ch: NoNorm()  # noqa: E731
        enc = ENCODERS[arch]
        self.begin = nn.Conv2d(c, ngf, 3, padding=1)
        self.stages = nn.ModuleList()
        for si, stage in enumerate(enc):
            blocks = nn.ModuleList()
            for cin, cout, resample, dilation in stage:
                # The official code asks for asymmetric padding in the last down-sampling at
                # 28×28 (MNIST); that block is dilated, so it has no effect there either.
                adjust = h == 28 and si == len(enc) - 1 and resample == "down"
                blocks.append(
                    ResidualBlock(cin * ngf, cout * ngf, norm, self.act, resample, dilation, adjust)
                )
            self.stages.append(blocks)
        dec = decoder_widths([stage[-1][1] * ngf for stage in enc])
        self.refines = nn.ModuleList(
            RefineBlock(cins, cout, refine_norm, self.act, k == 0, k == len(dec) - 1, maxpool=not conditional)
            for k, (cins, cout) in enumerate(dec)
        )
        self.final_norm = CondInstanceNormPP(ngf, levels) if conditional else InstanceNormPP(ngf)
        self.end = nn.Conv2d(ngf, c, 3, padding=1)
        self.register_buffer("sigmas", sigmas.float().clone())

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        h = 2 * x - 1.0 if self.centered else x  # the official code maps [0, 1] to [-1, 1]
        h = self.begin(h)
        feats = []
        for blocks in self.stages:
            for b in blocks:
                h = b(h, idx)
            feats.append(h)
        out = self.refines[0]([feats[-1]], idx, feats[-1].shape[2:])
        for k, r in enumerate(self.refines[1:], start=2):
            f = feats[-k]
            out = r([f, out], idx, f.shape[2:])
        out = self.end(self.act(self.final_norm(out, idx)))
        if not self.conditional:  # NCSNv2 Technique 3: s_θ(x, σ) = s_θ(x)/σ
            out = out / self.sigmas[idx].view(-1, *([1] * (x.dim() - 1)))
        return out


def check_image(shape: tuple[int, ...], name: str) -> None:
    """A RefineNet needs C×H×W data."""
    if len(shape) != 3:
        raise ReproError(f"network {name} is for images (C×H×W); this data has shape {shape}: use mlp")


def ncsn(ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor) -> RefineNet:
    check_image(shape, "ncsn")
    return RefineNet(shape, ngf, act, centered, sigmas, "ncsn", conditional=True)
