"""The ``kbak`` command line: a thin layer over the Python API in ``pipeline``.

Each command group lives in its own module and registers itself on ``app`` when imported.
"""

from pipeline.cli import custody as _custody  # noqa: F401
from pipeline.cli import erase as _erase  # noqa: F401
from pipeline.cli import ingest as _ingest  # noqa: F401
from pipeline.cli import lifecycle as _lifecycle  # noqa: F401
from pipeline.cli import query as _query  # noqa: F401
from pipeline.cli import replay as _replay  # noqa: F401
from pipeline.cli._app import app

__all__ = ["app"]
