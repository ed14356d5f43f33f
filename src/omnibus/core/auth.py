"""Access control for the broker's virtual hosts, as RabbitMQ's internal auth backend does it: users with
hashed passwords, virtual hosts, and per (user, vhost) configure/write/read permission regexes.

Strategy
    * Passwords are stored as RabbitMQ's ``rabbit_password_hashing_sha256`` does: 4 random salt bytes, then
      SHA-256(salt + UTF-8 password), the 36 bytes kept base64-encoded (the form RabbitMQ's definitions
      export uses, so a ``password_hash`` copied from ``rabbitmqctl export_definitions`` works here). A
      check recomputes the digest and compares in constant time.
    * Users live in the metadata store's ``users`` table; virtual hosts in namespace ``auth/vhosts``;
      permissions in ``auth/permissions`` keyed by the JSON pair ``[user, vhost]``.
    * :meth:`AccessControl.configure` makes the store match the settings at start: the default user (full
      permissions on the default vhost, as RabbitMQ's first boot creates ``guest``), then every configured
      user; users no longer configured are removed (the settings are the only way to manage users), vhosts
      are kept (their queues hold data) and reopened at every start.
    * A permission check is ``re.search`` of the regex in the resource name (RabbitMQ: ``re:run`` without
      anchors), with RabbitMQ's rule that an empty regex means ``^$`` (nothing but the empty name). The
      results are cached per :class:`Permissions` (names repeat; a regex per publish would be waste).

Rules
    * No protocol here: callers map a refusal to their reply codes and texts; :func:`resource_text` gives
      RabbitMQ's ``rabbit_misc:rs`` wording of a resource, and :func:`refused_text` the whole sentence of
      rabbit_access_control.
    * Event-loop thread only (the store is SQLite on the loop thread); hashing costs microseconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from omnibus.storage.meta import MetaStore

__all__ = ["AccessControl", "Permissions", "AuthConfigError", "hash_password", "check_password",
           "is_loopback", "resource_text", "refused_text", "CONFIGURE", "WRITE", "READ", "FULL_ACCESS"]

CONFIGURE, WRITE, READ = "configure", "write", "read"
#: The regexes RabbitMQ's default user gets on the default vhost.
FULL_ACCESS = (".*", ".*", ".*")
#: rabbit_password_hashing_sha256 / rabbit_password: a 32-bit salt.
SALT_BYTES = 4
NS_VHOSTS = "auth/vhosts"
NS_PERMISSIONS = "auth/permissions"
#: Bound on each Permissions' cache of (kind, name) answers; cleared when full.
PERMISSION_CACHE_MAX = 4096


class AuthConfigError(ValueError):
    """A configured user is malformed; the message is one line for a human."""


def hash_password(password: str, salt: bytes | None = None) -> bytes:
    """RabbitMQ's SHA-256 scheme: base64(salt + sha256(salt + password))."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest())


def check_password(password: str, stored: bytes | None) -> bool:
    """True when ``password`` matches ``stored`` (as made by :func:`hash_password`). A user without a
    password hash (None or empty) cannot log in with a password, as in RabbitMQ."""
    if not stored:
        return False
    try:
        raw = base64.b64decode(stored, validate=True)
    except (ValueError, TypeError):
        return False
    if len(raw) <= SALT_BYTES:
        return False
    salt, digest = raw[:SALT_BYTES], raw[SALT_BYTES:]
    return hmac.compare_digest(digest, hashlib.sha256(salt + password.encode("utf-8")).digest())


def is_loopback(host: str | None) -> bool:
    """rabbit_net is_loopback: 127.0.0.0/8, ::1 and IPv4-mapped loopback. Unix sockets count as local."""
    if not host:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def resource_text(kind: str, name: str, vhost: str) -> str:
    """rabbit_misc:rs/1: "queue 'q' in vhost '/'"."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def refused_text(kind: str, name: str, vhost: str, user: str) -> str:
    """rabbit_access_control check_resource_access: the explanation of an ACCESS_REFUSED."""
    return f"access to {resource_text(kind, name, vhost)} refused for user '{user}'"


def _compile(regex: str) -> re.Pattern:
    return re.compile(regex if regex else "^$")  # rabbit_auth_backend_internal: <<"">> means ^$


class Permissions:
    """One user's configure/write/read regexes on one vhost, with a bounded answer cache."""

    __slots__ = ("configure", "write", "read", "_res", "_cache")

    def __init__(self, configure: str, write: str, read: str) -> None:
        self.configure, self.write, self.read = configure, write, read
        self._res = {CONFIGURE: _compile(configure), WRITE: _compile(write), READ: _compile(read)}
        self._cache: dict[tuple[str, str], bool] = {}

    def allows(self, permission: str, name: str) -> bool:
        """Does the ``permission`` regex (configure, write or read) match resource ``name``?"""
        key = (permission, name)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= PERMISSION_CACHE_MAX:
                self._cache.clear()
            hit = self._cache[key] = self._res[permission].search(name) is not None
        return hit

    def as_tuple(self) -> tuple[str, str, str]:
        return self.configure, self.write, self.read

    def __repr__(self) -> str:
        return f"Permissions({self.configure!r}, {self.write!r}, {self.read!r})"


@dataclass(frozen=True)
class UserSpec:
    """A configured user, validated."""

    name: str
    password_hash: bytes | None
    password: str | None
    tags: tuple[str, ...]
    permissions: dict[str, tuple[str, str, str]]


def _parse_user(i: int, raw: Mapping[str, Any]) -> UserSpec:
    where = f"amqp.users[{i}]"
    if not isinstance(raw, Mapping):
        raise AuthConfigError(f"invalid {where}: expected a table with 'user' and 'password'")
    name = raw.get("user", raw.get("name"))
    if not isinstance(name, str) or not name:
        raise AuthConfigError(f"invalid {where}: each entry needs a non-empty 'user'")
    password, password_hash = raw.get("password"), raw.get("password_hash")
    if password is not None and not isinstance(password, str):
        raise AuthConfigError(f"invalid {where}.password: expected a string")
    if password_hash is not None:
        if not isinstance(password_hash, str):
            raise AuthConfigError(f"invalid {where}.password_hash: expected a string")
        try:
            if len(base64.b64decode(password_hash, validate=True)) <= SALT_BYTES:
                raise ValueError
        except ValueError:
            raise AuthConfigError(f"invalid {where}.password_hash: expected RabbitMQ's base64 "
                                  "rabbit_password_hashing_sha256 form") from None
    tags = raw.get("tags", ())
    if isinstance(tags, str):
        tags = tuple(t.strip() for t in tags.split(",") if t.strip())
    perms: dict[str, tuple[str, str, str]] = {}
    for vhost in raw.get("vhosts", ()) or ():  # shorthand: full access to each named vhost
        perms[str(vhost)] = FULL_ACCESS
    for vhost, p in (raw.get("permissions") or {}).items():
        if isinstance(p, Mapping):
            p = (p.get(CONFIGURE, ""), p.get(WRITE, ""), p.get(READ, ""))
        if not (isinstance(p, (list, tuple)) and len(p) == 3 and all(isinstance(x, str) for x in p)):
            raise AuthConfigError(f"invalid {where}.permissions[{vhost!r}]: expected [configure, write, read] "
                                  "regexes")
        for x in p:
            try:
                re.compile(x)
            except re.error as e:
                raise AuthConfigError(f"invalid {where}.permissions[{vhost!r}]: bad regex {x!r}: {e}") from None
        perms[str(vhost)] = (p[0], p[1], p[2])
    return UserSpec(name, password_hash.encode() if password_hash else None, password,
                    tuple(str(t) for t in tags), perms)


class AccessControl:
    """Users, vhosts and permissions over a :class:`MetaStore` (or in memory when ``meta`` is None)."""

    def __init__(self, meta: MetaStore | None) -> None:
        self.meta = meta
        self._users: dict[str, tuple[bytes | None, tuple[str, ...]]] = {}
        self._vhosts: set[str] = set()
        self._perms: dict[tuple[str, str], Permissions] = {}
        if meta is not None:
            for u in meta.users():
                self._users[u.name] = (u.password_hash, tuple(u.tags))
            for name, _ in meta.items(NS_VHOSTS):
                self._vhosts.add(name)
            for key, raw in meta.items(NS_PERMISSIONS):
                user, vhost = orjson.loads(key)
                p = orjson.loads(raw)
                self._perms[(user, vhost)] = Permissions(p[CONFIGURE], p[WRITE], p[READ])

    # -- start-up from settings ------------------------------------------------------------------
    def configure(self, *, default_user: str, default_pass: str, default_vhost: str,
                  users: Iterable[Mapping[str, Any]] = ()) -> None:
        """Make users and permissions match the settings (see the module docstring). Raises
        AuthConfigError for a malformed user entry, before changing anything."""
        specs = [_parse_user(i, raw) for i, raw in enumerate(users)]
        self.add_vhost(default_vhost)
        wanted: set[str] = set()
        if default_user:
            self.put_user(default_user, default_pass, tags=("administrator",))
            self.set_permissions(default_user, default_vhost, *FULL_ACCESS)
            wanted.add(default_user)
        for spec in specs:
            if spec.password_hash is not None:
                self.put_user_hash(spec.name, spec.password_hash, spec.tags)
            else:
                self.put_user(spec.name, spec.password, tags=spec.tags)
            for (user, vhost) in [k for k in self._perms if k[0] == spec.name]:
                if vhost not in spec.permissions:
                    self.clear_permissions(user, vhost)
            for vhost, (c, w, r) in spec.permissions.items():
                self.add_vhost(vhost)
                self.set_permissions(spec.name, vhost, c, w, r)
            wanted.add(spec.name)
        for name in list(self._users):
            if name not in wanted:
                self.delete_user(name)

    # -- users -----------------------------------------------------------------------------------
    def put_user(self, name: str, password: str | None, tags: Iterable[str] = ()) -> None:
        """Create or update a user; the password is hashed (kept as is when it already matches)."""
        current = self._users.get(name)
        if password is None:
            password_hash = None
        elif current is not None and check_password(password, current[0]):
            password_hash = current[0]
        else:
            password_hash = hash_password(password)
        self.put_user_hash(name, password_hash, tags)

    def put_user_hash(self, name: str, password_hash: bytes | None, tags: Iterable[str] = ()) -> None:
        tags = tuple(tags)
        if self._users.get(name) == (password_hash, tags):
            return
        self._users[name] = (password_hash, tags)
        if self.meta is not None:
            self.meta.put_user(name, password_hash, tags)

    def delete_user(self, name: str) -> bool:
        if self._users.pop(name, None) is None:
            return False
        for key in [k for k in self._perms if k[0] == name]:
            self.clear_permissions(*key)
        if self.meta is not None:
            self.meta.delete_user(name)
        return True

    def users(self) -> list[str]:
        return sorted(self._users)

    def tags(self, name: str) -> tuple[str, ...]:
        u = self._users.get(name)
        return u[1] if u else ()

    def authenticate(self, name: str, password: str) -> bool:
        """rabbit_auth_backend_internal user_login_authentication: a known user with that password."""
        u = self._users.get(name)
        return u is not None and check_password(password, u[0])

    # -- vhosts ----------------------------------------------------------------------------------
    def add_vhost(self, name: str) -> bool:
        if name in self._vhosts:
            return False
        self._vhosts.add(name)
        if self.meta is not None:
            self.meta.put(NS_VHOSTS, name, b"{}")
        return True

    def vhost_exists(self, name: str) -> bool:
        return name in self._vhosts

    def vhosts(self) -> list[str]:
        return sorted(self._vhosts)

    # -- permissions -----------------------------------------------------------------------------
    def set_permissions(self, user: str, vhost: str, configure: str, write: str, read: str) -> None:
        """rabbitmqctl set_permissions -p vhost user configure write read."""
        key = (user, vhost)
        old = self._perms.get(key)
        if old is not None and old.as_tuple() == (configure, write, read):
            return
        self._perms[key] = Permissions(configure, write, read)
        if self.meta is not None:
            self.meta.put(NS_PERMISSIONS, orjson.dumps([user, vhost]).decode(),
                          orjson.dumps({CONFIGURE: configure, WRITE: write, READ: read}))

    def clear_permissions(self, user: str, vhost: str) -> None:
        if self._perms.pop((user, vhost), None) is not None and self.meta is not None:
            self.meta.delete(NS_PERMISSIONS, orjson.dumps([user, vhost]).decode())

    def permissions(self, user: str, vhost: str) -> Permissions | None:
        """The user's permissions on ``vhost``; None means no access to the vhost at all."""
        return self._perms.get((user, vhost))

    def check_vhost_access(self, user: str, vhost: str) -> bool:
        """rabbit_auth_backend_internal check_vhost_access: any permission entry grants the vhost."""
        return vhost in self._vhosts and (user, vhost) in self._perms

    def check_resource(self, user: str, vhost: str, permission: str, name: str) -> bool:
        p = self._perms.get((user, vhost))
        return p is not None and p.allows(permission, name)
