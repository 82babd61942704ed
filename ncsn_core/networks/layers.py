"""Building blocks of the RefineNet score networks (NCSN App. A; NCSNv2's variant).

Normalisation: CondInstanceNorm++ (NCSN App. A.1) and its unconditional form InstanceNorm++
(NCSNv2). Convolutions: pre-activation residual blocks with mean-pool down-sampling or
dilation (App. A.2), and the RefineNet decoder pieces (App. A.3): residual conv units (RCU),
multi-resolution fusion (MSF) and chained residual pooling (CRP).

Every block takes ``(x, y)`` with ``y`` the LongTensor of noise-level indices; the
unconditional normalisers ignore it, so one set of blocks serves both networks. The layer
widths, biases and the order in which parameters are created follow the official code, so
parameter counts match it exactly (tests/test_networks.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTS: dict[str, Callable[[], nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "swish": nn.SiLU}

# A normaliser factory: channels -> module with forward(x, y).
NormFactory = Callable[[int], nn.Module]


# ----------------------------------------------------------------------------- normalisation
def standardised_means(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IN(x) and the per-channel means standardised across channels, (μ_k − m)/√(v + 1e-5).

    NCSN App. A.1 writes (μ_k − m)/v with m, v the mean and standard deviation of the μ_k;
    the official code divides by √(var + 1e-5) with the unbiased variance, as here. With a
    single channel the standardised mean is 0 (the unbiased variance would be NaN); on a
    1-pixel map IN(x) is 0, the value of its formula (torch refuses to compute it).
    """
    mu = x.mean(dim=(2, 3))
    h = F.instance_norm(x, eps=1e-5) if x.shape[2] * x.shape[3] > 1 else torch.zeros_like(x)
    if mu.shape[1] < 2:
        return h, torch.zeros_like(mu)
    m = mu.mean(-1, keepdim=True)
    v = mu.var(-1, keepdim=True)
    return h, (mu - m) / torch.sqrt(v + 1e-5)


class CondInstanceNormPP(nn.Module):
    """CondInstanceNorm++ (NCSN App. A.1): z = γ[i]·(IN(x) + α[i]·μ̃) + β[i].

    One embedding of size L × 3C holds γ, α (initialised N(1, 0.02)) and β (zero)."""

    def __init__(self, c: int, levels: int) -> None:
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(levels, 3 * c)
        if self.embed.weight.device.type != "meta":
            with torch.no_grad():
                self.embed.weight[:, : 2 * c].normal_(1.0, 0.02)
                self.embed.weight[:, 2 * c :].zero_()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, mu = standardised_means(x)
        gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        h = h + mu[..., None, None] * alpha[..., None, None]
        return gamma[..., None, None] * h + beta[..., None, None]


class InstanceNormPP(nn.Module):
    """InstanceNorm++ (NCSNv2): the same without conditioning; γ, α ~ N(1, 0.02), β = 0.

    Always built with β: the official network passes ``num_classes`` where the ``bias`` flag
    goes for its final normaliser, so that one has β too (3C parameters like the others)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(c))
        self.gamma = nn.Parameter(torch.empty(c))
        self.beta = nn.Parameter(torch.zeros(c))
        if self.alpha.device.type != "meta":
            with torch.no_grad():
                self.alpha.normal_(1.0, 0.02)
                self.gamma.normal_(1.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h, mu = standardised_means(x)
        h = h + mu[..., None, None] * self.alpha[None, :, None, None]
        return self.gamma[None, :, None, None] * h + self.beta[None, :, None, None]


class NoNorm(nn.Module):
    """The identity, for NCSNv2's unnormalised refine blocks."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x


# ----------------------------------------------------------------------------- convolutions
def conv3(cin: int, cout: int, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution keeping the resolution (dilated when ``dilation`` > 1)."""
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class ConvMeanPool(nn.Module):
    """Convolution then 2×2 mean pooling: the one real down-sampling of App. A.2.

    ``adjust_padding`` pads one row and column on the top-left first (the official code
    sets it for 28×28 inputs; in these networks it only reaches dilated blocks, which
    ignore it). Odd sizes are floored; a 1-pixel map is left as it is."""

    def __init__(self, cin: int, cout: int, k: int, adjust_padding: bool = False) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 1, 0)) if adjust_padding else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.pad(x))
        return F.avg_pool2d(h, 2) if min(h.shape[-2:]) >= 2 else h


class ResidualBlock(nn.Module):
    """Pre-activation residual block: norm → act → conv, twice, plus a shortcut.

    ``resample="down"`` halves the resolution with ConvMeanPool, unless the block is dilated:
    dilations replace every subsampling but the first (App. A.2), and such a block keeps the
    resolution but still has a (dilated 3×3) convolutional shortcut, as the official code.
    A non-dilated shortcut between different widths without resampling is a 1×1 convolution
    (NCSNv2's code; NCSN's code never builds one)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        norm: NormFactory,
        act: nn.Module,
        resample: str | None,
        dilation: int = 1,
        adjust_padding: bool = False,
    ) -> None:
        super().__init__()
        self.act = act
        self.cin, self.cout, self.resample = cin, cout, resample
        self.norm1 = norm(cin)
        shortcut: Callable[[int, int], nn.Module]
        if resample == "down":
            self.conv1 = conv3(cin, cin, dilation=dilation)
            self.norm2 = norm(cin)
            if dilation > 1:
                self.conv2 = conv3(cin, cout, dilation=dilation)
                shortcut = lambda a, b: conv3(a, b, dilation=dilation)  # noqa: E731
            else:
                self.conv2 = ConvMeanPool(cin, cout, 3, adjust_padding)
                shortcut = lambda a, b: ConvMeanPool(a, b, 1, adjust_padding)  # noqa: E731
        elif resample is None:
            self.conv1 = conv3(cin, cout, dilation=dilation)
            self.norm2 = norm(cout)
            self.conv2 = conv3(cout, cout, dilation=dilation)
            if dilation > 1:
                shortcut = lambda a, b: conv3(a, b, dilation=dilation)  # noqa: E731
            else:
                shortcut = lambda a, b: nn.Conv2d(a, b, 1)  # noqa: E731
        else:
            raise ValueError(f"resample must be 'down' or None, got {resample!r}")
        self.shortcut = shortcut(cin, cout) if (cin != cout or resample is not None) else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x, y)))
        h = self.conv2(self.act(self.norm2(h, y)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


# ----------------------------------------------------------------------------- refine blocks
class RCU(nn.Module):
    """Residual conv units: n_blocks residual blocks of n_stages × (norm → act → 3×3 conv,
    no bias)."""

    def __init__(self, c: int, n_blocks: int, n_stages: int, norm: NormFactory, act: nn.Module) -> None:
        super().__init__()
        self.act = act
        self.norms = nn.ModuleList(norm(c) for _ in range(n_blocks * n_stages))
        self.convs = nn.ModuleList(conv3(c, c, bias=False) for _ in range(n_blocks * n_stages))
        self.n_stages = n_stages

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for b in range(len(self.convs) // self.n_stages):
            res = x
            for s in range(self.n_stages):
                k = b * self.n_stages + s
                x = self.convs[k](self.act(self.norms[k](x, y)))
            x = x + res
        return x


class MSF(nn.Module):
    """Multi-resolution fusion: norm → 3×3 conv per input, bilinear upsampling
    (align_corners) to the finest input's size, sum."""

    def __init__(self, cins: list[int], c: int, norm: NormFactory) -> None:
        super().__init__()
        self.norms = nn.ModuleList(norm(ci) for ci in cins)
        self.convs = nn.ModuleList(conv3(ci, c, bias=True) for ci in cins)

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor, size: torch.Size) -> torch.Tensor:
        out = None
        for x, n, conv in zip(xs, self.norms, self.convs):
            h = F.interpolate(conv(n(x, y)), size=size, mode="bilinear", align_corners=True)
            out = h if out is None else out + h
        assert out is not None
        return out


class CRP(nn.Module):
    """Chained residual pooling: act, then n_stages × (norm → 5×5 pool → 3×3 conv), each
    stage's output added to the running sum. NCSN pools by averaging (App. A.3), NCSNv2 by
    the maximum (the original RefineNet's choice)."""

    def __init__(self, c: int, n_stages: int, norm: NormFactory, act: nn.Module, maxpool: bool) -> None:
        super().__init__()
        self.act = act
        self.norms = nn.ModuleList(norm(c) for _ in range(n_stages))
        self.convs = nn.ModuleList(conv3(c, c, bias=False) for _ in range(n_stages))
        self.pool = nn.MaxPool2d(5, 1, 2) if maxpool else nn.AvgPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        path = x
        for n, conv in zip(self.norms, self.convs):
            path = conv(self.pool(n(path, y)))
            x = path + x
        return x


class RefineBlock(nn.Module):
    """A RefineNet block (App. A.3): RCU(2 × 2) per input, MSF (none for the first, single
    input), CRP (2 stages), then an output RCU (3 blocks in the last refine block, else 1)."""

    def __init__(
        self,
        cins: list[int],
        c: int,
        norm: NormFactory,
        act: nn.Module,
        start: bool,
        end: bool,
        maxpool: bool,
    ) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(RCU(ci, 2, 2, norm, act) for ci in cins)
        self.msf = None if start else MSF(cins, c, norm)
        self.crp = CRP(c, 2, norm, act, maxpool)
        self.out = RCU(c, 3 if end else 1, 2, norm, act)

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor, size: torch.Size) -> torch.Tensor:
        hs = [a(x, y) for a, x in zip(self.adapt, xs)]
        h = hs[0] if self.msf is None else self.msf(hs, y, size)
        return self.out(self.crp(h, y), y)
