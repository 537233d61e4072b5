"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class KbakError(Exception):
    """A user-facing failure: bad input, unreachable servers, a lake that is not kbak's.

    The message is a single line that names the problem; ``exit_code`` is what the CLI returns.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
