"""The plug-in's implementation: NCSN's DSM with its weight scaled."""

from ncsn_core.losses import DSM
from ncsn_core.values import Expr


def scaled_dsm(scale: float) -> DSM:
    return DSM(Expr(("*", ("num", scale), ("**", ("sym", "sigma"), ("num", 2)))))
