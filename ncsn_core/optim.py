"""Optimizers the papers use (NCSN App. B.2: Adam, lr 1e-3; NCSNv2: Adam, lr 1e-4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def adam(
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool
) -> OptimizerFactory:
    return lambda ps: torch.optim.Adam(
        ps, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


def rmsprop(lr: float, alpha: float, weight_decay: float) -> OptimizerFactory:
    return lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=alpha, weight_decay=weight_decay)


def sgd(lr: float, momentum: float, weight_decay: float) -> OptimizerFactory:
    return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)
