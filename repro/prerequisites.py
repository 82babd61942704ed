"""What `repro run` needs before any work (repro.api.preflight / prerequisites): every missing
dataset, weight file and released checkpoint of the runs it will make, each with how to get it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def preflight(specs: Sequence[Any], until: str = "evaluate") -> None:
    """Before any run: every missing prerequisite of ``specs`` (:func:`prerequisites`) in one
    error, each with how to get it. Exit code 2 (a UserError) when a dataset or a released
    checkpoint is missing, 1 (a RunError) when only the Inception weights are."""
    missing = prerequisites(specs, until)
    if not missing:
        return
    from ncsn_core.errors import RunError, UserError

    user = any(m["kind"] != "weights" for m in missing)
    lines = [f"{len(missing)} prerequisite(s) missing; nothing was run:"]
    lines += [f"  - {m['kind']}: {m['message']} (needed by {', '.join(m['experiments'])})" for m in missing]
    raise (UserError if user else RunError)("\n".join(lines))


# The local folder each downloadable dataset is read from, when its files are there
# (ncsn_core/data_files.py, data_images.py); absent → missing, or downloaded now when allowed.
_DATA_FOLDERS = {
    "mnist": lambda r, kw: _data_files()._mnist_folder(r),
    "cifar10": lambda r, kw: _data_files()._cifar_folder(r),
    "celeba": lambda r, kw: _data_files()._celeba_folder(r),
    "fashion_mnist": lambda r, kw: r if _data_files()._idx_files(r) else None,
    "lsun": lambda r, kw: _data_images()._lmdb_folder(r, kw["category"], "train"),
}


def _data_files() -> Any:
    from ncsn_core import data_files

    return data_files


def _data_images() -> Any:
    from ncsn_core import data_images

    return data_images


def prerequisites(specs: Sequence[Any], until: str = "evaluate") -> list[dict]:
    """Every dataset, Inception weights file and released checkpoint ``specs`` need (up to the
    stage ``until``) that is not here and cannot be fetched now, each once: dicts with
    ``kind`` (data, weights, checkpoint), ``message`` (what is missing and how to get it) and
    ``experiments``. A dataset with ``download = true`` is downloaded now (unless
    ``REPRO_OFFLINE`` is set), the Inception weights too, so a failed download is listed
    with the rest instead of stopping a run hours later."""
    import os

    from ncsn_core.errors import ReproError

    found: dict[tuple[str, str], dict] = {}

    def add(kind: str, key: str, message: str, exp: str) -> None:
        m = found.setdefault((kind, key), {"kind": kind, "message": message, "experiments": []})
        if exp not in m["experiments"]:
            m["experiments"].append(exp)

    done: dict[tuple, str | None] = {}  # each dataset / metric check once
    for spec in specs:
        w = spec.weights()
        if w is not None:
            from ncsn_core import released_files as released

            if released.file_sha256(released.file_path(w)) is None:
                add("checkpoint", str(w.kwargs()["path"]), released.missing_message(w), spec.experiment)
        if spec.data is not None and spec.data.name in _DATA_FOLDERS:
            kw = spec.data.kwargs()
            key = ("data", spec.data.name, repr(sorted(kw.items(), key=lambda kv: kv[0])))
            if key not in done:
                done[key] = _data_problem(spec, kw, bool(os.environ.get("REPRO_OFFLINE")))
            if done[key]:
                add("data", str(key[1:]), done[key], spec.experiment)
        calls = []
        if spec.evaluate is not None and until == "evaluate":
            calls.append((tuple(spec.evaluate.get("metrics") or ()), spec.evaluate.kwargs()))
        if spec.select is not None and spec.trains and until != "train":
            e = spec.evaluate.kwargs() if spec.evaluate is not None else {}
            calls.append(((spec.select.get("metric"),), {k: v for k, v in e.items() if k != "samples"}))
        for metrics, settings in calls:
            setting = str(settings.get("inception_weights", "") or "")
            key = ("weights", tuple(map(str, metrics)), setting)
            if key not in done:
                from ncsn_core import evaluation

                try:
                    evaluation.preflight(metrics, settings)
                    done[key] = None
                except ReproError as e:
                    done[key] = str(e)
            if done[key]:
                add("weights", setting or "inception", str(done[key]), spec.experiment)
    return list(found.values())


def _data_problem(spec: Any, kw: dict, offline: bool) -> str | None:
    """Why ``spec``'s dataset cannot be read (None: it can); a download is tried when allowed."""
    from ncsn_core.errors import ReproError

    root = Path(str(kw.get("root", ""))).expanduser()
    if _DATA_FOLDERS[spec.data.name](root, kw) is not None:
        return None
    if kw.get("download") and not offline:
        from ncsn_core import registry

        try:
            registry.lookup("data", spec.data.name).build(**kw)
            return None
        except ReproError as e:
            return str(e)
    why = "REPRO_OFFLINE is set, so no download was tried" if kw.get("download") else "download = false"
    how = (
        "set download = true (or run once on a machine with internet)"
        if "download" in kw
        else "get the files as docs/ncsn.md says"
    )
    return (
        f'data {spec.data.name}: no files under {root} ({why}); {how}, or pass root = "..." pointing at them'
    )
