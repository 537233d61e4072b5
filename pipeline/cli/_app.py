"""The typer application and the helpers every command shares."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from pipeline.core.errors import Interrupted, KbakError, UsageError, environment_errors, first_line

if TYPE_CHECKING:
    from pipeline.core.storage import Lake


class _KbakApp(typer.Typer):
    """The typer app, with Ctrl-C while typer builds the command line (before any command runs) handled too."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            interrupted()


app = _KbakApp(
    name="kbak",
    help="A Parquet/Delta Lake archive for Kafka: ingest, replay, query, and prove custody.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help (no rich boxes): at 80 columns rich cut option names ("--bootstrap-serve…").
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error on stderr (secrets masked) and exit with ``code``."""
    from pipeline.core.secrets import redact

    typer.echo(f"kbak: error: {redact(message)}", err=True)
    raise typer.Exit(code)


# Exit codes by error kind, most specific first; a command may add its own (``friendly(codes=...)``).
EXIT_CODES: dict[type[KbakError], int] = {Interrupted: 130, UsageError: 2}


def exit_code(exc: KbakError, codes: Mapping[type[KbakError], int] | None = None) -> int:
    """The exit code for a library error: the command's own mapping, then ``EXIT_CODES``, else 1."""
    if exc.exit_code is not None:  # legacy: set by the raiser
        return exc.exit_code
    for kind, code in (*(codes or {}).items(), *EXIT_CODES.items()):
        if isinstance(exc, kind):
            return code
    return 1


def friendly(fn: F | None = None, *, codes: Mapping[type[KbakError], int] | None = None) -> Any:
    """Turn KbakError (and KeyboardInterrupt) into a one-line message and an exit code.

    Use as ``@friendly``, or ``@friendly(codes={NotAnArchiveError: 2})`` where a command documents
    other codes for some kinds of error. Storage, network and Delta library failures that nothing
    closer explained are one line too (exit 1), not a traceback.

    SIGINT/SIGTERM anywhere in a command end it as "interrupted" (exit 130), even where a library
    turns the interrupt into an error of its own (DuckDB: "RuntimeError: Query interrupted").
    Jobs that stop cleanly on a signal (ingest, replay) install their own handlers inside.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            from pipeline.core.signals import interrupt_on_signals

            try:
                with interrupt_on_signals():
                    return fn(*args, **kwargs)
            except KbakError as exc:
                fail(str(exc), exit_code(exc, codes))
            except KeyboardInterrupt:
                interrupted()
            except environment_errors() as exc:  # evaluated only when something is raised
                fail(first_line(exc, 500))

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def interrupted() -> NoReturn:
    """SIGINT/SIGTERM: one line, exit 130, and leave at once.

    Jobs that must record where they stopped (ingest, replay) have done so before this. Leaving with
    ``os._exit`` (after flushing what was printed) keeps a library that still finishes interrupted
    work in its own threads (DuckDB, deltalake's runtime) from holding the exit.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    typer.echo("kbak: error: interrupted", err=True)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(130)


JsonOpt = Annotated[bool, typer.Option("--json", help="Output JSON (short for --format json).")]
LakeOpt = Annotated[str, typer.Option("--lake", help="Lake location: a directory or s3://bucket/prefix.")]
S3EndpointOpt = Annotated[
    str | None, typer.Option("--s3-endpoint", help="S3 endpoint URL (MinIO, moto, ...); default from AWS env.")
]
S3RegionOpt = Annotated[str | None, typer.Option("--s3-region", help="S3 region; default from AWS env.")]


AccessLogOpt = Annotated[
    str | None,
    typer.Option("--access-log", help="Access log (directory or s3://bucket/prefix); env KBAK_ACCESS_LOG."),
]
SseOpt = Annotated[
    str | None,
    typer.Option("--sse", help="Server-side encryption of every object written: aws:kms or AES256 (env KBAK_SSE)."),
]
SseKeyOpt = Annotated[
    str | None, typer.Option("--sse-kms-key-id", help="KMS key id or ARN for --sse aws:kms (env KBAK_SSE_KMS_KEY_ID).")
]


def lake_from(
    uri: str | None,
    endpoint: str | None = None,
    region: str | None = None,
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
) -> Lake:
    # Commands import their heavy dependencies when they run, so `kbak query` starts fast.
    from pipeline.core.storage import Lake, S3Settings

    if not uri:
        raise KbakError("--lake is required (a directory or s3://bucket/prefix)")
    return Lake.at(uri, S3Settings(endpoint=endpoint, region=region, sse=sse, sse_kms_key_id=sse_kms_key_id))


def prepare_output(path: Path | None) -> Path | None:
    """An ``--output`` file: its parent directory is created now, before any work, or a one-line refusal (exit 2).

    Every command writing to a file option calls this first, so a long run never ends in a traceback
    about a directory that does not exist.
    """
    if path is None:
        return None
    if path.is_dir():
        fail(f"--output {path} is a directory: give a file name", 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--output {path}: cannot create directory {path.parent}: {exc.strerror or exc}", 2)
    return path


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print kbak's version and exit.")] = False,
) -> None:
    """kbak: every Kafka record kept byte for byte, provably untampered, answerable with SQL."""
    _configure_logging()
    if version:
        from pipeline import __version__

        typer.echo(f"kbak {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _configure_logging() -> None:
    """Library log lines stay out of the way unless KBAK_LOG names a level (e.g. KBAK_LOG=debug)."""
    import logging
    import os

    from pipeline.core.secrets import RedactingFilter, remember_environment

    remember_environment()
    level = os.environ.get("KBAK_LOG")
    if level:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
    else:
        logging.getLogger("kbak").addHandler(logging.NullHandler())
        logging.getLogger("kbak").propagate = False
