"""Optimizers the papers use (NCSN App. B.2: Adam, lr 1e-3; NCSNv2: Adam, lr 1e-4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ncsn_core.registry import Bool, Float, Param, register

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]

_LR = Param("lr", Float(min=0.0, exclusive_min=True), 1e-3, "learning rate")
_WD = Param("weight_decay", Float(min=0.0), 0.0, "L2 weight decay")


@register(
    "optimizer",
    "adam",
    params=[
        _LR,
        Param("beta1", Float(0.0, 1.0), 0.9, "Adam β₁"),
        Param("beta2", Float(0.0, 1.0), 0.999, "Adam β₂"),
        Param("eps", Float(min=0.0, exclusive_min=True), 1e-8, "Adam ε (NCSNv2 FFHQ uses 1e-3)"),
        _WD,
        Param("amsgrad", Bool(), False, "use the AMSGrad variant"),
    ],
    doc="Adam (Kingma & Ba); the optimizer of both NCSN papers",
)
def adam(
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool
) -> OptimizerFactory:
    return lambda ps: torch.optim.Adam(
        ps, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


@register(
    "optimizer",
    "rmsprop",
    params=[_LR, Param("alpha", Float(0.0, 1.0), 0.99, "smoothing constant"), _WD],
    doc="RMSprop (an option of the official NCSN code)",
)
def rmsprop(lr: float, alpha: float, weight_decay: float) -> OptimizerFactory:
    return lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=alpha, weight_decay=weight_decay)


@register(
    "optimizer",
    "sgd",
    params=[_LR, Param("momentum", Float(0.0, 1.0), 0.9, "momentum"), _WD],
    doc="SGD with momentum (an option of the official NCSN code)",
)
def sgd(lr: float, momentum: float, weight_decay: float) -> OptimizerFactory:
    return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)
