"""`repro tb`: start TensorBoard on the training logs under a runs folder (docs/tensorboard.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsl.commands.common import guard

DEFAULT_PORT = 6006
READY_WITHIN = 60.0  # seconds TensorBoard may take to answer on its port before we give up


@guard
def tb(
    runs_dir: Annotated[
        Path, typer.Argument(help="a runs folder, an experiment's folder or one run's folder")
    ] = Path("runs"),
    port: Annotated[int, typer.Option(help="the port to serve on (0: a free one)")] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option(help="the address to bind (0.0.0.0: every interface, reachable from others)")
    ] = "127.0.0.1",
    print_only: Annotated[
        bool, typer.Option("--print", help="print the tensorboard command instead of starting it")
    ] = False,
) -> None:
    """Start TensorBoard on the training logs (train/tb/) under a runs folder, every run's, each
    named <experiment>/<run-hash>/seed-<k>; prints the address once it answers; Ctrl-C stops it."""
    import importlib.util
    import shlex
    import sys

    from dsl.errors import error
    from ncsn_core import layout

    if not runs_dir.is_dir():
        raise error(None, f"{runs_dir}: no such runs folder")
    if not 0 <= port <= 65535:
        raise error(None, f"--port {port}: not a port (0 … 65535; 0 picks a free one)")
    found = sorted(
        p for p in runs_dir.rglob(layout.TENSORBOARD) if p.is_dir() and p.parent.name == layout.TRAIN
    )
    if not found:
        typer.echo(
            f"no TensorBoard logs under {runs_dir} (train.tensorboard is on by default; "
            "train.tensorboard = false writes none)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"# {len(found)} training log(s), e.g. {found[0].relative_to(runs_dir).as_posix()}", err=True)
    if print_only:
        typer.echo(f"tensorboard --logdir {shlex.quote(str(runs_dir))} --host {host} --port {port}")
        return
    if importlib.util.find_spec("tensorboard") is None:
        raise error(
            None,
            "TensorBoard is not installed in this environment (it is a dependency of repro-ncsn: "
            "pip install -e . in the checkout, or pip install tensorboard)",
        )
    _serve(runs_dir, host, port or _free_port(host), sys.executable)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _serve(runs_dir: Path, host: str, port: int, python: str) -> None:
    """Run TensorBoard in the foreground: say where once its port answers, stop it on Ctrl-C."""
    import socket
    import subprocess
    import tempfile
    import time

    from dsl.errors import error

    cmd = [python, "-m", "tensorboard.main", "--logdir", str(runs_dir), "--host", host, "--port", str(port)]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + READY_WITHIN
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    tail = " ".join(log.read().strip().splitlines()[-3:])
                    raise error(
                        None,
                        f"TensorBoard did not start on {host}:{port} (exit {proc.returncode}): {tail}"
                        + (" (try another --port, or --port 0 for a free one)" if "in use" in tail else ""),
                    )
                try:
                    socket.create_connection((host, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise error(
                            None, f"TensorBoard did not answer on {host}:{port} within {READY_WITHIN:.0f} s"
                        ) from None
                    time.sleep(0.2)
            shown = f"[{host}]" if ":" in host else host
            typer.echo(
                f"TensorBoard on http://{shown}:{port}/ (bind address {host}, port {port}; "
                f"logs under {runs_dir}; Ctrl-C stops it)"
            )
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def register(app: typer.Typer) -> None:
    app.command("tb")(tb)
