"""Every built-in component's declaration: name, typed parameters, docs, facts, and where its
implementation lives. These modules import no torch; :mod:`ncsn_core.registry` assembles them
(with third-party plug-ins) into the one registry.

To add a component: write the implementation (any module), then one ``declare(...)`` here
naming it as ``"module:function"``. The checker, ``repro explain`` and docs/language.md follow.
"""

from __future__ import annotations

from ncsn_core.declarations import ansn, data, losses, metrics, networks, noise, optim, released, samplers
from ncsn_core.params import Declaration

ALL: tuple[Declaration, ...] = (
    *data.DECLARATIONS,
    *noise.DECLARATIONS,
    *networks.DECLARATIONS,
    *losses.DECLARATIONS,
    *samplers.DECLARATIONS,
    *optim.DECLARATIONS,
    *metrics.DECLARATIONS,
    *ansn.DECLARATIONS,
    *released.DECLARATIONS,
)
