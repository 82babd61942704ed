"""Issue 23: no code runs from any file, no hang, no traceback, nothing destroyed.

Each test names the hostile input of the issue and checks that it is refused by name (a
:class:`UserError`, exit 2) without running anything it holds, blocking, or reading it whole."""

from __future__ import annotations

import errno
import io as stdio
import os
import pickle
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from test_runs import TOY
from typer.testing import CliRunner

import ncsn_core.io as atomic
from dsl.cli import app
from ncsn_core import checkpoint as ckpt
from ncsn_core import data_images, released_files
from ncsn_core.data import CifarPickleError, DataSource, cifar10, images, load_cifar_batch, require_spread
from ncsn_core.errors import DataError, UserError, WriteError
from ncsn_core.evaluation import weights as wmod


class Payload:
    """Unpickling this creates ``marker`` (by calling ``open``): the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def within(seconds: float, fn: Any) -> Any:
    """fn() in a thread; fails the test (instead of hanging it) if it does not return in time."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (it would hang)"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- 1. CIFAR-10 pickles
def _batch(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": "test",
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "filenames": [f"img{i}.png" for i in range(n)],
    }


def _cifar_folder(root: Path, payload_in: str | None, marker: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        obj: Any = _batch(4, i)
        if name == payload_in:
            obj["data"] = Payload(marker)
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return folder


def test_cifar_batch_with_a_reduce_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    folder = _cifar_folder(tmp_path / "c", "data_batch_3", marker)
    with pytest.raises(CifarPickleError) as ei:
        cifar10(str(tmp_path / "c"), download=False, flip=False, dequantize="none")
    msg = str(ei.value)
    assert msg.startswith(f"{folder / 'data_batch_3'} is refused") and "open, which could run code" in msg
    assert ei.value.exit_code == 2 and not marker.exists()


def test_genuine_cifar_batches_still_load(tmp_path: Path) -> None:
    folder = _cifar_folder(tmp_path / "c", None, tmp_path / "unused")
    d = load_cifar_batch(folder / "data_batch_2")
    assert np.array_equal(d["data"], _batch(4, 1)["data"]) and d["labels"] == _batch(4, 1)["labels"]
    src = cifar10(str(tmp_path / "c"), download=False, flip=False, dequantize="none")
    assert tuple(src.train.shape) == (20, 3, 32, 32) and tuple(src.test.shape) == (4, 3, 32, 32)
    assert torch.equal(src.train[4].reshape(-1), torch.from_numpy(_batch(4, 1)["data"][0]))


# ----------------------------------------------------------------------------- 2. Inception weights
def test_inception_weights_with_a_payload_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    bad = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(2), "evil": Payload(marker)}, bad)
    with pytest.raises(wmod.WeightsRefused) as ei:
        wmod.load_inception_state(bad)
    assert str(bad) in str(ei.value) and ei.value.exit_code == 2 and not marker.exists()
    # torch-fidelity's own extractor would torch.load(path, weights_only=False): ours never does.
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from ncsn_core.evaluation.fidelity import FEATURE_EXTRACTOR, verified_extractor

    assert verified_extractor() == FEATURE_EXTRACTOR
    cls = FEATURE_EXTRACTORS_REGISTRY[FEATURE_EXTRACTOR]
    with pytest.raises(wmod.WeightsRefused):
        cls(FEATURE_EXTRACTOR, ["2048"], feature_extractor_weights_path=str(bad))
    assert not marker.exists()


def test_inception_extractor_gets_the_verified_tensors_not_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from ncsn_core.evaluation.fidelity import verified_extractor

    good = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.arange(6.0).view(2, 3)}, good)
    seen: dict[str, Any] = {}

    def fake_init(self, name, features_list, feature_extractor_weights_path=None, **kw):  # type: ignore[no-untyped-def]
        seen["arg"] = feature_extractor_weights_path
        seen["state"] = torch.load(feature_extractor_weights_path, weights_only=True)

    monkeypatch.setattr(FeatureExtractorInceptionV3, "__init__", fake_init)
    FEATURE_EXTRACTORS_REGISTRY[verified_extractor()](
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(good)
    )
    assert isinstance(seen["arg"], stdio.BytesIO)
    assert torch.equal(seen["state"]["fc.weight"], torch.arange(6.0).view(2, 3))


def test_standard_inception_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    f = tmp_path / wmod.INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(3)}, f)  # a plain state dict, but not the standard file
    assert not wmod.sha256_file(f).startswith(wmod.INCEPTION_SHA256_PREFIX)
    with pytest.raises(wmod.WeightsRefused, match="6726825d"):
        wmod.load_inception_state(f)


# ----------------------------------------------------------------------------- 3. sizes
def _member_declares(zpath: Path, name: str, size: int) -> None:
    """Rewrite the central directory so that member ``name`` declares ``size`` bytes."""
    raw = bytearray(zpath.read_bytes())
    i = raw.index(b"PK\x01\x02")
    assert raw[i + 46 : i + 46 + len(name)] == name.encode()
    raw[i + 24 : i + 28] = size.to_bytes(4, "little")
    zpath.write_bytes(bytes(raw))


def test_zip_member_declaring_1_5_gib_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z = tmp_path / "faces.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.png", b"\x89PNG" + b"0" * 100)
        zf.writestr("b.png", b"\x89PNG" + b"0" * 100)
    _member_declares(z, "a.png", 1536 << 20)
    reads: list[int] = []
    real = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: reads.append(n) or real(self, n))
    with pytest.raises(DataError, match=r"a\.png in .*faces\.zip declares 1610\.6 MB") as ei:
        images(str(z), image_size=8, flip=False, dequantize="none", limit=0, test_fraction=0.0)
    assert ei.value.exit_code == 2 and reads == []  # refused before any member was read


def test_zip_member_read_is_bounded(tmp_path: Path) -> None:
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.png", b"0" * 5000)
    with zipfile.ZipFile(z) as zf:
        assert len(data_images.read_zip_member(zf, "a.png", z, 5000)) == 5000
        with pytest.raises(DataError, match="over the limit"):
            data_images.read_zip_member(zf, "a.png", z, 4999)


def test_n_train_beyond_the_range_is_a_check_error(write: Any) -> None:  # type: ignore[no-untyped-def]
    f = write("toy.exp", TOY.replace("n_train = 2000", "n_train = 10 ** 11"))
    res = CliRunner().invoke(app, ["check", str(f)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{f}:2:" in res.output and "n_train" in res.output and "must be ≤ 1e+07, got 1e+11" in res.output


def test_identical_images_name_sigma_max_and_the_data() -> None:
    x = torch.full((3, 3, 4, 4), 7, dtype=torch.uint8)
    src = DataSource("images", "image", (3, 4, 4), x, None, "images:abc")
    with pytest.raises(DataError) as ei:
        require_spread(0.0, src)
    msg = str(ei.value)
    assert (
        "noise.sigma_max = auto" in msg and "3 training point(s) of data images" in msg and "identical" in msg
    )
    assert require_spread(2.5, src) == 2.5


# ----------------------------------------------------------------------------- 4. user-named paths
@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop)
    (tmp_path / "dir.pth").mkdir()
    return {
        "a directory": tmp_path / "dir.pth",
        "a FIFO": fifo,
        "a device node": Path("/dev/zero"),
        "a symbolic link loop": loop,
    }


@pytest.mark.parametrize("kind", ["a directory", "a FIFO", "a device node", "a symbolic link loop"])
def test_released_path_that_is_not_a_regular_file_is_named(hostile: dict[str, Path], kind: str) -> None:
    p = hostile[kind]
    with pytest.raises(UserError) as ei:
        within(10, lambda: released_files.file_sha256(p))
    assert str(p) in str(ei.value) and kind in str(ei.value) and ei.value.exit_code == 2


@pytest.mark.parametrize("kind", ["a directory", "a FIFO", "a device node", "a symbolic link loop"])
def test_regular_file_refuses_without_opening(hostile: dict[str, Path], kind: str) -> None:
    with pytest.raises(UserError, match="regular file|loop"):
        within(10, lambda: atomic.read_regular_bytes(hostile[kind], "data file"))


def test_image_zip_that_is_a_fifo_does_not_hang(hostile: dict[str, Path], tmp_path: Path) -> None:
    z = tmp_path / "imgs.zip"
    os.mkfifo(z)
    with pytest.raises(DataError, match="FIFO"):
        within(
            10,
            lambda: images(str(z), image_size=8, flip=False, dequantize="none", limit=0, test_fraction=0.0),
        )


def test_released_file_is_hashed_once_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "checkpoint.pth"
    f.write_bytes(os.urandom(3 << 20))
    first = released_files.file_sha256(f)
    released_files._SHA_CACHE.clear()  # a new process: only the disk cache is left

    def no_reading(*a: Any, **k: Any) -> Any:
        raise AssertionError("hashed again")

    monkeypatch.setattr(released_files, "hashlib", SimpleNamespace(sha256=no_reading))
    assert released_files.file_sha256(f) == first
    monkeypatch.undo()
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    released_files._SHA_CACHE.clear()
    f.write_bytes(os.urandom(3 << 20))  # changed: hashed again
    assert released_files.file_sha256(f) != first


# ----------------------------------------------------------------------------- 5. checkpoints
def _two_checkpoints(folder: Path) -> None:
    for step in (20, 40):
        ckpt.save(
            ckpt.checkpoint_path(folder, step),
            {"step": step, "model": {"w": torch.full((4096,), float(step))}},
        )


def test_flipped_byte_is_found_without_a_manifest(tmp_path: Path) -> None:
    _two_checkpoints(tmp_path)
    ckpt.manifest_path(tmp_path).unlink()
    newest = ckpt.checkpoint_path(tmp_path, 40)
    raw = bytearray(newest.read_bytes())
    i = raw.index(np.float32(40.0).tobytes() * 4) + 4000  # inside the tensor's bytes
    raw[i] ^= 0x01
    newest.write_bytes(bytes(raw))
    assert "CRC-32" in (ckpt.verify(newest) or "")
    warned: list[str] = []
    step, path, state = ckpt.newest_loadable(tmp_path, warn=warned.append)
    assert step == 20 and state["step"] == 20 and warned and "step-00000040" in warned[0]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    old = time.time() - 2 * atomic.STALE_TEMP_S
    stale = tmp_path / f".step-00000020.pt.{dead_pid()}-deadbeef.tmp"
    fresh = tmp_path / f".step-00000040.pt.{dead_pid()}-0badf00d.tmp"  # recent: maybe another host's
    live = tmp_path / f".step-00000060.pt.{os.getppid()}-00c0ffee.tmp"  # a live process
    for p in (stale, fresh, live):
        p.write_bytes(b"half a checkpoint")
    for p in (stale, live):
        os.utime(p, (old, old))
    _two_checkpoints(tmp_path)
    assert not stale.exists() and fresh.exists() and live.exists()
    os.utime(fresh, (old, old))
    ckpt.newest_loadable(tmp_path)  # a resume cleans too
    assert not fresh.exists() and live.exists()


class _FullDisk:
    """A file that takes ``room`` bytes, then fails every write with ENOSPC."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self.room = f, room

    def write(self, b: Any) -> int:
        n = len(memoryview(b).cast("B"))
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self._f.write(b)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


def test_full_disk_under_torch_save_says_no_space_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fdopen
    monkeypatch.setattr(
        os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(real(fd, mode, *a, **k), 10_000)
    )
    p = tmp_path / "step-00000020.pt"
    with pytest.raises(WriteError) as ei:
        ckpt.save(p, {"step": 20, "model": {"w": torch.zeros(1 << 20)}})
    msg = str(ei.value)
    assert f"no space left on {tmp_path}" in msg and "needed ≈" in msg and "MB" in msg
    assert "unexpected pos" not in msg and ei.value.errno == errno.ENOSPC
    assert not p.exists() and not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- 6. export targets
def test_safe_export_target(tmp_path: Path, hostile: dict[str, Path]) -> None:
    for kind in ("a directory", "a FIFO", "a device node", "a symbolic link loop"):
        with pytest.raises(UserError) as ei:
            within(10, lambda k=kind: atomic.safe_export_target(hostile[k], force=True))
        assert str(hostile[kind]) in str(ei.value) and ei.value.exit_code == 2
    new = tmp_path / "out" / "exported.exp"
    assert atomic.safe_export_target(new, force=False) == new
    existing = tmp_path / "old.exp"
    existing.write_text("keep me\n")
    with pytest.raises(UserError, match="exists; pass --force"):
        atomic.safe_export_target(existing, force=False)
    assert existing.read_text() == "keep me\n"
    target = atomic.safe_export_target(existing, force=True)
    atomic.write_text(target, "new\n")
    assert existing.read_text() == "new\n"
