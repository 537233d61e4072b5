"""A local lake's reads go to the OS, not through pyarrow: the same answers pyarrow's filesystem gives."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from pipeline.core.storage import Lake


def _pyarrow_listing(lake: Lake, relative: str) -> list[str]:
    """What ``Lake.list_files`` returned through pyarrow before (the S3 path still does)."""
    selector = pafs.FileSelector(lake.path(relative) if relative else lake.root, recursive=True, allow_not_found=True)
    infos = pafs.LocalFileSystem().get_file_info(selector)
    return sorted(i.path[len(lake.root) + 1 :] for i in infos if i.type == pafs.FileType.File)


def test_local_reads_answer_as_pyarrow_does(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    for rel, data in {
        "_delta_log/00000000000000000000.json": b"{}\n",
        "_kbak/schemas/1.json": b'{"id": 1}',
        "_kbak/custody/.hidden": b"",
        "topic=t/date=2024-01-01/part-1.parquet": b"x" * 10,
    }.items():
        lake.write_bytes(rel, data)
    (tmp_path / "lake" / "empty-dir").mkdir()
    for relative in ("", "_kbak", "_kbak/schemas", "topic=t", "no-such-dir"):
        assert lake.list_files(relative) == _pyarrow_listing(lake, relative), relative
    assert lake.list_files("no-such-dir") == []
    assert lake.read_bytes("_kbak/schemas/1.json") == b'{"id": 1}'
    for read in (lake.read_bytes, lambda rel: pafs.LocalFileSystem().open_input_stream(lake.path(rel))):
        with pytest.raises(FileNotFoundError):
            read("nope")
    assert (lake.exists("_kbak/schemas/1.json"), lake.exists("_kbak"), lake.exists("nope")) == (True, True, False)
    assert (lake.size("topic=t/date=2024-01-01/part-1.parquet"), lake.size("nope"), lake.size("empty-dir")) == (
        10,
        None,
        pafs.LocalFileSystem().get_file_info(lake.path("empty-dir")).size,
    )
