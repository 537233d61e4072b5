"""``kbak`` (and ``python -m pipeline``): the command line, started so that Ctrl-C is quiet at any moment.

The console script points here rather than at ``pipeline.cli:app`` because importing the CLI (its
libraries: pyarrow, deltalake, DuckDB, librdkafka) takes a noticeable fraction of a second, and a Ctrl-C
in that window would otherwise print a KeyboardInterrupt traceback instead of exiting 130 like a
command interrupted later does.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def main() -> None:
    try:
        from pipeline.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("kbak: error: interrupted\n")  # as pipeline.cli._app.interrupted words it
        raise SystemExit(INTERRUPTED) from None
    app()


if __name__ == "__main__":
    main()
