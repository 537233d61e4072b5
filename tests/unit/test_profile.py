"""``KBAK_PROFILE``: stages add up per thread; off, nothing is recorded."""

from __future__ import annotations

from pipeline.core import profile


def test_stages_are_reported_per_thread_with_cpu_per_record(monkeypatch):
    profile.reset()
    monkeypatch.setattr(profile, "ENABLED", True)
    for _ in range(3):
        with profile.stage("encode"):
            sum(range(10_000))
    text = profile.report(records=1000)
    row = next(line for line in text.splitlines() if " encode " in line)
    assert row.startswith("MainThread") and row.split()[2] == "3"  # three calls
    assert "(whole process)" in text
    profile.reset()


def test_off_records_nothing(monkeypatch):
    profile.reset()
    monkeypatch.setattr(profile, "ENABLED", False)
    with profile.stage("encode"):
        pass
    assert " encode " not in profile.report(records=1)
