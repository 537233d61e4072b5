"""The ``kbak`` command line: a thin layer over the Python API in ``pipeline``.

Each command group lives in its own module and registers itself on ``app``.
"""

from pipeline.cli import ingest as _ingest  # noqa: F401  (registers commands)
from pipeline.cli._app import app

__all__ = ["app"]
