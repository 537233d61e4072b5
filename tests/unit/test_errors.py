"""The library raises errors by kind; only the CLI turns kinds into exit codes."""

from __future__ import annotations

from pipeline.cli._app import exit_code
from pipeline.cli.custody import CUSTODY_CODES
from pipeline.core.errors import Interrupted, KbakError, NotAnArchiveError, StorageError, UsageError
from pipeline.core.storage import StorageAccessError
from pipeline.replay.run import ReplayFailed, ReplayInterrupted


def test_exit_codes_by_kind():
    assert exit_code(KbakError("x")) == 1
    assert exit_code(UsageError("x")) == 2
    assert exit_code(Interrupted("x")) == 130
    assert exit_code(StorageAccessError("x")) == 1
    assert isinstance(StorageAccessError("x"), StorageError)


def test_a_command_maps_its_own_kinds_first():
    assert exit_code(NotAnArchiveError("x")) == 1
    assert exit_code(NotAnArchiveError("x"), CUSTODY_CODES) == 2
    assert exit_code(UsageError("x"), CUSTODY_CODES) == 2


def test_an_interrupted_replay_is_both_a_replay_failure_and_an_interruption():
    exc = ReplayInterrupted("stopped", summary=None)  # type: ignore[arg-type]
    assert isinstance(exc, ReplayFailed) and exit_code(exc) == 130
    assert exit_code(ReplayFailed("failed", summary=None)) == 1  # type: ignore[arg-type]
