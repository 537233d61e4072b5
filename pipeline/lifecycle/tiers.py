"""``kbak lifecycle``: an S3 lifecycle rule that moves old *data files* to cheaper, still-readable classes.

A Delta table cannot live under the usual archive recipe (``Expiration`` after N days, transitions to
GLACIER or DEEP_ARCHIVE): S3 would delete files the log still references, or freeze them so that no
reader can open the table until each object is restored. kbak's rule therefore

- matches only data files (``<prefix>/topic=``): never ``_delta_log/`` or ``_kbak/``;
- moves them to STANDARD_IA and then GLACIER_IR, classes read directly (no restore);
- never expires anything: records leave the archive through ``kbak retention`` and ``kbak vacuum``,
  on the record.

Existing rules of the bucket are kept; one that expires, or archives to a restore-only class, objects
of the lake is refused, because it would break the table.
"""

from __future__ import annotations

from pipeline.core.errors import KbakError, aws_code, aws_message
from pipeline.core.storage import Lake

RULE_ID_PREFIX = "kbak-data-tiers"
MIN_IA_DAYS = 30  # S3 refuses STANDARD_IA transitions earlier than 30 days
RESTORE_ONLY = ("GLACIER", "DEEP_ARCHIVE")


def rule_id(lake: Lake) -> str:
    return f"{RULE_ID_PREFIX}:{lake.prefix or '/'}"


def data_prefix(lake: Lake) -> str:
    return f"{lake.prefix}/topic=" if lake.prefix else "topic="


def tier_rule(lake: Lake, ia_days: int = 30, glacier_ir_days: int = 90) -> dict:
    """The lifecycle rule for the lake's data files (S3 ``LifecycleConfiguration`` rule shape)."""
    require_s3(lake)
    if ia_days < MIN_IA_DAYS:
        raise KbakError(f"--ia-days {ia_days}: S3 moves objects to STANDARD_IA after 30 days at the earliest")
    if glacier_ir_days < ia_days + 30:
        raise KbakError(
            f"--glacier-ir-days {glacier_ir_days}: must be at least 30 days after --ia-days ({ia_days + 30} or more)"
        )
    return {
        "ID": rule_id(lake),
        "Filter": {"Prefix": data_prefix(lake)},
        "Status": "Enabled",
        "Transitions": [
            {"Days": ia_days, "StorageClass": "STANDARD_IA"},
            {"Days": glacier_ir_days, "StorageClass": "GLACIER_IR"},
        ],
    }


def require_s3(lake: Lake) -> None:
    if not lake.is_s3:
        raise KbakError(f"storage tiers are S3 lifecycle rules: {lake.uri} is a local lake (use an s3:// lake)")


def configuration(lake: Lake, rule: dict, client=None) -> dict:
    """The bucket's lifecycle configuration with kbak's rule put in (other rules kept)."""
    existing = current_rules(lake, client)
    conflicts = [c for r in existing if r.get("ID") != rule["ID"] for c in _conflicts(lake, r)]
    if conflicts:
        raise KbakError(f"bucket {lake.bucket} has a lifecycle rule that would break the table: {conflicts[0]}")
    return {"Rules": [r for r in existing if r.get("ID") != rule["ID"]] + [rule]}


def current_rules(lake: Lake, client=None) -> list[dict]:
    client = client or lake.boto3_client()
    try:
        return client.get_bucket_lifecycle_configuration(Bucket=lake.bucket).get("Rules", [])
    except Exception as exc:
        if aws_code(exc) == "NoSuchLifecycleConfiguration":
            return []
        raise KbakError(
            f"cannot read the lifecycle configuration of bucket {lake.bucket}: {aws_message(exc)}"
        ) from None


def apply(lake: Lake, ia_days: int = 30, glacier_ir_days: int = 90) -> dict:
    """Put the configuration and read it back: the rule S3 now holds must be the one kbak wrote."""
    rule = tier_rule(lake, ia_days, glacier_ir_days)
    client = lake.boto3_client()
    config = configuration(lake, rule, client)
    try:
        client.put_bucket_lifecycle_configuration(Bucket=lake.bucket, LifecycleConfiguration=config)
    except Exception as exc:
        raise KbakError(f"cannot put the lifecycle configuration of bucket {lake.bucket}: {aws_message(exc)}") from None
    stored = next((r for r in current_rules(lake, client) if r.get("ID") == rule["ID"]), None)
    if stored is None or _normal(stored) != _normal(rule):
        raise KbakError(f"bucket {lake.bucket} did not keep kbak's lifecycle rule as written (read back: {stored})")
    return {"lake": lake.uri, "bucket": lake.bucket, "applied": True, "rule": stored, "rules": len(config["Rules"])}


def _normal(rule: dict) -> dict:
    keys = ("ID", "Filter", "Status", "Transitions", "Expiration", "NoncurrentVersionExpiration")
    return {k: rule.get(k) for k in keys}


def _conflicts(lake: Lake, rule: dict) -> list[str]:
    """Why an existing rule must not cover this lake (expiry or restore-only classes), if it does."""
    if rule.get("Status") != "Enabled":
        return []
    f = rule.get("Filter") or {}
    prefix = f.get("Prefix", (f.get("And") or {}).get("Prefix", rule.get("Prefix", "")))
    lake_prefix = f"{lake.prefix}/" if lake.prefix else ""
    if not (lake_prefix.startswith(prefix) or prefix.startswith(lake_prefix)):
        return []
    out = []
    name = rule.get("ID") or "(unnamed)"
    if rule.get("Expiration"):  # (expiring noncurrent versions is harmless: the log never names them)
        out.append(f"rule {name!r} expires objects under {prefix or 'the whole bucket'!r}")
    classes = [t.get("StorageClass") for t in rule.get("Transitions") or []]
    classes += [t.get("StorageClass") for t in rule.get("NoncurrentVersionTransitions") or []]
    for c in classes:
        if c in RESTORE_ONLY:
            out.append(f"rule {name!r} moves objects under {prefix or 'the whole bucket'!r} to {c} (restore needed)")
    return out
