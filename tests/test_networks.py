"""Score networks: parameter parity with the official code, shapes, conditioning, Technique 3."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncsn_core import registry
from ncsn_core.errors import ReproError
from ncsn_core.networks import count_parameters
from ncsn_core.networks.layers import CRP, CondInstanceNormPP, InstanceNormPP, NoNorm

# name, ngf, per-sample shape, L, the official count (reference.md "Architecture facts")
OFFICIAL = [
    ("ncsn", 128, (3, 32, 32), 10, 30_117_635),  # NCSN CIFAR-10 / CelebA
    ("ncsn", 64, (1, 28, 28), 10, 7_638_657),  # NCSN MNIST
    ("ncsnv2", 128, (3, 32, 32), 232, 29_694_083),  # NCSNv2 CIFAR-10
    ("ncsnv2_deeper", 128, (3, 96, 96), 788, 83_445_379),  # LSUN church
    ("ncsnv2_deeper", 128, (3, 128, 128), 1086, 83_445_379),  # LSUN bedroom / tower
    ("ncsnv2_deepest", 128, (3, 256, 256), 2311, 94_132_611),  # FFHQ
]

SIGMAS = torch.tensor([1.0, 0.3, 0.1])


@pytest.mark.parametrize("name,ngf,shape,levels,expected", OFFICIAL)
def test_parameter_counts_match_the_official_networks(
    name: str, ngf: int, shape: tuple, levels: int, expected: int
) -> None:
    assert count_parameters(name, {"ngf": ngf}, shape, levels) == expected


def test_ncsnv2_count_does_not_depend_on_levels() -> None:
    assert count_parameters("ncsnv2", {"ngf": 8}, (3, 16, 16), 3) == count_parameters(
        "ncsnv2", {"ngf": 8}, (3, 16, 16), 500
    )


def test_ncsn_count_is_linear_in_levels() -> None:
    # Only the CondInstanceNorm++ embeddings (L × 3C each) grow with L; L = 1 is the
    # single-σ baseline of NCSN §4.
    c1, c2, c10 = (count_parameters("ncsn", {"ngf": 8}, (1, 8, 8), n) for n in (1, 2, 10))
    assert c10 - c1 == 9 * (c2 - c1) and c2 > c1


def test_count_parameters_rejects_bad_params() -> None:
    with pytest.raises(ValueError, match="ngf"):
        count_parameters("ncsn", {"ngf": 0}, (3, 32, 32), 10)


def build(name: str, shape: tuple, L: int = 3, **params: Any) -> nn.Module:
    comp = registry.lookup("network", name)
    full, errors = comp.check_params(params)
    assert not errors
    torch.manual_seed(0)
    return comp.builder(**full, shape=shape, sigmas=SIGMAS[:L].clone())


@pytest.mark.parametrize("name", ["ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_forward_shapes(name: str, shape: tuple) -> None:
    net = build(name, shape, ngf=8)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["ncsn", "ncsnv2"])
def test_mnist_size_forward_and_backward(name: str) -> None:
    net = build(name, (1, 28, 28), ngf=4)
    x = torch.rand(2, 1, 28, 28)
    out = net(x, torch.tensor([1, 2]))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_single_level_ncsn_runs() -> None:
    net = build("ncsn", (1, 8, 8), L=1, ngf=4)
    with torch.no_grad():
        out = net(torch.rand(3, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()


def test_centered_maps_inputs_to_minus_one_one() -> None:
    a = build("ncsnv2", (1, 8, 8), ngf=4, centered=True)
    b = build("ncsnv2", (1, 8, 8), ngf=4, centered=False)
    x, idx = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(a(x, idx), b(2 * x - 1, idx), atol=1e-5)


def test_ncsn_is_noise_conditional() -> None:
    net = build("ncsn", (1, 8, 8), ngf=4)
    with torch.no_grad():  # break the symmetry of the default initialisation between levels
        for m in net.modules():
            if isinstance(m, CondInstanceNormPP):
                m.embed.weight.normal_(1.0, 0.5)
        x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
        out = net(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_normalisation_layout_of_ncsn_and_ncsnv2() -> None:
    # NCSN: CondInstanceNorm++ everywhere and average pooling; NCSNv2: InstanceNorm++ in the
    # residual blocks and the final norm only, unnormalised refine blocks, max pooling.
    v1, v2 = build("ncsn", (1, 8, 8), ngf=4), build("ncsnv2", (1, 8, 8), ngf=4)
    assert not any(isinstance(m, (InstanceNormPP, NoNorm)) for m in v1.modules())
    assert all(isinstance(m.pool, nn.AvgPool2d) for m in v1.modules() if isinstance(m, CRP))
    assert not any(isinstance(m, CondInstanceNormPP) for m in v2.modules())
    assert all(isinstance(m.pool, nn.MaxPool2d) for m in v2.modules() if isinstance(m, CRP))
    assert not any(isinstance(m, InstanceNormPP) for m in v2.refines.modules())
    assert isinstance(v2.final_norm, InstanceNormPP) and v2.final_norm.beta.numel() == 4


def _cond_in_pp_reference(x: torch.Tensor, gamma: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
    mu = x.mean((2, 3))
    mt = (mu - mu.mean(-1, keepdim=True)) / torch.sqrt(mu.var(-1, keepdim=True) + 1e-5)
    inorm = (x - mu[..., None, None]) / torch.sqrt(x.var((2, 3), unbiased=False)[..., None, None] + 1e-5)
    return (
        gamma[..., None, None] * (inorm + alpha[..., None, None] * mt[..., None, None])
        + beta[..., None, None]
    )


def test_cond_instance_norm_pp_formula() -> None:
    torch.manual_seed(0)
    n = CondInstanceNormPP(3, 2)
    assert n.embed.weight.shape == (2, 9)  # L × 3C (reference.md)
    with torch.no_grad():
        n.embed.weight.normal_()
    x = torch.randn(2, 3, 5, 5)
    y = torch.tensor([0, 1])
    gamma, alpha, beta = n.embed(y).chunk(3, -1)
    assert torch.allclose(n(x, y), _cond_in_pp_reference(x, gamma, alpha, beta), atol=1e-5)
    # the same input at another level gives another output
    assert not torch.allclose(n(x[:1], y[:1]), n(x[:1], y[1:]))


def test_cond_instance_norm_pp_keeps_the_channel_means() -> None:
    # Plain instance norm forgets per-channel means (App. A.1: shifted colours); the ++ term
    # α·(μ_k − m)/√v keeps their relative pattern.
    torch.manual_seed(0)
    n = CondInstanceNormPP(3, 1)
    x = torch.randn(1, 3, 4, 4)
    shifted = x + torch.tensor([2.0, -1.0, 0.5])[None, :, None, None]
    y = torch.zeros(1, dtype=torch.long)
    assert torch.allclose(F.instance_norm(x), F.instance_norm(shifted), atol=1e-5)
    assert not torch.allclose(n(x, y), n(shifted, y), atol=1e-3)
    # a shift common to all channels changes nothing
    assert torch.allclose(n(x, y), n(x + 3.0, y), atol=1e-4)


def test_instance_norm_pp() -> None:
    torch.manual_seed(0)
    p = InstanceNormPP(3)
    assert sum(t.numel() for t in p.parameters()) == 9  # α, γ, β
    with torch.no_grad():
        p.beta.normal_()
    x = torch.randn(2, 3, 5, 5)
    ref = _cond_in_pp_reference(x, p.gamma.expand(2, 3), p.alpha.expand(2, 3), p.beta.expand(2, 3))
    assert torch.allclose(p(x), ref, atol=1e-5)
    assert torch.isfinite(InstanceNormPP(1)(torch.randn(2, 1, 4, 4))).all()  # one channel: no NaN


@pytest.mark.parametrize("name", ["ncsnv2", "ncsnv2_deeper"])
def test_ncsnv2_divides_by_sigma(name: str) -> None:
    net = build(name, (1, 8, 8), ngf=4)
    x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 2]))
    assert torch.allclose(out[1], out[0] * (1.0 / 0.1), rtol=1e-4, atol=1e-5)  # σ₁/σ₃ = 10


def test_mlp_defaults_are_the_toy_network() -> None:
    # App. B.1: Linear(2,128) softplus Linear(128,128) softplus Linear(128,2)
    assert count_parameters("mlp", {}, (2,), 10) == (2 * 128 + 128) + (128 * 128 + 128) + (128 * 2 + 2)


def test_mlp_unconditional_ignores_the_level() -> None:
    net = build("mlp", (2,), hidden=16)
    x = torch.randn(1, 2).repeat(3, 1)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 1, 2]))
        # One row at a time: BLAS may round rows of one batch differently, the level must not matter.
        rows = [net(x[:1], torch.tensor([k])) for k in range(3)]
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2])
    scaled = build("mlp", (2,), hidden=16, scale_by_sigma=True)
    with torch.no_grad():
        s = scaled(x, torch.tensor([0, 1, 2]))
    assert torch.allclose(s * SIGMAS[:, None], out, atol=1e-6)  # Technique 3: s(x)/σ


def test_mlp_conditional_and_scaled() -> None:
    net = build("mlp", (2,), conditional=True, scale_by_sigma=True, hidden=16)
    x = torch.randn(1, 2).repeat(2, 1)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 1]))
    assert out.shape == (2, 2) and not torch.allclose(out[0] * 1.0, out[1] * 0.3)
    flat = build("mlp", (1, 4, 4), hidden=8)
    assert flat(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long)).shape == (3, 1, 4, 4)


def test_image_networks_reject_flat_data() -> None:
    with pytest.raises(ReproError, match="use mlp"):
        build("ncsnv2", (2,), ngf=4)
