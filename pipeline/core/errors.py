"""kbak's errors: what went wrong, in the library's own terms. Only ``pipeline.cli`` maps them to exit codes."""

from __future__ import annotations


class KbakError(Exception):
    """A user-facing failure with a one-line message that names the problem.

    ``exit_code`` is a legacy override for the CLI; raise one of the subclasses instead, whose codes
    ``pipeline.cli._app.exit_code`` decides.
    """

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(KbakError):
    """Bad flags or values, or a reference to something that does not exist (a version, a run): nothing was done."""


class NotAnArchiveError(KbakError):
    """The location holds no kbak archive (no Delta table, or a Delta table that is not kbak's)."""


class StorageError(KbakError):
    """The lake's storage refused or failed a request (credentials, permissions, a missing bucket, the network)."""


class CommitConflictError(KbakError):
    """Concurrent writers kept committing first, past every retry."""


class Interrupted(KbakError):
    """SIGINT or SIGTERM stopped the run; what was done before is kept (and said)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (library errors are often multi-line), for KbakError."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def aws_code(exc: BaseException) -> str:
    """The error code of a boto3 ClientError (``NoSuchKey``, ``AccessDenied``, ...), else ""."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def aws_message(exc: BaseException) -> str:
    """``Code: Message`` of a boto3 ClientError, else the exception's first line."""
    response = getattr(exc, "response", None)
    if response:
        err = response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return first_line(exc, 200)


def environment_errors() -> tuple[type[BaseException], ...]:
    """Failures of what kbak talks to (storage, network, the S3 API, the Delta log), not of kbak.

    The CLI reports these as one line when nothing closer turned them into a ``KbakError``: an S3
    endpoint that went away mid-run is the user's to fix, not a traceback to read. Imported only
    when a failure is being reported.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from deltalake.exceptions import DeltaError

    return (OSError, BotoCoreError, ClientError, DeltaError)
