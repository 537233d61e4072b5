"""Pure parts of erasure: selectors, keyed hashes, offset runs, following replacements, counting removals."""

from __future__ import annotations

import pytest

from pipeline.core.errors import KbakError
from pipeline.core.readset import resolve
from pipeline.core.subject import KEY, selector_hmac
from pipeline.custody.history import _union_size
from pipeline.erasure.erase import removed_offsets
from pipeline.erasure.selectors import parse_selectors


def test_selectors_parse_and_never_echo_the_value():
    sels = parse_selectors(["k1", "hex:00ff"], ["customer_id=c-1"], ["user=u=1"])
    assert [(s.kind, s.name, s.value) for s in sels] == [
        ("key", "", b"k1"),
        ("key", "", b"\x00\xff"),
        ("json-field", "customer_id", b"c-1"),
        ("header", "user", b"u=1"),
    ]
    with pytest.raises(KbakError) as err:
        parse_selectors([], ["customer_id"], [])
    assert "customer_id" not in str(err.value) and "use NAME=VALUE" in str(err.value)


def test_selector_hmac_is_keyed_and_kind_bound():
    a = selector_hmac(b"secret", KEY, b"subject")
    assert a == selector_hmac(b"secret", KEY, b"subject") and len(a) == 64
    assert a != selector_hmac(b"other", KEY, b"subject")
    assert a != selector_hmac(b"secret", "header", b"subject", "")
    assert selector_hmac(b"s", "json-field", b"x", "a") != selector_hmac(b"s", "json-field", b"x", "b")


def test_removed_offsets_are_contiguous_runs_per_partition():
    keys = {("t", 0, 1), ("t", 0, 2), ("t", 0, 3), ("t", 0, 7), ("t", 1, 2), ("u", 0, 0)}
    runs = [(r["topic"], r["partition"], r["first_offset"], r["last_offset"], r["records"]) for r in
            removed_offsets(keys, "erased")]  # fmt: skip
    assert runs == [("t", 0, 1, 3, 3), ("t", 0, 7, 7, 1), ("t", 1, 2, 2, 1), ("u", 0, 0, 0, 1)]


def test_resolve_follows_replacements_to_the_latest():
    mapping = {"a": "b", "b": "c", "x": None}
    assert (resolve("a", mapping), resolve("b", mapping), resolve("x", mapping), resolve("z", mapping)) == (
        "c",
        "c",
        None,
        "z",
    )
    assert resolve("loop", {"loop": "loop2", "loop2": "loop"}) in ("loop", "loop2")  # never hangs


def test_removed_records_count_each_offset_once():
    assert _union_size([]) == 0
    assert _union_size([(1, 3), (2, 5)]) == 5  # erasure re-listing what retention removed
    assert _union_size([(1, 10), (2, 3), (12, 12)]) == 11
