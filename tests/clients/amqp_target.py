"""The broker behind the AMQP access-control, transaction and stream tests: Omnibus by default, or a real
RabbitMQ 3.10 node with ``OMNIBUS_AMQP_AGAINST=rabbitmq`` (as tests/server/test_amqp_raw.py), set up the
same way, so that every expected code and text is checked against the real server.

``amqp_target_factory(users=[...], **settings)`` starts one and returns an :class:`AmqpTarget`. ``users``
has Omnibus's ``amqp.users`` shape (``{user, password, tags?, vhosts?, permissions: {vhost: [c, w, r]}}``);
for RabbitMQ the same users, vhosts and permissions are made with ``rabbitmqctl``. ``settings`` are Omnibus
settings (``storage__fsync=...``), ``rabbit_conf`` rabbitmq.conf lines for the real node. ``restart()`` keeps
port and data; ``memory_alarm(on)`` / ``disk_alarm(on)`` set and clear the resource alarms (Omnibus: the
node's limits; RabbitMQ: ``rabbitmqctl set_vm_memory_high_watermark`` / ``set_disk_free_limit``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pika
import pytest

from bench._servers import RabbitServer, rabbitmq_server_binary

__all__ = ["AGAINST", "AmqpTarget", "amqp_target_factory"]

AGAINST = os.environ.get("OMNIBUS_AMQP_AGAINST", "omnibus").strip().lower() or "omnibus"
if AGAINST not in ("omnibus", "rabbitmq"):
    raise pytest.UsageError(f"OMNIBUS_AMQP_AGAINST={AGAINST!r}: expected 'omnibus' or 'rabbitmq'")


class AmqpTarget:
    kind = ""
    host = "127.0.0.1"
    port = 0

    def url(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> str:
        return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{quote(vhost, safe='')}"

    def connect(self, user: str = "guest", password: str = "guest", vhost: str = "/",
                **kw: Any) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(self.host, self.port, vhost,
                                                                 pika.PlainCredentials(user, password), **kw))

    @property
    def amqp_url(self) -> str:
        return self.url()

    def start(self) -> "AmqpTarget":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def memory_alarm(self, on: bool) -> None:
        """Set (a watermark of 1 byte) or clear the memory alarm."""
        raise NotImplementedError

    def disk_alarm(self, on: bool) -> None:
        """Set (a free-disk limit no disk meets) or clear the disk alarm."""
        raise NotImplementedError


class OmnibusTarget(AmqpTarget):
    kind = "omnibus"

    def __init__(self, data_dir: Path, users: list, settings: dict) -> None:
        self.data_dir = data_dir
        self.settings = {"amqp.users": list(users), **settings}
        self.broker = None

    def start(self) -> "OmnibusTarget":
        from omnibus import SyncBroker

        self.broker = SyncBroker(self.data_dir, settings={**self.settings, "amqp_port": self.port}).start()
        self.port = self.broker.port("amqp")
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def _node_set(self, name: str, value: int) -> None:
        node = self.broker.server.amqp_node  # exists once an AMQP client connected
        self.broker.call(setattr, node, name, value)

    def memory_alarm(self, on: bool) -> None:
        self._node_set("memory_high_watermark", 1 if on else 0)

    def disk_alarm(self, on: bool) -> None:
        self._node_set("disk_free_limit", 1 << 62 if on else 0)


class RabbitTarget(AmqpTarget):
    kind = "rabbitmq"

    def __init__(self, users: list, conf: dict) -> None:
        if rabbitmq_server_binary() is None:
            pytest.fail("OMNIBUS_AMQP_AGAINST=rabbitmq but rabbitmq-server is not installed "
                        "(apt-get install rabbitmq-server)")
        self.server = RabbitServer(conf=conf)
        self.port = self.server.port
        self.users = users
        self._made = False

    def ctl(self, *args: str) -> None:
        srv = self.server
        cookie = (srv._dir / "home" / ".erlang.cookie").read_text().strip()
        ctl = os.path.join(os.path.dirname(srv.binary), "rabbitmqctl")
        r = subprocess.run([ctl, "--erlang-cookie", cookie, "-n", srv.node, *args], env=srv.env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"rabbitmqctl {args}: {r.stdout[-500:]} {r.stderr[-1000:]}"

    def start(self) -> "RabbitTarget":
        self.server.start()
        if not self._made:  # users, vhosts and permissions persist in the node's data
            self._made = True
            for u in self.users:
                self.ctl("add_user", u["user"], u["password"])
                if u.get("tags"):
                    self.ctl("set_user_tags", u["user"], *u["tags"])
                perms = {v: [".*", ".*", ".*"] for v in u.get("vhosts", ())}
                perms.update(u.get("permissions", {}))
                for vhost, (c, w, r) in perms.items():
                    if vhost != "/":
                        self.ctl("add_vhost", vhost)
                    self.ctl("set_permissions", "-p", vhost, u["user"], c, w, r)
        return self

    def stop(self) -> None:
        self.server.stop()

    def memory_alarm(self, on: bool) -> None:
        if on:
            self.ctl("set_vm_memory_high_watermark", "absolute", "1")
        else:
            self.ctl("set_vm_memory_high_watermark", "0.4")

    def disk_alarm(self, on: bool) -> None:
        self.ctl("set_disk_free_limit", "1000000GB" if on else "50MB")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def amqp_target_factory() -> Iterator[Callable[..., AmqpTarget]]:
    started: list[AmqpTarget] = []
    dirs: list[str] = []

    def start(users: list = (), rabbit_conf: dict | None = None, **settings: Any) -> AmqpTarget:
        if AGAINST == "rabbitmq":
            target: AmqpTarget = RabbitTarget(list(users), rabbit_conf or {})
        else:
            d = tempfile.mkdtemp(prefix="omnibus-amqp-")
            dirs.append(d)
            target = OmnibusTarget(Path(d), list(users), {k.replace("__", "."): v for k, v in settings.items()})
        started.append(target)
        return target.start()

    yield start
    for target in reversed(started):
        target.close()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
