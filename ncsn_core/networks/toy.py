"""The toy score network of NCSN App. B.1: a 3-layer MLP, 128 hidden units, softplus."""

from __future__ import annotations

import math

import torch
from torch import nn

_ACTS = {"softplus": nn.Softplus, "elu": nn.ELU, "relu": nn.ReLU, "swish": nn.SiLU}


class MLP(nn.Module):
    """s(x) or s(x, σ_i): a learned per-level embedding is added to every hidden layer when
    noise-conditional; with scale_by_sigma the output is divided by σ_i (NCSNv2 Technique 3)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        layers: int,
        act: str,
        conditional: bool,
        scale_by_sigma: bool,
        sigmas: torch.Tensor,
    ) -> None:
        super().__init__()
        dims = [dim] + [hidden] * (layers - 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], dim)
        self.act = _ACTS[act]()
        L = int(sigmas.numel())
        self.embed = nn.ModuleList(nn.Embedding(L, hidden) for _ in self.linears) if conditional else None
        self.scale_by_sigma = scale_by_sigma
        self.register_buffer("sigmas", sigmas.float().clone())

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)  # images are flattened
        for k, lin in enumerate(self.linears):
            h = lin(h)
            if self.embed is not None:
                h = h + self.embed[k](idx)
            h = self.act(h)
        out = self.out(h)
        if self.scale_by_sigma:
            out = out / self.sigmas[idx].clamp(min=1e-12)[:, None]
        return out.view_as(x)


def mlp(
    hidden: int,
    layers: int,
    act: str,
    conditional: bool,
    scale_by_sigma: bool,
    shape: tuple[int, ...],
    sigmas: torch.Tensor,
) -> MLP:
    return MLP(math.prod(shape), hidden, layers, act, conditional, scale_by_sigma, sigmas)
