"""Optimizers the papers use (NCSN App. B.2: Adam, lr 1e-3; NCSNv2: Adam, lr 1e-4);
implementations: :mod:`ncsn_core.optim`."""

from __future__ import annotations

from ncsn_core.params import Bool, Float, Param, declare

_IMPL = "ncsn_core.optim:"
_LR = Param("lr", Float(min=0.0, exclusive_min=True), 1e-3, "learning rate")
_WD = Param("weight_decay", Float(min=0.0), 0.0, "L2 weight decay")

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("optimizer", "adam", _IMPL + "adam",
        params=[
            _LR,
            Param("beta1", Float(0.0, 1.0), 0.9, "Adam β₁"),
            Param("beta2", Float(0.0, 1.0), 0.999, "Adam β₂"),
            Param("eps", Float(min=0.0, exclusive_min=True), 1e-8, "Adam ε (NCSNv2 FFHQ uses 1e-3)"),
            _WD,
            Param("amsgrad", Bool(), False, "use the AMSGrad variant"),
        ],
        doc="Adam (Kingma & Ba); the optimizer of both NCSN papers",
    ),
    declare("optimizer", "rmsprop", _IMPL + "rmsprop",
        params=[_LR, Param("alpha", Float(0.0, 1.0), 0.99, "smoothing constant"), _WD],
        doc="RMSprop (an option of the official NCSN code)",
    ),
    declare("optimizer", "sgd", _IMPL + "sgd",
        params=[_LR, Param("momentum", Float(0.0, 1.0), 0.9, "momentum"), _WD],
        doc="SGD with momentum (an option of the official NCSN code)",
    ),
)
# fmt: on
