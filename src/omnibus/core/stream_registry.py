"""The JetStream account: its streams and consumers, their rules across streams, and their persistence.

Strategy
    ``JetStream`` is what the NATS session maps ``$JS.API.*`` onto: STREAM.CREATE/UPDATE/DELETE/INFO/
    NAMES/LIST, CONSUMER.CREATE/DELETE/INFO/NAMES/LIST, plus ``stream_for_subject`` to route a publish
    to the stream that captures it (a ``SubjectTrie`` over every stream's subjects). Logs are opened
    through an injected ``open_log(relative_name, storage) -> Log`` / ``delete_log(relative_name)``
    (the broker's, so every log shares its syncer and settings; ``streams.DirectoryLogs`` for tests).

    What is persisted where:
    * messages and removals: the stream's log and its ack bitmaps (streams.py);
    * ``MetaStore`` namespace ``jetstream/streams``: per stream ``{config, created, shift}``, written on
      create/update and when the sequence shift moves (rare);
    * ``jetstream/consumers/<stream>``: per durable consumer ``{config, created}`` (on create/update);
    * ``jetstream/consumer-state/<stream>``: per durable consumer its state (delivered, ack floor,
      pending with delivery times, redelivered counts), written by ``flush`` for consumers whose state
      changed -- one transaction for all of them. Call it every ~100 ms-1 s and at shutdown: a crash
      loses at most that much ack state, and the messages concerned are delivered again (at-least-once,
      as nats-server's consumer store, which also flushes asynchronously).
    Ephemeral consumers are not persisted (clients re-create them); memory streams keep their
    configuration and consumers' configurations but start empty, as nats-server.

Rules
    * Create is idempotent for an identical configuration, else StreamNameExists (10058); subjects may
      not overlap another stream's (10065, ``jsAccount.subjectsOverlap``); updates follow
      ``StreamConfig.check_update``.
    * Errors are the core exceptions of streams.py / stream_consumers.py.

Concurrency: event-loop thread only. MetaStore writes block (fsync): ``flush`` and the create/update/
    delete calls do them inline; a server can instead run ``collect_state()`` on the loop and
    ``write_state(rows)`` in an executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from omnibus.core.clock import Clock
from omnibus.core.routing.trie import SubjectTrie
from omnibus.core.stream_consumers import (
    Consumer,
    ConsumerConfig,
    ConsumerNotFound,
    create_consumer,
    delete_consumer,
)
from omnibus.core.streams import (
    MaximumStreamsReached,
    Stream,
    StreamConfig,
    StreamConfigInvalid,
    StreamNameExists,
    StreamNotFound,
    StreamSubjectOverlap,
    stream_log_name,
    subjects_overlap,
)
from omnibus.storage.log import Log
from omnibus.storage.meta import MetaStore

__all__ = ["JetStream", "NS_STREAMS"]

NS_STREAMS = "jetstream/streams"


def _ns_consumers(stream: str) -> str:
    return f"jetstream/consumers/{stream}"


def _ns_state(stream: str) -> str:
    return f"jetstream/consumer-state/{stream}"


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


class JetStream:
    """Streams and consumers of one account. See the module docstring."""

    def __init__(self, *, open_log: Callable[[str, str], Log], delete_log: Callable[[str], None],
                 meta: MetaStore | None, clock: Clock, max_streams: int = -1) -> None:
        self._open_log = open_log
        self._delete_log = delete_log
        self.meta = meta
        self.clock = clock
        self.max_streams = max_streams
        self._streams: dict[str, Stream] = {}
        self._trie = SubjectTrie("nats")

    # -- restore / persistence -------------------------------------------------------------------

    def restore(self) -> None:
        """Reopen every stream and durable consumer recorded in the MetaStore. Blocks."""
        meta = self.meta
        if meta is None:
            return
        for name, raw in meta.items(NS_STREAMS):
            rec = orjson.loads(raw)
            cfg = StreamConfig.from_dict(rec["config"])
            memory = cfg.storage == "memory"
            logname = stream_log_name(name)
            if memory:
                self._delete_log(logname)
            shift = (cfg.first_seq - 1 if cfg.first_seq > 0 else 0) if memory else rec.get("shift", 0)
            stream = Stream.open(cfg, self._open_log(logname, cfg.storage), self.clock,
                                 created_ms=rec.get("created", 0), shift=shift)
            self._register(stream)
            states = {} if memory else dict(meta.items(_ns_state(name)))
            for cname, craw in meta.items(_ns_consumers(name)):
                crec = orjson.loads(craw)
                ccfg = ConsumerConfig.from_dict(crec["config"])
                state = orjson.loads(states[cname]) if cname in states else None
                c = Consumer(stream, cname, ccfg, created_ms=crec.get("created"), state=state)
                stream.consumers[cname] = c
            stream.check_interest()
            stream.flush()

    def _register(self, stream: Stream) -> None:
        self._streams[stream.name] = stream
        stream.on_meta_change = self._persist_stream
        for subj in stream.config.subjects:
            self._trie.insert(subj, stream.name)

    def _unregister(self, stream: Stream) -> None:
        self._streams.pop(stream.name, None)
        for subj in stream.config.subjects:
            self._trie.remove(subj, stream.name)

    def _persist_stream(self, stream: Stream) -> None:
        if self.meta is not None:
            self.meta.put(NS_STREAMS, stream.name, _json(
                {"config": stream.config.to_dict(), "created": stream.created_ms, "shift": stream.shift}))

    def _persist_consumer(self, c: Consumer) -> None:
        if self.meta is not None and c.config.is_durable:
            with self.meta.transaction():
                self.meta.put(_ns_consumers(c.stream.name), c.name,
                              _json({"config": c.config.to_dict(), "created": c.created_ms}))
                self.meta.put(_ns_state(c.stream.name), c.name, _json(c.snapshot()))
            c.dirty = False

    def collect_state(self) -> list[tuple[str, str, bytes]]:
        """(namespace, key, value) rows for every durable consumer whose state changed since the last
        collection, on the loop thread; write them with ``write_state`` (may run in an executor)."""
        rows = []
        for stream in self._streams.values():
            if stream.config.storage == "memory":
                for c in stream.consumers.values():
                    c.dirty = False
                continue
            for c in stream.consumers.values():
                if c.dirty and c.config.is_durable:
                    rows.append((_ns_state(stream.name), c.name, _json(c.snapshot())))
                c.dirty = False
        return rows

    def write_state(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        """Write collected state rows in one transaction. Blocks (fsync); thread-safe."""
        rows = list(rows)
        if self.meta is None or not rows:
            return
        with self.meta.transaction():
            for ns, key, value in rows:
                self.meta.put(ns, key, value)

    def flush(self) -> int:
        """Persist removals of every stream (page cache) and the state of changed durable consumers
        (MetaStore, blocks). Returns how many consumer states were written."""
        for stream in self._streams.values():
            stream.flush()
        rows = self.collect_state()
        self.write_state(rows)
        return len(rows)

    def close(self) -> None:
        """Flush everything and close every stream's log. Blocks."""
        try:
            self.flush()
        finally:
            for stream in list(self._streams.values()):
                stream.close()

    # -- streams ---------------------------------------------------------------------------------

    def add_stream(self, config: StreamConfig) -> tuple[Stream, bool]:
        """STREAM.CREATE. Returns (stream, created); an identical configuration returns the existing
        stream. Raises StreamConfigInvalid & co, StreamNameExists, StreamSubjectOverlap,
        MaximumStreamsReached."""
        if config.sealed:  # jsStreamCreateRequest: "Can't create a stream with a sealed state."
            raise StreamConfigInvalid("stream configuration for create can not be sealed")
        cfg = config.normalized()
        existing = self._streams.get(cfg.name)
        if existing is not None:
            if existing.config.to_dict() == cfg.to_dict():
                return existing, False
            raise StreamNameExists()
        if self.max_streams > 0 and len(self._streams) >= self.max_streams:
            raise MaximumStreamsReached()
        self._check_overlap(cfg, None)
        logname = stream_log_name(cfg.name)
        self._delete_log(logname)  # leftovers of an earlier stream of that name
        log = self._open_log(logname, cfg.storage)
        stream = Stream.open(cfg, log, self.clock, shift=cfg.first_seq - 1 if cfg.first_seq > 0 else 0)
        self._register(stream)
        self._persist_stream(stream)
        return stream, True

    def update_stream(self, config: StreamConfig) -> Stream:
        """STREAM.UPDATE. Raises StreamNotFound, StreamConfigInvalid, StreamSubjectOverlap."""
        stream = self.stream(config.name)
        cfg = stream.config.check_update(config)
        self._check_overlap(cfg, stream)
        for subj in stream.config.subjects:
            self._trie.remove(subj, stream.name)
        stream.update_config(cfg)
        for subj in cfg.subjects:
            self._trie.insert(subj, stream.name)
        self._persist_stream(stream)
        return stream

    def _check_overlap(self, cfg: StreamConfig, own: Stream | None) -> None:
        for other in self._streams.values():
            if other is own:
                continue
            for a in other.config.subjects:
                for b in cfg.subjects:
                    if subjects_overlap(a, b):
                        raise StreamSubjectOverlap()

    def delete_stream(self, name: str) -> None:
        """STREAM.DELETE: the stream, its consumers, its log. Raises StreamNotFound."""
        stream = self.stream(name)
        self._unregister(stream)
        try:
            stream.delete()
        finally:
            self._delete_log(stream_log_name(name))
            if self.meta is not None:
                with self.meta.transaction():
                    self.meta.delete(NS_STREAMS, name)
                    self.meta.clear(_ns_consumers(name))
                    self.meta.clear(_ns_state(name))

    def stream(self, name: str) -> Stream:
        s = self._streams.get(name)
        if s is None:
            raise StreamNotFound(name)
        return s

    def streams(self) -> list[Stream]:
        return [self._streams[n] for n in sorted(self._streams)]

    def stream_names(self, subject: str | None = None) -> list[str]:
        """STREAM.NAMES, optionally only streams whose subjects overlap ``subject``."""
        names = sorted(self._streams)
        if subject:
            names = [n for n in names if any(subjects_overlap(subject, s) for s in self._streams[n].config.subjects)]
        return names

    def stream_for_subject(self, subject: str) -> Stream | None:
        """The stream capturing the literal publish ``subject`` (subjects never overlap, so at most
        one). Hot path: one cached trie lookup."""
        plain = self._trie.match(subject).plain
        return self._streams.get(plain[0]) if plain else None

    # -- consumers -------------------------------------------------------------------------------

    def add_consumer(self, stream_name: str, config: ConsumerConfig, *, action: str = "",
                     name: str | None = None) -> tuple[Consumer, bool]:
        """CONSUMER.CREATE (``name`` from the subject, ``action`` "create"/"update"/"") and
        CONSUMER.DURABLE.CREATE. Raises StreamNotFound and the consumer errors."""
        stream = self.stream(stream_name)
        consumer, created = create_consumer(stream, config, action=action, name=name)
        self._persist_consumer(consumer)
        return consumer, created

    def consumer(self, stream_name: str, name: str) -> Consumer:
        c = self.stream(stream_name).consumers.get(name)
        if c is None:
            raise ConsumerNotFound()
        return c

    def consumer_names(self, stream_name: str) -> list[str]:
        return sorted(self.stream(stream_name).consumers)

    def delete_consumer(self, stream_name: str, name: str) -> None:
        """CONSUMER.DELETE. Raises StreamNotFound, ConsumerNotFound."""
        stream = self.stream(stream_name)
        delete_consumer(stream, name)
        if self.meta is not None:
            with self.meta.transaction():
                self.meta.delete(_ns_consumers(stream_name), name)
                self.meta.delete(_ns_state(stream_name), name)

    # -- timers ----------------------------------------------------------------------------------

    def expire(self, now_ms: int | None = None) -> int:
        """max_age and de-duplication expiry of every stream; returns messages removed."""
        return sum(s.expire(now_ms) for s in self._streams.values())

    def expire_inactive_consumers(self, now_ms: int | None = None) -> list[tuple[str, str]]:
        """Delete consumers idle past their inactive_threshold; returns (stream, consumer) pairs."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        gone = []
        for stream in list(self._streams.values()):
            for c in list(stream.consumers.values()):
                deadline = c.inactive_deadline_ms()
                if deadline is not None and now >= deadline:
                    self.delete_consumer(stream.name, c.name)
                    gone.append((stream.name, c.name))
        return gone

    def __repr__(self) -> str:
        return f"JetStream(streams={sorted(self._streams)})"
