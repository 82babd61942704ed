"""ncsn_core: data, noise, losses, networks, samplers, training and evaluation.

Knows nothing of the `.exp` text: everything it offers is registered in
:mod:`ncsn_core.registry` and driven by a lowered ``RunSpec``.
"""

__version__ = "0.1.0"
