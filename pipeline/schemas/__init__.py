"""Schemas kept with the archive: Confluent wire-format payloads (Avro, Protobuf, JSON Schema) stay
decodable after the Schema Registry that issued their ids is gone.

- ``wire``: the 5-byte framing (magic byte 0, big-endian schema id) and the ids in a column.
- ``store``: the kept schemas, one JSON document per id under ``_kbak/schemas/`` in the lake.
- ``registry``: fetching schemas (and their references) with confluent-kafka's SchemaRegistryClient.
- ``decode``: payload bytes -> JSON text with the kept schemas, no registry needed.
- ``archive``: schemas taken from an archived ``_schemas`` topic; ``imports`` keeps them (custody commit).

Between ``core`` and the jobs: ingest, query and replay import it; it imports only ``core`` (and
``custody.operation`` for the import's custody commit).
"""
