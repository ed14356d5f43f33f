"""Metadata in SQLite (design decision 4): topology, users, consumer-group offsets, consumer state.

Strategy
    One SQLite database file (stdlib ``sqlite3``) per broker, in WAL mode. Three tables:

    * ``kv(namespace, key, value)``: generic key/value for topology and anything else that is a
      document per name (exchanges, queues, bindings, JetStream streams and consumers). Values are
      opaque bytes (the callers' JSON); this module never parses them.
    * ``group_offsets(group_id, topic, partition, offset, metadata, commit_timestamp_ms)``: Kafka
      OffsetCommit / OffsetFetch / OffsetDelete, one row per (group, topic, partition).
    * ``users(name, password_hash, tags)``.

    Multi-row updates go through ``transaction()`` (BEGIN IMMEDIATE .. COMMIT, rolled back on an
    exception; nested blocks join the outer one). Single calls are one transaction each.

Durability: ``journal_mode=WAL`` so readers never block the writer and a commit is one append to the
    WAL; ``synchronous=FULL`` by default, so that commit is fsynced before ``commit`` returns: a
    declare-ok or an OffsetCommit response promises the change survives power loss, and these writes
    are rare (a declare; a Kafka group commits every auto.commit.interval.ms = 5 s). ``NORMAL`` (the
    usual WAL pairing) fsyncs only at checkpoints: it survives a process crash but may lose the last
    commits on power loss; pass ``synchronous="NORMAL"`` where that trade is acceptable (tests, bulk
    imports). ``EXTRA``/``OFF`` are not offered.

Rules
    * Imports nothing of ours (storage rule); times come from the caller (``commit_timestamp_ms``).
    * ``SCHEMA_VERSION`` lives in ``PRAGMA user_version``; a newer file is refused, not downgraded.
    * Errors are ``MetaStoreError`` (wrapping ``sqlite3.Error``).

Concurrency: every method blocks on disk I/O (an fsync per commit under FULL): run it in an executor
    from the event loop. Thread-safe: one connection (``check_same_thread=False``) guarded by a lock;
    a ``transaction()`` holds the lock for its whole block.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "MetaStore",
    "MetaStoreError",
    "OffsetEntry",
    "User",
]

SCHEMA_VERSION = 1
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
# How long to wait for a lock held by another connection (an offline `omnibus check-data`, a backup)
# before failing with "database is locked".
BUSY_TIMEOUT_MS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id            TEXT    NOT NULL,
    topic               TEXT    NOT NULL,
    partition           INTEGER NOT NULL,
    "offset"            INTEGER NOT NULL,
    metadata            TEXT,
    commit_timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash BLOB,
    tags          TEXT NOT NULL
) WITHOUT ROWID;
"""


class MetaStoreError(Exception):
    """A metadata store operation failed (I/O, corruption, schema from a newer version)."""


class OffsetEntry(NamedTuple):
    topic: str
    partition: int
    offset: int
    metadata: str | None
    commit_timestamp_ms: int


class User(NamedTuple):
    name: str
    password_hash: bytes | None
    tags: tuple[str, ...]


class MetaStore:
    """See the module docstring. ``MetaStore(path)`` opens or creates the database. Blocks;
    thread-safe."""

    def __init__(self, path: str | os.PathLike, *, synchronous: str = "FULL") -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise MetaStoreError(f"cannot open {self.path}: {e}") from e
        try:
            db = self._db
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise MetaStoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MetaStoreError(f"{self.path}: schema version {version} is newer than "
                                     f"this build's {SCHEMA_VERSION}")
            with self.transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            self._db.close()
            raise MetaStoreError(f"{self.path}: {e}") from e
        except MetaStoreError:
            self._db.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close. Idempotent."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # still closing; the WAL is replayed on the next open
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "MetaStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit: everything inside commits together or not at all. Nested blocks join
        the outermost one."""
        with self._lock:
            db = self._conn()
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise MetaStoreError(f"{self.path}: {e}") from e
            self._depth = 1
            try:
                yield
            except BaseException as e:
                self._depth = 0
                db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise MetaStoreError(f"{self.path}: {e}") from e
                raise
            self._depth = 0
            try:
                db.execute("COMMIT")
            except sqlite3.Error as e:
                db.execute("ROLLBACK")
                raise MetaStoreError(f"{self.path}: commit failed: {e}") from e

    def check(self) -> list[str]:
        """SQLite ``quick_check``: an empty list when the file is sound, else the problems."""
        rows = self._query("PRAGMA quick_check")
        problems = [r[0] for r in rows]
        return [] if problems == ["ok"] else problems

    # -- key/value (topology) ------------------------------------------------------------------

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Insert or replace ``value`` (opaque bytes, usually JSON) under (namespace, key)."""
        self._exec("INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
                  (namespace, key, bytes(value)))

    def get(self, namespace: str, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        return bytes(rows[0][0]) if rows else None

    def delete(self, namespace: str, key: str) -> bool:
        """Remove one key; False if it was not there."""
        return self._exec("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)) > 0

    def items(self, namespace: str) -> list[tuple[str, bytes]]:
        """Every (key, value) of a namespace, ordered by key."""
        rows = self._query("SELECT key, value FROM kv WHERE namespace = ? ORDER BY key",
                           (namespace,))
        return [(k, bytes(v)) for k, v in rows]

    def clear(self, namespace: str) -> int:
        """Remove a whole namespace; returns how many keys went."""
        return self._exec("DELETE FROM kv WHERE namespace = ?", (namespace,))

    def namespaces(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT namespace FROM kv ORDER BY namespace")]

    # -- consumer-group offsets (Kafka) --------------------------------------------------------

    def commit_offsets(self, group: str,
                       offsets: Iterable[tuple[str, int, int, str | None]],
                       *, commit_timestamp_ms: int = -1) -> None:
        """OffsetCommit: store (topic, partition, offset, metadata) rows for ``group`` atomically."""
        rows = [(group, t, p, o, m, commit_timestamp_ms) for t, p, o, m in offsets]
        with self.transaction():
            self._conn().executemany(
                'INSERT OR REPLACE INTO group_offsets (group_id, topic, partition, "offset", '
                "metadata, commit_timestamp_ms) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def fetch_offsets(self, group: str, topic: str | None = None) -> list[OffsetEntry]:
        """OffsetFetch: the committed offsets of ``group`` (of one topic if given), ordered by
        topic then partition. Partitions never committed are simply absent."""
        if topic is None:
            rows = self._query('SELECT topic, partition, "offset", metadata, commit_timestamp_ms '
                            "FROM group_offsets WHERE group_id = ? ORDER BY topic, partition",
                            (group,))
        else:
            rows = self._query('SELECT topic, partition, "offset", metadata, commit_timestamp_ms '
                            "FROM group_offsets WHERE group_id = ? AND topic = ? "
                            "ORDER BY partition", (group, topic))
        return [OffsetEntry(*row) for row in rows]

    def delete_offsets(self, group: str, topic: str | None = None,
                       partitions: Iterable[int] | None = None) -> int:
        """OffsetDelete / DeleteGroups: remove a group's offsets (all, one topic, or some of its
        partitions). Returns how many rows went."""
        if topic is None:
            return self._exec("DELETE FROM group_offsets WHERE group_id = ?", (group,))
        if partitions is None:
            return self._exec("DELETE FROM group_offsets WHERE group_id = ? AND topic = ?",
                              (group, topic))
        with self.transaction():
            n = 0
            for p in partitions:
                n += self._exec(
                    "DELETE FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                    (group, topic, p))
            return n

    def delete_topic_offsets(self, topic: str) -> int:
        """A topic was deleted: forget every group's offsets for it."""
        return self._exec("DELETE FROM group_offsets WHERE topic = ?", (topic,))

    def groups(self) -> list[str]:
        """Groups with committed offsets."""
        return [r[0] for r in self._query(
            "SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id")]

    # -- users ---------------------------------------------------------------------------------

    def put_user(self, name: str, password_hash: bytes | None, tags: Iterable[str] = ()) -> None:
        """Create or replace a user. ``password_hash`` is whatever the auth layer stores (never a
        plain password); None = no password login."""
        self._exec("INSERT OR REPLACE INTO users (name, password_hash, tags) VALUES (?, ?, ?)",
                  (name, password_hash, json.dumps(list(tags))))

    def get_user(self, name: str) -> User | None:
        rows = self._query("SELECT name, password_hash, tags FROM users WHERE name = ?", (name,))
        return self._user(rows[0]) if rows else None

    def delete_user(self, name: str) -> bool:
        return self._exec("DELETE FROM users WHERE name = ?", (name,)) > 0

    def users(self) -> list[User]:
        return [self._user(r) for r in self._query(
            "SELECT name, password_hash, tags FROM users ORDER BY name")]

    @staticmethod
    def _user(row) -> User:
        name, ph, tags = row
        return User(name, bytes(ph) if ph is not None else None, tuple(json.loads(tags)))

    # -- internals -----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise MetaStoreError(f"{self.path}: closed")
        return self._db

    def _exec(self, sql: str, params: tuple = ()) -> int:
        """Run one statement in its own transaction (or the open one); returns the row count."""
        with self._lock:
            try:
                return self._conn().execute(sql, params).rowcount
            except sqlite3.Error as e:
                raise MetaStoreError(f"{self.path}: {e}") from e

    def _query(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise MetaStoreError(f"{self.path}: {e}") from e

    def __repr__(self) -> str:
        return f"MetaStore({self.path!r})"
