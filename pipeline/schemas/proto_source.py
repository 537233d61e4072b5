"""``.proto`` source -> FileDescriptorProto, for Protobuf schemas kept as text.

Registries answer ``GET /schemas/ids/{id}`` with ``.proto`` source, and Confluent's ``_schemas``
topic stores that source too. Decoding needs a descriptor: protoc (shipped in the grpcio-tools
wheel, run in-process) compiles the source with its kept imports; the well-known
``google/protobuf/*.proto`` come with the wheel.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def compile_proto(name: str, source: str, imports: dict[str, str]):
    """The FileDescriptorProto of ``source`` (file ``name``), whose imports are ``{import name: source}``."""
    import importlib.resources

    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory(prefix="kbak-proto-") as tmp:
        root = Path(tmp)
        for file_name, text in {**imports, name: source}.items():
            path = root / "src" / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        out = root / "set.pb"
        code = protoc.main(
            ["protoc", f"-I{root / 'src'}", f"-I{well_known}", f"--descriptor_set_out={out}", str(root / "src" / name)]
        )
        if code != 0 or not out.exists():
            raise ValueError(f"protoc could not compile the kept .proto source {name} (exit {code})")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return next(f for f in files if f.name == name)
