"""Noise schedules (implementations: :mod:`ncsn_core.noise`; ANSN's adaptive noise is in
:mod:`ncsn_core.declarations.ansn`)."""

from __future__ import annotations

from typing import Any

from ncsn_core.errors import ParamError
from ncsn_core.params import Float, Int, NoiseFacts, Param, declare

_IMPL = "ncsn_core.noise:"
_TECH = "ncsn_core.techniques:"


def ladder(kind: str) -> NoiseFacts:
    """σ₁ = sigma_max > … > σ_L = sigma_min, geometric (NCSN §4.1) or linear; one level is
    [sigma_min] (App. B.2's single-σ baseline)."""

    def sigmas(p: dict[str, Any]) -> list[float]:
        smax, smin, n = float(p["sigma_max"]), float(p["sigma_min"]), int(p["levels"])
        if n == 1:
            return [smin]
        if smin >= smax:
            raise ParamError(
                f"sigma_min ({smin:g}) must be smaller than sigma_max ({smax:g}) for a ladder of {n} levels"
            )
        if kind == "geometric":
            return [smax * (smin / smax) ** (i / (n - 1)) for i in range(n)]
        return [smax + (smin - smax) * i / (n - 1) for i in range(n)]

    return NoiseFacts(sigmas)


def _ladder_params(auto: bool) -> list[Param]:
    return [
        Param(
            "sigma_max",
            Float(min=0.0, exclusive_min=True),
            1.0,
            "largest noise level σ₁" + (" (auto: NCSNv2 Technique 1, max pairwise distance)" if auto else ""),
            auto=_TECH + "auto_sigma_max" if auto else None,
        ),
        Param("sigma_min", Float(min=0.0, exclusive_min=True), 0.01, "smallest noise level σ_L"),
        Param(
            "levels",
            Int(min=1),
            10,
            "number of levels L" + (" (auto: NCSNv2 Technique 2, from the Φ equation)" if auto else ""),
            auto=_TECH + "auto_levels" if auto else None,
        ),
    ]


# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("noise", "geometric", _IMPL + "geometric",
        params=_ladder_params(True)
        + [
            Param("overlap", Float(0.0, 1.0), 0.5, "C of Technique 2's Φ equation (poster: ≈ 0.5; official configs: 0.567)"),
            Param("subsample", Int(min=0), 0, "Technique 1 on a random subset of this many points (0 = all, exact)"),
        ],
        doc="isotropic Gaussian noise, σ a geometric progression (NCSN §4.1)",
        facts=ladder("geometric"),
    ),
    declare("noise", "linear", _IMPL + "linear",
        params=_ladder_params(False),
        doc="isotropic Gaussian noise, σ evenly spaced",
        facts=ladder("linear"),
    ),
    declare("noise", "none", _IMPL + "none",
        doc="no perturbation: score matching on the data itself (NCSN Fig. 1-2 with SSM)",
    ),
)
# fmt: on
