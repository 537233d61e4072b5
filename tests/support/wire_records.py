"""Real Confluent wire-format records made by confluent-kafka's own serializers (Avro, Protobuf,
JSON Schema), registered in a (fixture) Schema Registry, for the schema tests and the bench."""

from __future__ import annotations

import json

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

PAYMENT_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Payment",
        "namespace": "kbak.test",
        "fields": [
            {"name": "customer_id", "type": "string"},
            {"name": "amount_cents", "type": "long"},
            {"name": "currency", "type": "string"},
            {"name": "memo", "type": ["null", "string"], "default": None},
        ],
    }
)

PAYMENT_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Payment",
        "type": "object",
        "properties": {
            "customer_id": {"type": "string"},
            "amount_cents": {"type": "integer"},
            "currency": {"type": "string"},
        },
        "required": ["customer_id", "amount_cents"],
    }
)


def payment_proto_class():
    """A generated-like Protobuf message class for ``kbak.test.Payment``, built without protoc."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    fdp = descriptor_pb2.FileDescriptorProto(name="kbak_test_payment.proto", package="kbak.test", syntax="proto3")
    msg = fdp.message_type.add(name="Payment")
    F = descriptor_pb2.FieldDescriptorProto
    for number, (name, ftype) in enumerate(
        [("customer_id", F.TYPE_STRING), ("amount_cents", F.TYPE_INT64), ("currency", F.TYPE_STRING)], 1
    ):
        msg.field.add(name=name, number=number, type=ftype, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return GetMessageClass(pool.FindMessageTypeByName("kbak.test.Payment"))


def serializer(kind: str, registry_url: str):
    """A value serializer of ``kind`` (avro, protobuf, json) that registers its schema as it goes."""
    client = SchemaRegistryClient({"url": registry_url})
    if kind == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer

        return AvroSerializer(client, PAYMENT_AVRO)
    if kind == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

        cls = payment_proto_class()
        inner = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
        return lambda obj, ctx: inner(cls(**obj), ctx)
    if kind == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        return JSONSerializer(PAYMENT_JSON_SCHEMA, client)
    raise ValueError(kind)


def payment(i: int, customer: str | None = None) -> dict:
    """The i-th test payment (customer-0000 .. customer-0009 unless given)."""
    return {"customer_id": customer or f"customer-{i % 10:04d}", "amount_cents": 100 + i, "currency": "EUR"}


def produce_payments(
    bootstrap: str, topic: str, kind: str, registry_url: str, payments: list[dict], timestamps: list[int] | None = None
) -> list[bytes]:
    """Serialise each payment with ``kind``'s serializer and produce it (key ``k-<amount>``, plain);
    returns the value bytes produced, in order."""
    ser = serializer(kind, registry_url)
    ctx = SerializationContext(topic, MessageField.VALUE)
    if kind == "avro":
        payments = [{"memo": None, **p} for p in payments]
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors: list = []
    values = [ser(obj, ctx) for obj in payments]
    for i, (obj, value) in enumerate(zip(payments, values, strict=True)):
        extra = {"timestamp": timestamps[i]} if timestamps else {}
        key = f"k-{obj['amount_cents']}".encode()
        p.produce(topic, key=key, value=value, on_delivery=lambda e, m: e and errors.append(e), **extra)
    p.flush(30)
    assert not errors, errors
    return values
