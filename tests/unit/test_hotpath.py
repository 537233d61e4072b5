"""``fewer_gc_passes`` changes the collector only within the run, and leaves a caller's freeze alone."""

from __future__ import annotations

import gc

from pipeline.core.hotpath import THRESHOLD, fewer_gc_passes


def test_fewer_gc_passes_restores_the_collector():
    before = gc.get_threshold()
    with fewer_gc_passes():
        assert gc.get_threshold()[0] >= THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_fewer_gc_passes_keeps_a_callers_freeze():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_gc_passes():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
