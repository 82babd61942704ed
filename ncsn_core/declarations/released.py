"""Trained weights taken from a file instead of training (``train { from = released(...) }``,
issue 17); implementation and file formats: :mod:`ncsn_core.released`, docs/released.md."""

from __future__ import annotations

from ncsn_core.params import REQUIRED, Choice, Param, Str, declare

# The formats a released checkpoint can be read in (ncsn_core.released reads and writes them).
FORMATS = ("ncsn", "ncsnv2", "repro")

# One parameter per line: the declarations read as a table.
# fmt: off
DECLARATIONS = (
    declare("weights", "released", "ncsn_core.released:released",
        params=[
            Param("path", Str(), REQUIRED, "the checkpoint file (a relative path is read from the folder repro runs in)"),
            Param("format", Choice(FORMATS), REQUIRED, "ncsn: the NCSN code's checkpoint.pth [score, optimizer]; ncsnv2: the NCSNv2 code's [score, optimizer, epoch, step, ema]; repro: a repro training checkpoint"),
            Param("published", Str(), "", "where the file is published (named when it is missing; default: the format's source)"),
        ],
        doc="a released checkpoint: the train stage loads it (weights-only, names and shapes checked) "
        "instead of training; its hash is the file's SHA-256 and format (docs/released.md)",
    ),
)
# fmt: on
