"""Training objectives (implementations: :mod:`ncsn_core.losses`)."""

from __future__ import annotations

from ncsn_core.params import Choice, ExprType, Int, Param, declare
from ncsn_core.values import Expr

_IMPL = "ncsn_core.losses:"
SIGMA_SQUARED = Expr(("**", ("sym", "sigma"), ("num", 2)))  # λ(σ) = σ², NCSN §4.2

_PROJECTIONS = ("gaussian", "rademacher", "sphere", "unit")


def _projection(default: str) -> Param:
    return Param(
        "projection",
        Choice(_PROJECTIONS),
        default,
        "distribution p_v of the projections: gaussian N(0, I), rademacher, sphere (uniform on the "
        "√D-sphere), unit (Gaussian normalised to length 1, E[vvᵀ] = I/D: the official "
        "losses/sliced_sm.py's plain sliced_score_estimation)",
    )


_SSM_PARAMS = [
    Param("n_particles", Int(min=1), 1, "random projections per data point"),
    _projection("gaussian"),
    Param(
        "weight",
        ExprType(("sigma",)),
        SIGMA_SQUARED,
        "λ(σ) with a noise ladder (Eq. 6; official code: σ²); unused with noise none",
    ),
]

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("loss", "dsm", _IMPL + "dsm",
        params=[
            Param("weight", ExprType(("sigma",)), SIGMA_SQUARED, "λ(σ) of Eq. 6 (NCSN: σ², so every level's loss has the same magnitude)")
        ],
        doc="denoising score matching over the noise levels (NCSN Eq. 5-6)",
    ),
    declare("loss", "ssm", _IMPL + "ssm",
        params=[_SSM_PARAMS[0], _projection("unit"), *_SSM_PARAMS[2:]],
        doc="sliced score matching, plain form of Song et al. 2019: E[vᵀ∇s v + ½(vᵀs)²] (not NCSN Eq. 3: see ssm_vr)",
    ),
    declare("loss", "ssm_vr", _IMPL + "ssm_vr",
        params=_SSM_PARAMS,
        doc="sliced score matching, variance-reduced (SSM-VR): E[vᵀ∇s v + ½‖s‖²], NCSN Eq. 3 and the official toy runner",
    ),
)
# fmt: on
