"""``kbak iam-policy``: the least-privilege IAM policy for one role on one lake."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli._app import app, emit_json, friendly


@app.command("iam-policy")
@friendly
def iam_policy_cmd(
    lake: Annotated[str, typer.Option("--lake", help="s3://bucket/prefix the policy covers.")],
    role: Annotated[str, typer.Option("--role", help="ingest | query | replay | custody | admin.")],
    kms_key_arn: Annotated[
        str | None, typer.Option("--kms-key-arn", help="The lake's KMS key: adds kms actions and the SSE condition.")
    ] = None,
    sse: Annotated[
        str | None, typer.Option("--sse", help="Require this encryption on writes: aws:kms or AES256.")
    ] = None,
) -> None:
    """Print the IAM policy JSON with just the S3 (and KMS) actions ROLE needs on the lake's prefix."""
    from pipeline.core.storage import Lake, S3Settings
    from pipeline.custody.iam import iam_policy

    # Only the bucket and prefix matter here: no credentials, no endpoint, nothing contacted.
    emit_json(iam_policy(Lake.at(lake, S3Settings()), role, kms_key_arn=kms_key_arn, sse=sse))
