"""core/auth.py: RabbitMQ's password hashing, permission regex rules and the store's start-up sync."""

from __future__ import annotations

import base64
import hashlib

import pytest

from omnibus.core.auth import (AccessControl, AuthConfigError, Permissions, check_password, hash_password,
                               is_loopback, refused_text)
from omnibus.storage.meta import MetaStore


def test_hash_is_rabbitmq_sha256_scheme():
    h = hash_password("secret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(h)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04secret").digest()
    assert check_password("secret", h) and not check_password("Secret", h)
    assert hash_password("secret") != hash_password("secret")  # random salt
    assert not check_password("x", None) and not check_password("x", b"") and not check_password("x", b"!!")


def test_hash_from_rabbitmq_definitions_export():
    # rabbitmqctl export_definitions of user guest/guest (rabbit_password_hashing_sha256), RabbitMQ 3.10
    salt = b"\xa1\xb2\xc3\xd4"
    exported = base64.b64encode(salt + hashlib.sha256(salt + b"guest").digest())
    assert check_password("guest", exported)


def test_permission_regexes_are_unanchored_and_empty_means_nothing():
    p = Permissions("^app-", "", ".*")
    assert p.allows("configure", "app-1") and not p.allows("configure", "my-app-1")
    assert not p.allows("write", "anything") and p.allows("write", "")  # '' is '^$'
    assert p.allows("read", "x")
    q = Permissions("q", "q", "q")
    assert q.allows("read", "my-q-1")  # re:run without anchors: a match anywhere


def test_refused_text():
    assert refused_text("queue", "q", "/", "u") == "access to queue 'q' in vhost '/' refused for user 'u'"


@pytest.mark.parametrize("host,ok", [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True),
                                     ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("::ffff:10.0.0.1", False),
                                     ("example.org", False), (None, True)])
def test_loopback(host, ok):
    assert is_loopback(host) is ok


def test_configure_persists_and_syncs(tmp_path):
    meta = MetaStore(tmp_path / "m.sqlite")
    ac = AccessControl(meta)
    ac.configure(default_user="guest", default_pass="guest", default_vhost="/", users=[
        {"user": "app", "password": "pw", "tags": ["monitoring"],
         "permissions": {"/": ["^app", "^app", "^app"], "prod": {"configure": "", "write": ".*", "read": ".*"}}},
        {"user": "ops", "password_hash": hash_password("opspw").decode(), "vhosts": ["ops"]},
    ])
    assert ac.authenticate("guest", "guest") and ac.authenticate("app", "pw") and ac.authenticate("ops", "opspw")
    assert not ac.authenticate("app", "wrong") and not ac.authenticate("nobody", "pw")
    assert ac.vhosts() == ["/", "ops", "prod"]
    assert ac.check_vhost_access("app", "prod") and not ac.check_vhost_access("app", "ops")
    assert not ac.check_vhost_access("ops", "/") and ac.check_vhost_access("guest", "/")
    assert ac.check_resource("app", "/", "configure", "app.q") and not ac.check_resource("app", "/", "read", "q")
    assert not ac.check_resource("app", "prod", "configure", "x") and ac.check_resource("app", "prod", "write", "x")
    stored = meta.get_user("app")
    assert stored is not None and stored.tags == ("monitoring",)
    # RabbitMQ's scheme: base64(4-byte salt + SHA-256(salt + password)), never the password itself. (A
    # substring check for b"pw" fails whenever the random base64 happens to contain it.)
    raw = base64.b64decode(stored.password_hash)
    assert len(raw) == 36 and raw[4:] == hashlib.sha256(raw[:4] + b"pw").digest()
    meta.close()

    # a restart with a changed config: ops removed, app loses "prod", vhosts stay
    meta = MetaStore(tmp_path / "m.sqlite")
    ac = AccessControl(meta)
    assert ac.authenticate("ops", "opspw") and ac.check_vhost_access("app", "prod")  # loaded from the store
    ac.configure(default_user="guest", default_pass="guest", default_vhost="/",
                 users=[{"user": "app", "password": "pw2", "permissions": {"/": [".*", ".*", ".*"]}}])
    assert not ac.authenticate("ops", "opspw") and not ac.authenticate("app", "pw") and ac.authenticate("app", "pw2")
    assert not ac.check_vhost_access("app", "prod") and ac.vhosts() == ["/", "ops", "prod"]
    assert meta.get_user("ops") is None
    meta.close()


def test_unchanged_password_keeps_its_hash(tmp_path):
    meta = MetaStore(tmp_path / "m.sqlite")
    ac = AccessControl(meta)
    ac.configure(default_user="guest", default_pass="guest", default_vhost="/")
    first = meta.get_user("guest").password_hash
    ac.configure(default_user="guest", default_pass="guest", default_vhost="/")
    assert meta.get_user("guest").password_hash == first
    meta.close()


@pytest.mark.parametrize("users,fragment", [
    ([{"password": "x"}], "non-empty 'user'"),
    ([{"user": "a", "permissions": {"/": ["a", "b"]}}], "[configure, write, read]"),
    ([{"user": "a", "permissions": {"/": ["(", ".*", ".*"]}}], "bad regex"),
    ([{"user": "a", "password_hash": "not base64!"}], "password_hash"),
])
def test_bad_user_entries(users, fragment):
    with pytest.raises(AuthConfigError, match=None) as e:
        AccessControl(None).configure(default_user="guest", default_pass="guest", default_vhost="/", users=users)
    assert fragment in str(e.value)
