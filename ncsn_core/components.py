"""Importing this module registers every component the language can name."""

from ncsn_core import (  # noqa: F401
    ansn,
    blocks,
    data,
    exact,
    losses,
    networks,
    noise,
    optim,
    samplers,
)
from ncsn_core.evaluation import metrics  # noqa: F401
