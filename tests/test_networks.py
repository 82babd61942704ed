"""Score networks: parameter parity with the official code, shapes, conditioning, Technique 3."""

from __future__ import annotations

import pytest
import torch

from ncsn_core import registry
from ncsn_core.networks import count_parameters
from ncsn_core.networks.refinenet import CondInstanceNormPP, InstanceNormPP

OFFICIAL = [
    ("ncsn", 128, (3, 32, 32), 10, 30_117_635),  # NCSN CIFAR-10
    ("ncsn", 64, (1, 28, 28), 10, 7_638_657),  # NCSN MNIST
    ("ncsnv2", 128, (3, 32, 32), 232, 29_694_083),  # NCSNv2 CIFAR-10
    ("ncsnv2_deeper", 128, (3, 128, 128), 1086, 83_445_379),  # LSUN bedroom/tower
    ("ncsnv2_deepest", 128, (3, 256, 256), 2311, 94_132_611),  # FFHQ
]


@pytest.mark.parametrize("name,ngf,shape,levels,expected", OFFICIAL)
def test_parameter_counts_match_the_official_networks(
    name: str, ngf: int, shape: tuple, levels: int, expected: int
) -> None:
    assert count_parameters(name, {"ngf": ngf}, shape, levels) == expected


def test_ncsnv2_count_does_not_depend_on_levels() -> None:
    assert count_parameters("ncsnv2", {"ngf": 8}, (3, 16, 16), 3) == count_parameters(
        "ncsnv2", {"ngf": 8}, (3, 16, 16), 500
    )


def build(name: str, shape: tuple, L: int = 3, **params) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    comp = registry.lookup("network", name)
    full, errors = comp.check_params(params)
    assert not errors
    torch.manual_seed(0)
    return comp.builder(**full, shape=shape, sigmas=torch.tensor([1.0, 0.3, 0.1][:L]))


@pytest.mark.parametrize("name", ["ncsn", "ncsnv2", "ncsnv2_deeper"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (1, 28, 28)])
def test_forward_shapes(name: str, shape: tuple) -> None:
    net = build(name, shape, ngf=4)
    x = torch.rand(2, *shape)
    out = net(x, torch.tensor([0, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_ncsn_is_noise_conditional() -> None:
    net = build("ncsn", (1, 8, 8), ngf=4)
    with torch.no_grad():  # break the symmetry of the default initialisation between levels
        for m in net.modules():
            if isinstance(m, CondInstanceNormPP):
                m.embed.weight.normal_(1.0, 0.5)
    x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
    out = net(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_cond_instance_norm_pp_formula() -> None:
    n = CondInstanceNormPP(3, 2)
    x = torch.randn(2, 3, 5, 5)
    y = torch.tensor([0, 1])
    gamma, alpha, beta = n.embed(y).chunk(3, -1)
    mu = x.mean((2, 3))
    mt = (mu - mu.mean(-1, keepdim=True)) / torch.sqrt(mu.var(-1, keepdim=True) + 1e-5)
    inorm = (x - mu[..., None, None]) / torch.sqrt(x.var((2, 3), unbiased=False)[..., None, None] + 1e-5)
    expected = (
        gamma[..., None, None] * (inorm + alpha[..., None, None] * mt[..., None, None])
        + beta[..., None, None]
    )
    assert torch.allclose(n(x, y), expected, atol=1e-5)
    assert n.embed.weight.shape == (2, 9)  # L × 3C (reference.md)
    p = InstanceNormPP(3)
    assert sum(t.numel() for t in p.parameters()) == 9


def test_ncsnv2_divides_by_sigma() -> None:
    net = build("ncsnv2", (1, 8, 8), ngf=4)
    x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
    out = net(x, torch.tensor([0, 2]))
    assert torch.allclose(out[1], out[0] * (1.0 / 0.1), rtol=1e-4, atol=1e-5)  # σ₁/σ₃ = 10


def test_mlp_conditional_and_scaled() -> None:
    net = build("mlp", (2,), conditional=True, scale_by_sigma=True, hidden=16)
    with torch.no_grad():
        for e in net.embed:
            e.weight.normal_()
    x = torch.randn(1, 2).repeat(2, 1)
    out = net(x, torch.tensor([0, 1]))
    assert out.shape == (2, 2) and not torch.allclose(out[0] * 1.0, out[1] * 0.3)
    flat = build("mlp", (1, 4, 4), hidden=8)
    assert flat(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long)).shape == (3, 1, 4, 4)
