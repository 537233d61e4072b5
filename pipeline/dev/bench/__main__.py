"""Run every benchmark in turn (``make bench``); ``python -m pipeline.dev.bench ingest`` runs one."""

from __future__ import annotations

import importlib
import sys

BENCHES = ["ingest", "replay", "query", "custody", "aging", "checkpoints", "erase"]


def main(argv: list[str]) -> int:
    chosen = argv or BENCHES
    for name in chosen:
        module = importlib.import_module(f"pipeline.dev.bench.{name}")
        print(f"\n=== bench: {name} ===", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
