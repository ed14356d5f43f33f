"""MetaStore (SQLite): key/value topology, consumer-group offsets, users, transactions, reopen."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from omnibus.storage.meta import (
    SCHEMA_VERSION,
    MetaStore,
    MetaStoreError,
    OffsetEntry,
    User,
)


def test_kv_round_trip_and_reopen(tmp_path):
    path = tmp_path / "meta.db"
    with MetaStore(path) as m:
        m.put("exchanges", "logs", b'{"type":"fanout"}')
        m.put("exchanges", "audit", b'{"type":"topic"}')
        m.put("queues", "logs", b'{"durable":true}')  # same key, other namespace
        m.put("exchanges", "logs", b'{"type":"direct"}')  # replace
        assert m.get("exchanges", "logs") == b'{"type":"direct"}'
        assert m.get("exchanges", "nope") is None
    with MetaStore(path) as m:
        assert m.items("exchanges") == [("audit", b'{"type":"topic"}'), ("logs", b'{"type":"direct"}')]
        assert m.items("queues") == [("logs", b'{"durable":true}')]
        assert m.namespaces() == ["exchanges", "queues"]
        assert m.delete("exchanges", "audit")
        assert not m.delete("exchanges", "audit")
        assert m.clear("queues") == 1
    with MetaStore(path) as m:
        assert m.items("exchanges") == [("logs", b'{"type":"direct"}')]
        assert m.items("queues") == []
        assert m.check() == []


def test_wal_and_synchronous(tmp_path):
    m = MetaStore(tmp_path / "m.db")
    assert m._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert m._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert m._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    m.close()
    m.close()  # idempotent
    with pytest.raises(MetaStoreError, match="closed"):
        m.get("a", "b")
    n = MetaStore(tmp_path / "n.db", synchronous="NORMAL")
    assert n._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    n.close()
    with pytest.raises(ValueError):
        MetaStore(tmp_path / "o.db", synchronous="OFF")


def test_transaction_commits_together_or_not_at_all(tmp_path):
    path = tmp_path / "m.db"
    m = MetaStore(path)
    with m.transaction():
        m.put("x", "a", b"1")
        with m.transaction():  # nested: joins the outer one
            m.put("x", "b", b"2")
        m.put("x", "c", b"3")
    assert [k for k, _ in m.items("x")] == ["a", "b", "c"]
    with pytest.raises(RuntimeError):
        with m.transaction():
            m.put("x", "d", b"4")
            m.delete("x", "a")
            raise RuntimeError("boom")
    assert [k for k, _ in m.items("x")] == ["a", "b", "c"]
    m.close()
    m = MetaStore(path)
    assert [k for k, _ in m.items("x")] == ["a", "b", "c"]
    m.close()


def test_consumer_group_offsets(tmp_path):
    path = tmp_path / "m.db"
    m = MetaStore(path)
    m.commit_offsets("g1", [("orders", 0, 10, None), ("orders", 1, 20, "meta"), ("pay", 0, 5, "")],
                     commit_timestamp_ms=1000)
    m.commit_offsets("g1", [("orders", 0, 11, "again")], commit_timestamp_ms=2000)
    m.commit_offsets("g2", [("orders", 0, 99, None)])
    m.close()
    m = MetaStore(path)
    assert m.fetch_offsets("g1") == [
        OffsetEntry("orders", 0, 11, "again", 2000),
        OffsetEntry("orders", 1, 20, "meta", 1000),
        OffsetEntry("pay", 0, 5, "", 1000),
    ]
    assert m.fetch_offsets("g1", "pay") == [OffsetEntry("pay", 0, 5, "", 1000)]
    assert m.fetch_offsets("g1", "nope") == []
    assert m.fetch_offsets("nobody") == []
    assert m.groups() == ["g1", "g2"]
    assert m.delete_offsets("g1", "orders", [1, 7]) == 1
    assert [e.partition for e in m.fetch_offsets("g1", "orders")] == [0]
    assert m.delete_topic_offsets("orders") == 2
    assert m.groups() == ["g1"]
    assert m.delete_offsets("g1", "pay") == 1
    assert m.delete_offsets("g1") == 0
    m.close()


def test_commit_offsets_is_atomic(tmp_path):
    m = MetaStore(tmp_path / "m.db")
    m.commit_offsets("g", [("t", 0, 1, None)])
    with pytest.raises(MetaStoreError):
        m.commit_offsets("g", [("t", 0, 2, None), ("t", 1, None, None)])  # NOT NULL offset
    assert m.fetch_offsets("g") == [OffsetEntry("t", 0, 1, None, -1)]
    m.close()


def test_users(tmp_path):
    path = tmp_path / "m.db"
    with MetaStore(path) as m:
        m.put_user("guest", b"\x00hash", ["administrator"])
        m.put_user("svc", None)
    with MetaStore(path) as m:
        assert m.get_user("guest") == User("guest", b"\x00hash", ("administrator",))
        assert m.users() == [User("guest", b"\x00hash", ("administrator",)), User("svc", None, ())]
        m.put_user("svc", b"h2", ("monitoring", "policymaker"))
        assert m.get_user("svc").tags == ("monitoring", "policymaker")
        assert m.delete_user("svc") and not m.delete_user("svc")
        assert m.get_user("svc") is None


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "m.db"
    MetaStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(MetaStoreError, match="newer"):
        MetaStore(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MetaStoreError):
        MetaStore(path)


def test_usable_from_other_threads(tmp_path):
    m = MetaStore(tmp_path / "m.db", synchronous="NORMAL")
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                with m.transaction():
                    m.put("t", f"{i}-{j}", b"x")
                m.commit_offsets(f"g{i}", [("t", j, j, None)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(m.items("t")) == 80
    assert len(m.fetch_offsets("g3")) == 20
    m.close()
