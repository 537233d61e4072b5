"""``kbak erase --status``: prove from the custody chain that a request (or an identifier) was erased.

A selector is looked up by its keyed hash, so the proof needs the identifier and the lake's erasure
secret, and the lake never holds the identifier. Physical state comes from storage and from the
``vacuum`` manifests: originals still in storage are either awaiting ``kbak vacuum`` or retained under
S3 Object Lock until a date (erased from every read, "put beyond use").
"""

from __future__ import annotations

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.subject import lake_secret
from pipeline.custody.chain import load_chain
from pipeline.custody.manifest import Operation
from pipeline.erasure.erase import OPERATION
from pipeline.erasure.selectors import Selector


def erase_status(lake: Lake, request_id: str | None = None, selector: Selector | None = None) -> dict:
    if (request_id is None) == (selector is None):
        raise KbakError("--status needs one of --request-id, --key or --json-field FIELD=VALUE")
    want = None
    if selector is not None:
        secret = lake_secret(lake, create=False)
        if not secret:
            raise KbakError(f"{lake.uri} has no erasure secret (_kbak/erasure.key or KBAK_ERASURE_KEY): nothing erased")
        want = selector.hmac(secret)
    chain = load_chain(lake)
    retained = _retained(chain)
    present = set(lake.list_files())
    found = []
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") != OPERATION:
            continue
        if request_id is not None and body.get("request_id") != request_id:
            continue
        if want is not None and not any(s.get("hmac") == want for s in body.get("selectors") or []):
            continue
        originals = [s["original"] for s in body.get("files_scrubbed") or []]
        still = [o for o in originals if o in present]
        locked = {o: retained[o] for o in still if o in retained}
        if not still:
            state = "erased from every read and deleted from storage"
        elif locked:
            until = max(locked.values())
            state = f"erased from every read; {len(locked)} files physically retained under Object Lock until {until}"
            if len(still) > len(locked):
                state += f"; {len(still) - len(locked)} original files await kbak vacuum"
        else:
            state = f"erased from every read; {len(still)} original files await kbak vacuum"
        found.append(
            {
                "request_id": body.get("request_id"),
                "version": rec.version,
                "created_at": body.get("created_at"),
                "created_by": body.get("created_by"),
                "reason": body.get("reason"),
                "records_erased": body.get("records_erased"),
                "erased": body.get("erased"),
                "files_scrubbed": len(originals),
                "originals_in_storage": len(still),
                "object_lock_retained": [{"path": p, "retain_until": u} for p, u in sorted(locked.items())],
                "state": state,
            }
        )
    if not found:
        what = f"request {request_id!r}" if request_id is not None else f"that {selector.kind}"
        raise KbakError(f"no erasure of {what} is recorded in {lake.uri}")
    return {"lake": lake.uri, "erasures": found}


def _retained(chain) -> dict[str, str]:
    """path -> retain-until, from the newest vacuum manifest that reported the file retained."""
    out: dict[str, str] = {}
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") == Operation.VACUUM:
            for f in body.get("files_retained") or []:
                out[f["path"]] = str(f.get("retain_until") or "a legal hold is released")
    return out
