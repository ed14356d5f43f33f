"""Micro-benchmark of the sans-IO Kafka codec (omnibus.wire.kafka).

Run before changing the generated code in wire/kafka/types.py or KafkaConnection.events /
encode_response_parts:

    python bench/kafka_codec.py            # all scenarios
    python bench/kafka_codec.py --quick    # fewer rounds

Scenarios (numbers are the best of several rounds, single thread):
- Produce v9 request, one partition whose records field is one record batch of 100 records of 1 KiB
  (~104 KiB, opaque bytes: the codec never looks inside): decode_request on the frame, and the whole path
  receive_data + events() in 64 KiB reads. Also kafka-python 3's decoder on the same body, if installed.
- Produce v3 request with 10 partitions of small batches (more fields, less payload).
- Fetch v12 response, 1 partition with ~104 KiB of records: encode_response_parts with the records as a
  FileRegion (the sendfile path: nothing copied), as bytes (passed through as a part), and
  encode_response to one bytes (one copy); and a 10-partition response with 1 KiB each.
- Small messages: Heartbeat request decode, Metadata v12 response (3 topics x 4 partitions) encode.

Measured on the 2-core dev VM (CPython 3.11.7; other jobs running, so runs vary by up to 1.5x; best run):
  Produce v9 decode_request, 100 x 1 KiB batch           ~170,000 requests/s (~6 us; ~17 GB/s of records)
  Produce v9 through receive_data+events, 64 KiB reads   ~72,000 requests/s  (~7.5 GB/s: one join per request)
  Produce v3 decode_request, 10 partitions               ~58,000 requests/s
  kafka-python 3 decode of the same v9 body              ~104,000 requests/s
  Fetch v12 encode_response_parts, FileRegion            ~125,000 responses/s (~8 us)
  Fetch v12 encode_response_parts, 104 KiB bytes         ~168,000 responses/s
  Fetch v12 encode_response, one bytes (copy)            ~105,000 responses/s
  Fetch v12 encode_response, 10 partitions x 1 KiB       ~31,000 responses/s (~3 us per partition)
  Fetch v4 encode_response_parts, FileRegion             ~250,000 responses/s
  Heartbeat v4 decode_request                            ~350,000 requests/s
  Metadata v12 encode_response, 3 topics x 4 partitions  ~25,000 responses/s
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

from omnibus.wire.kafka import messages as m
from omnibus.wire.kafka.connection import KafkaConnection, Request, decode_request, encode_request
from omnibus.wire.kafka.types import FileRegion

CHUNK = 64 * 1024


def best_rate(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Best calls/s of ``fn`` over ``rounds`` rounds of ``n`` calls."""
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        best = max(best, n / dt)
    return best


def batch_bytes(records: int, record_size: int) -> bytes:
    """Opaque stand-in for a record batch v2 of ``records`` records of ``record_size`` bytes: a 61-byte
    header and, per record, ~10 bytes of varint framing plus its value."""
    return os.urandom(61 + records * (record_size + 10))


def produce_request(partitions: int, batch: bytes, version: int) -> m.ProduceRequest:
    P = m.ProduceRequest
    return P(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[P.TopicProduceData(
        name="bench-topic", partition_data=[P.PartitionProduceData(index=i, records=batch)
                                            for i in range(partitions)])])


def fetch_response(partitions: int, records: object) -> m.FetchResponse:
    F = m.FetchResponse
    return F(throttle_time_ms=0, error_code=0, session_id=0, responses=[F.FetchableTopicResponse(
        topic="bench-topic", partitions=[F.PartitionData(partition_index=i, high_watermark=1000, last_stable_offset=1000,
                                                         log_start_offset=0, aborted_transactions=None,
                                                         records=records) for i in range(partitions)])])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 3 if args.quick else 7
    rows: list[tuple[str, float, str]] = []

    # -- Produce decode --
    batch = batch_bytes(100, 1024)
    frame = encode_request(produce_request(1, batch, 9), 9, 1, "bench-producer")
    body_only = frame[4:]
    rows.append(("Produce v9 decode_request (100 x 1 KiB batch)", best_rate(lambda: decode_request(body_only),
                                                                             20000, rounds), "requests/s"))
    chunks = [frame[i:i + CHUNK] for i in range(0, len(frame), CHUNK)]
    conn = KafkaConnection()

    def via_connection() -> None:
        for c in chunks:
            conn.receive_data(c)
            conn.events()
    rows.append(("Produce v9 receive_data+events in 64 KiB reads", best_rate(via_connection, 5000, rounds),
                 "requests/s"))
    small_frame = encode_request(produce_request(10, batch_bytes(2, 100), 3), 3, 1, "p")[4:]
    rows.append(("Produce v3 decode_request (10 partitions x 281 B)", best_rate(lambda: decode_request(small_frame),
                                                                                50000, rounds), "requests/s"))
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from kafka.protocol.producer.produce import ProduceRequest as KPProduce
        kp_body = produce_request(1, batch, 9).encode(9)
        KPProduce.decode(kp_body, version=9)
        rows.append(("  kafka-python 3 ProduceRequest.decode (same v9 body)",
                     best_rate(lambda: KPProduce.decode(kp_body, version=9), 20000, rounds), "requests/s"))
    except Exception as e:  # noqa: BLE001 - optional comparison
        rows.append((f"  kafka-python comparison skipped: {e!r}"[:70], 0.0, ""))

    # -- Fetch encode --
    conn = KafkaConnection()
    req = Request(m.FETCH, 12, 7, "c", m.FetchRequest())
    region = FileRegion(3, 4096, len(batch))
    resp_region = fetch_response(1, region)
    resp_bytes = fetch_response(1, batch)
    rows.append(("Fetch v12 encode_response_parts, 1 partition, FileRegion",
                 best_rate(lambda: conn.encode_response_parts(req, resp_region), 50000, rounds), "responses/s"))
    rows.append(("Fetch v12 encode_response_parts, 1 partition, 104 KiB bytes",
                 best_rate(lambda: conn.encode_response_parts(req, resp_bytes), 50000, rounds), "responses/s"))
    rows.append(("Fetch v12 encode_response (one bytes, copies 104 KiB)",
                 best_rate(lambda: conn.encode_response(req, resp_bytes), 10000, rounds), "responses/s"))
    resp10 = fetch_response(10, batch_bytes(1, 1000))
    rows.append(("Fetch v12 encode_response, 10 partitions x 1 KiB",
                 best_rate(lambda: conn.encode_response(req, resp10), 20000, rounds), "responses/s"))
    req4 = Request(m.FETCH, 4, 7, "c", m.FetchRequest())
    rows.append(("Fetch v4 encode_response_parts, 1 partition, FileRegion",
                 best_rate(lambda: conn.encode_response_parts(req4, resp_region), 50000, rounds), "responses/s"))

    # -- small messages --
    hb = encode_request(m.HeartbeatRequest(group_id="g", generation_id=3, member_id="consumer-1-abc"), 4, 9, "c")[4:]
    rows.append(("Heartbeat v4 decode_request", best_rate(lambda: decode_request(hb), 100000, rounds), "requests/s"))
    M = m.MetadataResponse
    meta = M(brokers=[M.MetadataResponseBroker(node_id=1, host="127.0.0.1", port=9092)], cluster_id="omnibus",
             controller_id=1, topics=[M.MetadataResponseTopic(name=f"topic-{t}", partitions=[
                 M.MetadataResponsePartition(partition_index=p, leader_id=1, replica_nodes=[1], isr_nodes=[1])
                 for p in range(4)]) for t in range(3)])
    mreq = Request(m.METADATA, 12, 1, "c", m.MetadataRequest())
    rows.append(("Metadata v12 encode_response (3 topics x 4 partitions)",
                 best_rate(lambda: conn.encode_response(mreq, meta), 50000, rounds), "responses/s"))

    width = max(len(r[0]) for r in rows)
    for name, rate, unit in rows:
        print(f"{name:<{width}}  {rate:>12,.0f} {unit}" if rate else name)


if __name__ == "__main__":
    main()
