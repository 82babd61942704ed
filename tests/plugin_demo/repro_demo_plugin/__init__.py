"""A demo plug-in: declares `loss scaled_dsm` (no torch here; the implementation is imported
only when a run builds it)."""

from ncsn_core.params import Float, Param, declare

DECLARATIONS = [
    declare(
        "loss",
        "scaled_dsm",
        "repro_demo_plugin.impl:scaled_dsm",
        params=[Param("scale", Float(min=0.0, exclusive_min=True), 1.0, "c in λ(σ) = c·σ²")],
        doc="denoising score matching with λ(σ) = c·σ² (a plug-in from tests/plugin_demo)",
    )
]
