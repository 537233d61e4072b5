"""The front door: every public name resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pipeline


def test_every_public_name_resolves():
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name


def test_importing_the_package_loads_no_heavy_stack():
    heavy = ("duckdb", "deltalake", "confluent_kafka")
    code = f"import sys, pipeline, pipeline.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
