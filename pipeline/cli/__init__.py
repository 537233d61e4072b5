"""The ``kbak`` command line: a thin layer over the Python API in ``pipeline``.

Each command group lives in its own module and registers itself on ``app`` when imported.
"""

from pipeline.core.hotpath import fewer_malloc_arenas

fewer_malloc_arenas()  # first, before any library starts a thread: a kbak process's peak RSS

from pipeline.cli import custody as _custody  # noqa: E402, F401
from pipeline.cli import erase as _erase  # noqa: E402, F401
from pipeline.cli import ingest as _ingest  # noqa: E402, F401
from pipeline.cli import lifecycle as _lifecycle  # noqa: E402, F401
from pipeline.cli import query as _query  # noqa: E402, F401
from pipeline.cli import replay as _replay  # noqa: E402, F401
from pipeline.cli import schemas as _schemas  # noqa: E402, F401
from pipeline.cli import security as _security  # noqa: E402, F401
from pipeline.cli._app import app  # noqa: E402

__all__ = ["app"]
