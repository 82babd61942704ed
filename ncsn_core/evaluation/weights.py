"""The Inception-v3 weights torch-fidelity's metrics need: where they are looked up, the one
message that says which file to put where, and the check run before any training or sampling
(:func:`preflight`).

The weights are read by :func:`load_inception_state` only: a regular file of bounded size,
unpickled weights-only (a file that needs more is refused and nothing in it runs), and, when it
is the standard FID Inception file (``weights-inception-2015-12-05-<hash>.pth`` or pytorch-fid's
``pt_inception-2015-12-05-<hash>.pth``), its SHA-256 must begin with the 8 hex digits the name
carries (torch.hub's naming: 6726825d). torch-fidelity never gets the path: it gets a copy of
the verified tensors (:mod:`ncsn_core.evaluation.fidelity`), because it would unpickle a path
with full (code-running) unpickling."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import IO, Any

import torch

from ncsn_core import io as atomic
from ncsn_core.errors import EvaluationError, UserError
from ncsn_core.values import Call

# The file torch-fidelity's Inception-v3 ("inception-v3-compat") loads: the basename of
# torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3, which torch.hub stores in
# <hub dir>/checkpoints/ when it downloads it.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# torch.hub names a file <stem>-<first hex digits of its SHA-256>.<ext>; torch-fidelity's file and
# pytorch-fid's pt_inception-2015-12-05-6726825d.pth carry the same prefix.
INCEPTION_SHA256_PREFIX = "6726825d"
_STANDARD_NAME = re.compile(r"^(weights-inception|pt_inception)-2015-12-05-(?P<prefix>[0-9a-f]{8,})\.pth$")
MAX_WEIGHTS_BYTES = 1 << 30  # the Inception file is 95 MB


class WeightsRefused(UserError):
    """An Inception weights file that is not plain tensors, or not the file its name claims."""


def hub_weights_path() -> Path:
    """Where torch-fidelity's own download puts the Inception weights (torch's hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def find_inception_weights(setting: str = "") -> Path | None:
    """The Inception weights file, looked up in order: the evaluate block's
    ``inception_weights``, ``$REPRO_INCEPTION_WEIGHTS``, torch's hub cache."""
    for cand in (setting, os.environ.get("REPRO_INCEPTION_WEIGHTS", ""), str(hub_weights_path())):
        if cand and Path(cand).expanduser().is_file():
            return Path(cand).expanduser().resolve()
    return None


def weights_help(where: str) -> str:
    """The one message that says which file is needed and where to put it."""
    return (
        f"the Inception-v3 weights are needed for {where} but were not found. torch-fidelity "
        f"{fidelity_version()} uses the file {INCEPTION_FILE} (it downloads it from its download URL, "
        "torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3). On a machine without internet, copy "
        "that file over and do one of: (1) write evaluate { inception_weights = "
        f'"/path/to/{INCEPTION_FILE}" }} in the experiment, (2) export REPRO_INCEPTION_WEIGHTS=/path/to/'
        f"{INCEPTION_FILE}, or (3) put it at {hub_weights_path()}. See docs/evaluation.md. (Small "
        "datasets with labels can use fid_domain / is_domain instead, which need no download.)"
    )


def fidelity_version() -> str:
    try:
        import torch_fidelity

        return str(torch_fidelity.__version__)
    except Exception:  # noqa: BLE001 - not installed: the message still helps
        return "(not installed)"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with atomic.open_regular(path, "Inception weights file", MAX_WEIGHTS_BYTES) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def preflight(calls: tuple[Call, ...] | list[Call], settings: dict[str, Any]) -> Path:
    """The Inception weights file for ``calls`` (torch-fidelity metrics), found or downloaded now
    rather than after hours of training and sampling. Raises :class:`EvaluationError` when the
    weights are missing and cannot be downloaded (always when ``REPRO_OFFLINE`` is set)."""
    where = ", ".join(c.name for c in calls)
    setting = str(settings.get("inception_weights", "") or "")
    if setting and os.path.lexists(Path(setting).expanduser()):  # there: a regular file, or named
        atomic.regular_file(setting, "evaluate.inception_weights", MAX_WEIGHTS_BYTES)
    if setting and not Path(setting).expanduser().is_file():
        raise EvaluationError(
            f"evaluate.inception_weights = {setting!r}: no such file; " + weights_help(where)
        )
    found = find_inception_weights(setting)
    if found is not None:
        return found
    if os.environ.get("REPRO_OFFLINE"):
        raise EvaluationError(weights_help(where) + " (REPRO_OFFLINE is set, so no download was tried.)")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        dst = hub_weights_path()
        atomic.write_with(dst, lambda f: _download(URL_INCEPTION_V3, f))
        return dst
    except Exception as e:  # noqa: BLE001 - offline, proxy, full disk...
        raise EvaluationError(
            weights_help(where) + f" The download failed: {type(e).__name__}: {e}"
        ) from None


def _download(url: str, f: IO[bytes]) -> None:
    """Stream ``url`` into ``f`` (as ``torch.hub.download_url_to_file`` does, without its own
    temporary file: :func:`ncsn_core.io.write_with` provides that)."""
    import shutil
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
    with urllib.request.urlopen(req) as resp:  # noqa: S310 - a fixed https URL
        shutil.copyfileobj(resp, f, 1 << 20)


def load_inception_state(path: Path) -> dict[str, torch.Tensor]:
    """The Inception weights at ``path`` as a state dict, read weights-only: a regular file of
    at most :data:`MAX_WEIGHTS_BYTES`; the standard file's SHA-256 checked against its name;
    :class:`WeightsRefused` (exit 2, nothing run) for a file that needs more than tensors."""
    p = atomic.regular_file(path, "Inception weights file", MAX_WEIGHTS_BYTES)
    m = _STANDARD_NAME.match(p.name)
    if m is not None:
        sha = sha256_file(p)
        if not sha.startswith(m["prefix"]):
            raise WeightsRefused(
                f"Inception weights file {p}: its name says SHA-256 {m['prefix']}…, but its SHA-256 is "
                f"{sha}; the file is damaged or not the standard one. Download it again "
                "(docs/evaluation.md)."
            )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = " ".join(str(e).split())[:300]
        raise WeightsRefused(
            f"Inception weights file {p} is refused: it holds more than tensors and plain values, and "
            f"loading it could run code ({why}). Nothing in it was run; use torch-fidelity's "
            f"{INCEPTION_FILE}."
        ) from None
    except Exception as e:  # noqa: BLE001 - truncated, not a torch file, ...
        raise WeightsRefused(
            f"Inception weights file {p} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:300]}); "
            f"expected torch-fidelity's {INCEPTION_FILE}."
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsRefused(f"Inception weights file {p} is not a state dict (names → tensors)")
    return state
