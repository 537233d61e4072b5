"""Chain of custody: checksummed manifests chained across every version of the archive."""

from pipeline.custody.manifest import (
    MANIFEST_DIR,
    canonical_json,
    manifest_path,
    read_manifest,
    seal,
    sha256_hex,
    stage,
)

__all__ = ["MANIFEST_DIR", "canonical_json", "manifest_path", "read_manifest", "seal", "sha256_hex", "stage"]
