"""The right to erasure: ``erase`` a data subject from every version of the archive, ``erase_status`` to prove it.

See docs/erasure.md. ``pipeline.erasure.erase`` has the two steps (``plan``, ``execute``) the CLI uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.core.storage import Lake

__all__ = ["erase", "erase_status"]


def erase(
    lake: Lake,
    request_id: str,
    reason: str,
    *,
    keys: Sequence[str] = (),
    json_fields: Sequence[str] = (),
    headers: Sequence[str] = (),
    topics: Sequence[str] = (),
    dry_run: bool = False,
    except_held: bool = False,
) -> dict:
    """Erase the records the selectors match (OR) from every version; ``json_fields``/``headers`` as NAME=VALUE."""
    from pipeline.erasure.erase import execute, plan
    from pipeline.erasure.selectors import parse_selectors

    selectors = parse_selectors(list(keys), list(json_fields), list(headers))
    p = plan(lake, request_id, reason, selectors, list(topics), except_held)
    return {**(p.summary() if dry_run else execute(p)), "dry_run": dry_run}


def erase_status(lake: Lake, request_id: str | None = None, key: str | None = None, json_field: str | None = None):
    """The erasures recorded for a request id, a key or a JSON field's FIELD=VALUE (KbakError when none)."""
    from pipeline.erasure.selectors import parse_selectors
    from pipeline.erasure.status import erase_status as status

    selectors = parse_selectors([key] if key is not None else [], [json_field] if json_field is not None else [], [])
    return status(lake, request_id, selectors[0] if selectors else None)
