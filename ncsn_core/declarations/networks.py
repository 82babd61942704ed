"""Score networks (implementations: :mod:`ncsn_core.networks`). Each builder is called as
``builder(**params, shape=per_sample_shape, sigmas=L_sigmas_decreasing)``."""

from __future__ import annotations

from ncsn_core.params import Bool, Choice, Int, Param, declare

_IMPL = "ncsn_core.networks:"
REFINENET_ACTS = ("elu", "relu", "swish")
MLP_ACTS = ("softplus", "elu", "relu", "swish")
_COMMON = [
    Param("act", Choice(REFINENET_ACTS), "elu", "activation (the papers: ELU)"),
    Param("centered", Bool(), True, "map inputs from [0, 1] to [-1, 1] first, as the official code"),
]
_NGF = Param("ngf", Int(min=1), 128, "filters of the first cascade")

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("network", "mlp", _IMPL + "mlp",
        params=[
            Param("hidden", Int(min=1), 128, "hidden units per layer"),
            Param("layers", Int(min=1), 3, "linear layers (the last maps to the output)"),
            Param("act", Choice(MLP_ACTS), "softplus", "activation"),
            Param("conditional", Bool(), False, "condition on the noise level (a learned embedding per level)"),
            Param("scale_by_sigma", Bool(), False, "divide the output by σ_i (NCSNv2 Technique 3)"),
        ],
        doc="MLP score network (NCSN App. B.1: 3 layers, 128 units, softplus); images are flattened",
    ),
    declare("network", "ncsn", _IMPL + "ncsn",
        params=[
            Param("ngf", Int(min=1), 128, "filters of the first cascade (CIFAR-10/CelebA: 128; MNIST: 64)"),
            *_COMMON,
        ],
        doc="NCSN: RefineNet, dilations, CondInstanceNorm++ (NCSN App. A); 30,117,635 parameters at CIFAR-10 size",
    ),
    declare("network", "ncsnv2", _IMPL + "ncsnv2",
        params=[_NGF, *_COMMON],
        doc="NCSNv2 (Technique 3: s(x)/σ, InstanceNorm++): 29,694,083 parameters at CIFAR-10 size",
    ),
    declare("network", "ncsnv2_deeper", _IMPL + "ncsnv2_deeper",
        params=[_NGF, *_COMMON],
        doc="NCSNv2Deeper (5 cascades; LSUN church/bedroom/tower): 83,445,379 parameters",
    ),
    declare("network", "ncsnv2_deepest", _IMPL + "ncsnv2_deepest",
        params=[_NGF, *_COMMON],
        doc="NCSNv2Deepest (6 cascades; FFHQ 256): 94,132,611 parameters",
    ),
)
# fmt: on
