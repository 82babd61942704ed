"""Did-you-mean for a path that is not there: the closest `.exp` file beside it (an import of
a renamed paper file, ``papers/ncsn_cifar10.exp`` → ``papers/ncsn_cifar.exp``). Lists one
folder; reads no file."""

from __future__ import annotations

import difflib
from pathlib import Path


def missing_file_hint(path: Path) -> str:
    """``"; did you mean 'papers/ncsn_cifar.exp'?"`` for the file in ``path``'s folder whose
    name is closest to ``path``'s, or ``""`` (no folder, nothing close)."""
    folder = path.parent
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix == path.suffix)
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f"; did you mean '{path.with_name(close[0])}'?" if close else ""
