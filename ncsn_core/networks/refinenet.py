"""The RefineNet score networks of NCSN (App. A) and NCSNv2 (Technique 3).

NCSN: a 4-cascade RefineNet with dilated residual blocks and CondInstanceNorm++ before
every convolution and pooling, average pooling in the chained residual pooling (CRP).
NCSNv2: unconditional InstanceNorm++ in the residual blocks (and the final norm) only, no
normalisation in the refine blocks, max pooling in CRP, output divided by σ.
The layer widths follow the official implementations, so parameter counts match theirs
(30,117,635 for NCSN CIFAR-10; 29,694,083 for NCSNv2 CIFAR-10; see tests/test_networks.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ncsn_core.registry import Bool, Choice, Int, Param, register

_ACTS: dict[str, Callable[[], nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "swish": nn.SiLU}


# ----------------------------------------------------------------------------- normalisation
def _standardised_means(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IN(x) and the per-channel means standardised across channels: (μ_c − m)/√(v + 1e-5)."""
    mu = x.mean(dim=(2, 3))
    m = mu.mean(-1, keepdim=True)
    v = mu.var(-1, keepdim=True)
    return F.instance_norm(x, eps=1e-5), (mu - m) / torch.sqrt(v + 1e-5)


class CondInstanceNormPP(nn.Module):
    """CondInstanceNorm++ (NCSN App. A.1): z = γ[i]·(IN(x) + α[i]·μ̃) + β[i]; one embedding of
    size L × 3C holds γ, α (initialised N(1, 0.02)) and β (zero)."""

    def __init__(self, c: int, levels: int) -> None:
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(levels, 3 * c)
        if self.embed.weight.device.type != "meta":
            with torch.no_grad():
                self.embed.weight[:, : 2 * c].normal_(1.0, 0.02)
                self.embed.weight[:, 2 * c :].zero_()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, mu = _standardised_means(x)
        gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        h = h + mu[..., None, None] * alpha[..., None, None]
        return gamma[..., None, None] * h + beta[..., None, None]


class InstanceNormPP(nn.Module):
    """InstanceNorm++ (NCSNv2): the same without conditioning; γ, α ~ N(1, 0.02), β = 0."""

    def __init__(self, c: int, levels: int = 0) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(c))
        self.gamma = nn.Parameter(torch.empty(c))
        self.beta = nn.Parameter(torch.zeros(c))
        if self.alpha.device.type != "meta":
            with torch.no_grad():
                self.alpha.normal_(1.0, 0.02)
                self.gamma.normal_(1.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h, mu = _standardised_means(x)
        h = h + mu[..., None, None] * self.alpha[None, :, None, None]
        return self.gamma[None, :, None, None] * h + self.beta[None, :, None, None]


class _NoNorm(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x


# ----------------------------------------------------------------------------- convolutions
def conv3(cin: int, cout: int, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class ConvMeanPool(nn.Module):
    """Convolution then 2×2 mean pooling (the official down-sampling)."""

    def __init__(self, cin: int, cout: int, k: int, adjust_padding: bool = False) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 1, 0)) if adjust_padding else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.pad(x))
        return F.avg_pool2d(h, 2) if min(h.shape[-2:]) >= 2 else h


class ResidualBlock(nn.Module):
    """Pre-activation residual block; 'down' halves the resolution unless dilated (App. A.2:
    dilations replace every subsampling but the first)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        norm: Callable[[int], nn.Module],
        act: nn.Module,
        resample: str | None,
        dilation: int = 1,
        adjust_padding: bool = False,
        v2: bool = False,
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
        else:
            self.conv1 = conv3(cin, cout, dilation=dilation)
            self.norm2 = norm(cout)
            self.conv2 = conv3(cout, cout, dilation=dilation)
            if dilation > 1:
                shortcut = lambda a, b: conv3(a, b, dilation=dilation)  # noqa: E731
            else:  # NCSNv2: a 1×1 convolution
                shortcut = lambda a, b: nn.Conv2d(a, b, 1)  # noqa: E731
        self.shortcut = shortcut(cin, cout) if (cin != cout or resample is not None) else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x, y)))
        h = self.conv2(self.act(self.norm2(h, y)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class RCU(nn.Module):
    """Residual conv units: n_blocks × (norm → act → conv) × n_stages, each block residual."""

    def __init__(
        self, c: int, n_blocks: int, n_stages: int, norm: Callable[[int], nn.Module], act: nn.Module
    ) -> None:
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
    """Multi-resolution fusion: norm → conv per input, bilinear upsampling, sum."""

    def __init__(self, cins: list[int], c: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norms = nn.ModuleList(norm(ci) for ci in cins)
        self.convs = nn.ModuleList(conv3(ci, c, bias=True) for ci in cins)

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        out = 0
        for x, n, conv in zip(xs, self.norms, self.convs):
            out = out + F.interpolate(conv(n(x, y)), size=shape, mode="bilinear", align_corners=True)
        return out  # type: ignore[return-value]


class CRP(nn.Module):
    """Chained residual pooling: act, then n_stages × (norm → pool 5×5 → conv) accumulated."""

    def __init__(
        self, c: int, n_stages: int, norm: Callable[[int], nn.Module], act: nn.Module, maxpool: bool
    ) -> None:
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
    def __init__(
        self,
        cins: list[int],
        c: int,
        norm: Callable[[int], nn.Module],
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

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        hs = [a(x, y) for a, x in zip(self.adapt, xs)]
        h = hs[0] if self.msf is None else self.msf(hs, y, shape)
        return self.out(self.crp(h, y), y)


# ----------------------------------------------------------------------------- the networks
# Encoder stages: (in, out, resample, dilation) per residual block, in multiples of ngf.
_ENC = {
    "ncsn": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
             [(2, 2, "down", 2), (2, 2, None, 2)], [(2, 2, "down", 4), (2, 2, None, 4)]],
    "deeper": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
               [(2, 2, "down", 1), (2, 2, None, 1)], [(2, 4, "down", 2), (4, 4, None, 2)],
               [(4, 4, "down", 4), (4, 4, None, 4)]],
    "deepest": [[(1, 1, None, 1), (1, 1, None, 1)], [(1, 2, "down", 1), (2, 2, None, 1)],
                [(2, 2, "down", 1), (2, 2, None, 1)], [(2, 2, "down", 1), (2, 2, None, 1)],
                [(2, 4, "down", 2), (4, 4, None, 2)], [(4, 4, "down", 4), (4, 4, None, 4)]],
}  # fmt: skip


def _decoder(enc: list[list[tuple]]) -> list[tuple[list[int], int]]:
    """Refine blocks from the deepest stage up; each fuses a stage with the previous output.
    The output width steps down to the next (shallower) stage's width."""
    widths = [stage[-1][1] for stage in enc]  # output width of each stage
    dec = [([widths[-1]], widths[-1])]
    for k in range(len(enc) - 2, -1, -1):
        dec.append(([widths[k], dec[-1][1]], widths[k - 1] if k > 0 else widths[0]))
    return dec


class RefineNet(nn.Module):
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
        L = int(sigmas.numel())
        self.act = _ACTS[act]()
        self.centered = centered
        self.conditional = conditional
        if conditional:
            norm: Callable[[int], nn.Module] = lambda ch: CondInstanceNormPP(ch, L)  # noqa: E731
            refine_norm = norm
        else:
            norm = InstanceNormPP
            refine_norm = lambda ch: _NoNorm()  # noqa: E731
        enc = _ENC[arch]
        self.begin = nn.Conv2d(c, ngf, 3, padding=1)
        self.stages = nn.ModuleList()
        for si, stage in enumerate(enc):
            blocks = nn.ModuleList()
            for cin, cout, res, dil in stage:
                # 28×28 (MNIST): the last down-sampling of the official net pads asymmetrically.
                adjust = h == 28 and si == len(enc) - 1 and res == "down"
                blocks.append(
                    ResidualBlock(cin * ngf, cout * ngf, norm, self.act, res, dil, adjust, not conditional)
                )
            self.stages.append(blocks)
        dec = _decoder([[(a * ngf, b * ngf, r, d) for a, b, r, d in st] for st in enc])
        n = len(dec)
        self.refines = nn.ModuleList(
            RefineBlock(cins, cout, refine_norm, self.act, k == 0, k == n - 1, maxpool=not conditional)
            for k, (cins, cout) in enumerate(dec)
        )
        self.final_norm = CondInstanceNormPP(ngf, L) if conditional else InstanceNormPP(ngf)
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
        if not self.conditional:  # Technique 3: s(x, σ) = s(x)/σ
            out = out / self.sigmas[idx].view(-1, *([1] * (x.dim() - 1)))
        return out


_COMMON = [
    Param("act", Choice(tuple(_ACTS)), "elu", "activation (the papers: ELU)"),
    Param("centered", Bool(), True, "map inputs from [0, 1] to [-1, 1] first, as the official code"),
]


def _check_image(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 3:
        from ncsn_core.errors import ReproError

        raise ReproError(f"network {name} is for images (C×H×W); this data has shape {shape}: use mlp")


@register(
    "network",
    "ncsn",
    params=[Param("ngf", Int(min=1), 128, "filters of the first cascade (CIFAR-10/CelebA: 128; MNIST: 64)")]
    + _COMMON,
    doc="NCSN: RefineNet, dilations, CondInstanceNorm++ (NCSN App. A); 30,117,635 parameters at CIFAR-10 size",
)
def ncsn(ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor) -> RefineNet:
    _check_image(shape, "ncsn")
    return RefineNet(shape, ngf, act, centered, sigmas, "ncsn", conditional=True)


def _v2(arch: str, doc: str) -> None:
    name = {"ncsn": "ncsnv2", "deeper": "ncsnv2_deeper", "deepest": "ncsnv2_deepest"}[arch]

    @register(
        "network",
        name,
        params=[Param("ngf", Int(min=1), 128, "filters of the first cascade")] + _COMMON,
        doc=doc,
    )
    def build(ngf: int, act: str, centered: bool, shape: tuple[int, ...], sigmas: torch.Tensor) -> RefineNet:
        _check_image(shape, name)
        return RefineNet(shape, ngf, act, centered, sigmas, arch, conditional=False)


_v2("ncsn", "NCSNv2 (Technique 3: s(x)/σ, InstanceNorm++): 29,694,083 parameters at CIFAR-10 size")
_v2("deeper", "NCSNv2Deeper (5 cascades; LSUN church/bedroom/tower): 83,445,379 parameters")
_v2("deepest", "NCSNv2Deepest (6 cascades; FFHQ 256): 94,132,611 parameters")
