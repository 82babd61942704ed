"""The one error hierarchy: everything repro reports without a traceback is a :class:`ReproError`.

- :class:`UserError` (exit 2): a mistake in the input — a `.exp` file, a ``--set``, a data or
  checkpoint path the user named. Its message says where: ``file:line:col`` (the language's
  diagnostics, :class:`dsl.errors.DiagnosticError`) or the path.
- :class:`RunError` (exit 1): a run that failed — a diverged sampler, a non-finite loss, a
  damaged checkpoint, a device that is not there.

The CLI prints ``error: <message>`` (or the compiler-style diagnostics) and exits with
``exit_code``; nothing else in the code base decides exit codes. Standard library only.
"""

from __future__ import annotations

from pathlib import Path


class ReproError(Exception):
    """Base of every error with a user-facing, one-paragraph message."""

    exit_code = 1


class UserError(ReproError):
    """A mistake in the input; the message names ``file:line:col`` or the path."""

    exit_code = 2


class RunError(ReproError):
    """A run that failed; whatever was written before stays valid."""

    exit_code = 1


class ParamError(UserError, ValueError):
    """A value that does not fit a parameter's type or range (the checker adds the position)."""


class DataError(UserError):
    """A dataset that is missing or damaged; the message names the path and what was expected."""


class PluginError(UserError):
    """A third-party plug-in (entry point group ``repro.plugins``) that cannot be loaded."""


class TrainingError(RunError):
    """Training stopped (non-finite loss, ...); the last good checkpoint is kept."""


class CheckpointError(RunError):
    """A checkpoint cannot be read (damaged, from another spec, not weights-only)."""


class SamplerDiverged(RunError):
    """Non-finite values appeared in a sampler (the message names the stage and the level)."""


class EvaluationError(RunError):
    """Evaluation cannot run (weights missing offline, metrics that do not fit the data)."""


class WriteError(RunError, OSError):
    """A file could not be written; the previous file at that path (if any) is unchanged.

    Also an :class:`OSError`, so code that tolerates an unwritable cache keeps doing so."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        self.message = (
            f"cannot write {path}: {reason or type(cause).__name__}; the previous file, if any, is unchanged"
        )
        super().__init__(self.message)
        self.path = Path(path)
        self.errno = getattr(cause, "errno", None)
        self.filename = str(path)

    def __str__(self) -> str:
        return self.message
