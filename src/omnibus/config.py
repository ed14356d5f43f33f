"""One validated settings tree for the whole broker.

Sources, each overriding the one before: defaults → TOML file (``--config``) → ``OMNIBUS_*`` environment
variables → command-line flags (or keyword arguments of the embedded :class:`omnibus.Broker`).

Names: top-level settings are plain (``data_dir``, ``kafka_port``; env ``OMNIBUS_DATA_DIR``); settings in a
section are ``section.name`` in TOML (``[storage] fsync = "always"``) and ``OMNIBUS_SECTION__NAME`` in the
environment (``OMNIBUS_STORAGE__FSYNC=always``) — a double underscore separates the section, as
pydantic-settings does, because names themselves contain single underscores.

Rules: every value is checked here, once; an invalid one raises :class:`ConfigError` whose message is one
line naming the setting, the bad value and where it came from. Nothing outside this module parses env vars.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import orjson

__all__ = ["ConfigError", "Settings", "StorageSettings", "LimitSettings", "NatsSettings", "load_settings", "PROTOCOLS"]

ENV_PREFIX = "OMNIBUS_"
#: The protocols with a listener, in the order their lines are printed.
PROTOCOLS = ("kafka", "amqp", "nats", "http")
FSYNC_POLICIES = ("always", "interval", "never")


class ConfigError(ValueError):
    """A setting is invalid. The message is one line meant for a human."""


@dataclass(frozen=True)
class StorageSettings:
    #: always: confirm after fsync (group commit); interval: fsync every fsync_interval_ms and confirm
    #: after it; never: confirm after write(2), leave flushing to the OS (as Kafka and nats-server do).
    fsync: str = "interval"
    #: 5 ms: an fsync here takes ~0.5 ms, so 200 group commits/s cost ~10% of one disk; a sequential
    #: producer waits at most one interval for its confirm.
    fsync_interval_ms: int = 5
    segment_bytes: int = 1 << 30  # Kafka log.segment.bytes
    segment_ms: int = 7 * 24 * 3600 * 1000  # Kafka log.roll.ms
    index_interval_bytes: int = 4096  # Kafka log.index.interval.bytes
    retention_ms: int = 7 * 24 * 3600 * 1000  # Kafka log.retention.ms (topics; queues keep until acked)
    retention_bytes: int = -1  # Kafka log.retention.bytes
    retention_check_interval_ms: int = 5 * 60 * 1000  # Kafka log.retention.check.interval.ms


@dataclass(frozen=True)
class LimitSettings:
    #: Open client connections across all protocols; nats-server's max_connections is 64K.
    max_connections: int = 10_000
    #: Largest frame/request a client may send (Kafka socket.request.max.bytes is 100 MiB; RabbitMQ's
    #: frame_max is 128 KiB but a message may span frames). Protocol sessions apply their own limits below it.
    max_frame_bytes: int = 100 * 1024 * 1024
    #: NATS max_payload (nats-server default 1 MiB).
    max_payload: int = 1024 * 1024
    #: Pending outbound bytes per connection before it counts as a slow consumer (nats-server: 64 MiB).
    max_pending_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class NatsSettings:
    """The NATS listener, named after nats-server's options."""

    server_name: str = "omnibus"
    #: Single-user auth (nats-server ``authorization { user, password }``); password may be a bcrypt hash.
    user: str = ""
    password: str = ""
    #: Token auth (nats-server ``authorization { token }``); may be a bcrypt hash.
    token: str = ""
    #: Multi-user auth with permissions, as nats-server's ``authorization { users = [...] }``: a list of
    #: ``{user, password, permissions: {publish: {allow: [...], deny: [...]}, subscribe: {...}}}``
    #: (a plain list of subjects for publish/subscribe means allow). In the env: a JSON array.
    users: tuple = ()
    #: nats-server ping_interval default 2m and max_pings_out 2.
    ping_interval_s: float = 120.0
    max_pings_out: int = 2
    #: nats-server AUTH_TIMEOUT: 2 s to send CONNECT when auth is required.
    auth_timeout_s: float = 2.0
    #: nats-server MAX_CONTROL_LINE_SIZE.
    max_control_line: int = 4096

    @property
    def auth_required(self) -> bool:
        return bool(self.user or self.token or self.users)


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka listener, named after Kafka's broker configs (dots become underscores)."""

    #: Kafka auto.create.topics.enable and num.partitions (for auto-created topics).
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    #: Kafka group.initial.rebalance.delay.ms (default 3000); the embedded broker and the pytest fixture
    #: set it to 0.
    group_initial_rebalance_delay_ms: int = 3000
    #: Kafka group.min/max.session.timeout.ms.
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    #: Kafka offsets.retention.minutes is not applied (offsets are kept until the group is deleted).
    #: Kafka transaction.max.timeout.ms.
    transaction_max_timeout_ms: int = 900_000
    #: SASL mechanisms offered when users are configured (SaslHandshake), as sasl.enabled.mechanisms.
    sasl_enabled_mechanisms: tuple = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    #: Users for SASL: a list of ``{user, password}``; empty means no authentication (Kafka's PLAINTEXT).
    users: tuple = ()


@dataclass(frozen=True)
class AmqpSettings:
    """The AMQP listener, named after RabbitMQ's rabbitmq.conf keys (dots become underscores)."""

    #: RabbitMQ default_user/default_pass/default_vhost; the default user may connect only from loopback
    #: (loopback_users) unless ``loopback_users`` is emptied.
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    loopback_users: tuple = ("guest",)
    #: Config-file users: a list of ``{user, password (or password_hash), tags, vhosts?, permissions:
    #: {vhost: [configure, write, read]}}``; created at start (passwords hashed) if missing.
    users: tuple = ()
    #: RabbitMQ heartbeat (seconds, 0 = off), frame_max and channel_max offered in connection.tune.
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    #: RabbitMQ vm_memory_high_watermark (absolute bytes of broker RSS here; 0 = off) and
    #: disk_free_limit.absolute (bytes free on the data dir's filesystem): publishers are blocked
    #: (connection.blocked) while either alarm is on.
    memory_high_watermark_bytes: int = 0
    disk_free_limit_bytes: int = 50_000_000


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./omnibus-data")
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    amqp_port: int = 5672
    nats_port: int = 4222
    http_port: int = 8222
    #: Seconds that a graceful stop may take before connections are dropped.
    shutdown_timeout: float = 5.0
    storage: StorageSettings = field(default_factory=StorageSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)

    def port(self, protocol: str) -> int:
        return getattr(self, f"{protocol}_port")


_SECTIONS = {"storage": StorageSettings, "limits": LimitSettings, "nats": NatsSettings, "kafka": KafkaSettings,
             "amqp": AmqpSettings}


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, default: Any, source: str) -> Any:
    """Convert ``value`` to the type of ``default``; env values arrive as strings."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(default, Path):
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ValueError
            return Path(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is tuple:  # a list of tables in TOML, a JSON array in the environment
            if isinstance(value, str):
                value = orjson.loads(value)
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(value)
    except (TypeError, ValueError, orjson.JSONDecodeError):
        raise ConfigError(f"invalid value {value!r} for {name} (from {source}): expected {kind.__name__}") from None
    return value


def _validate(s: Settings) -> None:
    for proto in PROTOCOLS:
        port = s.port(proto)
        if not 0 <= port <= 65535:
            raise ConfigError(f"invalid {proto}_port {port}: must be 0..65535 (0 picks a free port)")
    if not s.host:
        raise ConfigError("invalid host: empty")
    if s.shutdown_timeout <= 0:
        raise ConfigError(f"invalid shutdown_timeout {s.shutdown_timeout}: must be > 0")
    st = s.storage
    if st.fsync not in FSYNC_POLICIES:
        raise ConfigError(f"invalid storage.fsync {st.fsync!r}: must be one of {', '.join(FSYNC_POLICIES)}")
    for name in ("fsync_interval_ms", "segment_bytes", "segment_ms", "index_interval_bytes",
                 "retention_check_interval_ms"):
        if getattr(st, name) <= 0:
            raise ConfigError(f"invalid storage.{name} {getattr(st, name)}: must be > 0")
    for name in ("retention_ms", "retention_bytes"):
        v = getattr(st, name)
        if v < -1 or v == 0:
            raise ConfigError(f"invalid storage.{name} {v}: must be > 0, or -1 for unlimited")
    n = s.nats
    if n.ping_interval_s <= 0 or n.auth_timeout_s <= 0 or n.max_pings_out <= 0 or n.max_control_line < 64:
        raise ConfigError("invalid nats settings: ping_interval_s, auth_timeout_s and max_pings_out must be > 0, "
                          "max_control_line >= 64")
    for i, u in enumerate(n.users):
        if not isinstance(u, dict) or not isinstance(u.get("user"), str) or not u.get("user"):
            raise ConfigError(f"invalid nats.users[{i}]: each entry needs a non-empty 'user'")
    for f in dataclasses.fields(LimitSettings):
        if getattr(s.limits, f.name) <= 0:
            raise ConfigError(f"invalid limits.{f.name} {getattr(s.limits, f.name)}: must be > 0")


def _apply(values: dict[str, Any], sections: dict[str, dict[str, Any]], items: Mapping[str, Any],
           source: str) -> None:
    """Merge flat ``section.name``/``name`` items into ``values``/``sections``, checking names and types."""
    top = _fields(Settings)
    for key, raw in items.items():
        if "." in key:
            sec, _, name = key.partition(".")
            cls = _SECTIONS.get(sec)
            if cls is None or name not in _fields(cls):
                raise ConfigError(f"unknown setting {key!r} (from {source})")
            default = getattr(cls(), name)
            sections.setdefault(sec, {})[name] = _coerce(key, raw, default, source)
        else:
            if key not in top or key in _SECTIONS:
                raise ConfigError(f"unknown setting {key!r} (from {source})")
            default = getattr(Settings(), key)
            values[key] = _coerce(key, raw, default, source)


def _flatten_toml(doc: Mapping[str, Any], path: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if key not in _SECTIONS:
                raise ConfigError(f"unknown section [{key}] in {path}")
            for sub, v in value.items():
                if isinstance(v, dict):
                    raise ConfigError(f"unknown section [{key}.{sub}] in {path}")
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: {e}") from None
    return _flatten_toml(doc, str(path))


def _env_items(environ: Mapping[str, str]) -> dict[str, str]:
    items = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower().replace("__", ".")
        items[name] = value
    return items


def load_settings(config_file: str | os.PathLike | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings: defaults → ``config_file`` (or ``$OMNIBUS_CONFIG``) → env → ``overrides``.

    ``overrides`` uses the same flat names as the env (``"kafka_port"``, ``"storage.fsync"``); ``None``
    values are ignored so that unset CLI flags fall through. Raises :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    if config_file is None:
        config_file = environ.get(ENV_PREFIX + "CONFIG") or None
    if config_file is not None:
        _apply(values, sections, _read_toml(Path(config_file)), str(config_file))
    _apply(values, sections, _env_items(environ), "environment")
    if overrides:
        _apply(values, sections, {k: v for k, v in overrides.items() if v is not None}, "arguments")
    for sec, cls in _SECTIONS.items():
        values[sec] = cls(**sections.get(sec, {}))
    settings = Settings(**values)
    _validate(settings)
    return settings
