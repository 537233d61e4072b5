"""Imports only point down: each package of ``pipeline`` imports only packages of lower layers.

A job package may use ``core``, the custody chain every job writes, and what sits below it here;
``cli`` and ``dev`` sit on top of everything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pipeline

LAYERS = [
    {"core"},
    {"custody"},
    {"schemas"},
    {"ingest", "query"},
    {"replay", "erasure", "lifecycle"},
    {"cli", "dev"},
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
IMPORT = re.compile(r"^\s*(?:from|import) pipeline\.(\w+)", re.M)


def test_every_package_has_a_layer():
    root = Path(pipeline.__file__).parent
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANK)


def test_imports_point_down():
    root = Path(pipeline.__file__).parent
    upward = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue
        here = rel.parts[0]
        for target in IMPORT.findall(path.read_text()):
            if target != here and target in RANK and RANK[target] >= RANK[here] and here not in ("cli", "dev"):
                upward.append(f"{rel} imports pipeline.{target}")
    assert upward == []
