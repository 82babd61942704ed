"""Errors that are the user's to fix: the CLI prints their message, never a traceback."""

from __future__ import annotations


class ReproError(Exception):
    """Base of run-time errors with a user-facing, one-paragraph message."""


class TrainingError(ReproError):
    """Training stopped (non-finite loss, ...); the last good checkpoint is kept."""


class CheckpointError(ReproError):
    """A checkpoint cannot be read (corrupt, from another spec)."""


class NotImplementedComponent(ReproError):
    """A registered component whose builder is not written yet."""


def user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ReproError]
    from ncsn_core.samplers import SamplerDiverged

    types.append(SamplerDiverged)
    try:
        from ncsn_core.data import DataError

        types.append(DataError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from ncsn_core.evaluation import EvaluationError  # type: ignore[attr-defined]

        types.append(EvaluationError)
    except ImportError:
        pass
    return tuple(types)
