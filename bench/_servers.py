"""Start the brokers that NATS benchmarks and reference tests run against, as child processes on 127.0.0.1.

- :func:`nats_server_binary` finds ``nats-server`` (``$NATS_SERVER``, ``PATH``, ``/usr/sbin``) and, when
  asked, installs Debian's package (``apt-get install nats-server``, 2.9.x) if it is missing.
- :class:`NatsServer` runs one nats-server on a chosen or free port with a generated config file
  (``max_payload``, ``max_pending``, ``ping_interval``/``ping_max``, ``authorization``), and can be
  stopped and started again on the same port.
- :class:`OmnibusServe` runs ``omnibus serve`` on free ports with a temporary (or given) data dir.
- :func:`rabbitmq_server_binary` finds RabbitMQ's own start script (``/usr/lib/rabbitmq/bin/rabbitmq-server``,
  not the Debian wrapper, which switches to the ``rabbitmq`` user and its system-wide data dir) and, when
  asked, installs Debian's ``rabbitmq-server`` (3.10.x) if it is missing. :class:`RabbitServer` runs one
  node bound to 127.0.0.1 on a chosen or free port, with its own mnesia/log/config dirs and cookie in a
  temporary dir and a unique node name, so it never touches a system RabbitMQ.

All expose ``url``, ``port``, ``pid`` and ``rss()`` (resident bytes from ``/proc/<pid>/status``).
Used by ``bench/nats.py`` and, with ``OMNIBUS_TEST_AGAINST=nats-server``, by ``tests/clients/conftest.py``.
Rules: blocking code, no event loop; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["free_port", "wait_port", "rss_of", "nats_server_binary", "NatsServer", "OmnibusServe",
           "nats_server_conf", "rabbitmq_server_binary", "RabbitServer"]

#: Seconds a server may take to accept connections after start.
START_TIMEOUT = 15.0
LISTEN_RE = re.compile(r"^omnibus: (\w+) listening on (\S+):(\d+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.02)


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def nats_server_binary(install: bool = False) -> str | None:
    """Path of nats-server; with ``install``, ``apt-get install -y nats-server`` first if it is missing."""
    found = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if found or not install:
        return found
    print("bench: nats-server not found; installing Debian's package (apt-get install nats-server)",
          file=sys.stderr)
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update", "-qq"], check=False, env=env, timeout=300)
    subprocess.run([*apt, "install", "-y", "-qq", "nats-server"], check=True, env=env, timeout=600)
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)


def nats_server_conf(*, max_payload: int | None = None, max_pending: int | None = None,
                     ping_interval_s: float | None = None, max_pings_out: int | None = None,
                     user: str | None = None, password: str | None = None, token: str | None = None,
                     users: list[dict[str, Any]] | None = None, max_control_line: int | None = None,
                     write_deadline_s: float | None = None, jetstream_dir: str | None = None) -> str:
    """A nats-server config file's text (its format accepts JSON values, so nested blocks are dumped)."""
    lines = []
    if max_payload is not None:
        lines.append(f"max_payload: {int(max_payload)}")
    if max_pending is not None:
        lines.append(f"max_pending: {int(max_pending)}")
    if max_control_line is not None:
        lines.append(f"max_control_line: {int(max_control_line)}")
    if write_deadline_s is not None:
        lines.append(f'write_deadline: "{int(write_deadline_s * 1000)}ms"')
    if ping_interval_s is not None:
        lines.append(f'ping_interval: "{int(ping_interval_s * 1000)}ms"')
    if max_pings_out is not None:
        lines.append(f"ping_max: {int(max_pings_out)}")
    if jetstream_dir is not None:  # JetStream with file storage in this directory
        lines.append(f"jetstream: {json.dumps({'store_dir': jetstream_dir})}")
    auth: dict[str, Any] = {}
    if user:
        auth["user"] = user
        auth["password"] = password or ""
    if token:
        auth["token"] = token
    if users:
        auth["users"] = users
    if auth:
        lines.append(f"authorization: {json.dumps(auth)}")
    return "\n".join(lines) + "\n"



def stop_process(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode

class NatsServer:
    """A nats-server child process on 127.0.0.1. ``NatsServer(**conf).start()``; ``stop()``; ``start()``
    again reuses the same port (for reconnect tests)."""

    def __init__(self, port: int | None = None, *, binary: str | None = None, install: bool = False,
                 **conf: Any) -> None:
        self.binary = binary or nats_server_binary(install=install)
        if self.binary is None:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="nats-server-")
        if conf.pop("jetstream", False):  # JetStream, file storage inside this server's temp dir
            conf["jetstream_dir"] = str(Path(self._dir) / "jetstream")
        self.conf_text = nats_server_conf(**conf)
        self.conf_path = Path(self._dir) / "nats.conf"
        self.conf_path.write_text(self.conf_text)
        self.log_path = Path(self._dir) / "nats.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return rss_of(self.pid)

    def start(self) -> "NatsServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path), "-a", "127.0.0.1",
                                      "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise RuntimeError(f"nats-server did not start: {self.log_path.read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class OmnibusServe:
    """``omnibus serve`` as a child process on free ports (NATS on ``nats_port`` or a free one)."""

    def __init__(self, data_dir: str | os.PathLike | None = None, *, nats_port: int = 0,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self._tmp = None if data_dir is not None else tempfile.mkdtemp(prefix="omnibus-bench-")
        self.data_dir = Path(data_dir if data_dir is not None else self._tmp)
        self.nats_port = nats_port
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.listeners: dict[str, tuple[str, int]] = {}
        self.lines: list[str] = []

    @property
    def port(self) -> int:
        if "nats" not in self.listeners:
            raise RuntimeError(f"omnibus serve has no NATS listener (it printed: {self.lines})")
        return self.listeners["nats"][1]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return rss_of(self.pid)

    def start(self) -> "OmnibusServe":
        cmd = [sys.executable, "-m", "omnibus", "serve", "--data-dir", str(self.data_dir),
               "--kafka-port", "0", "--amqp-port", "0", "--nats-port", str(self.nats_port),
               "--http-port", "0", *self.args]
        # stderr goes to a file: a pipe nobody reads could fill up and block the broker.
        self.stderr_path = Path(tempfile.mkstemp(prefix="omnibus-serve-", suffix=".stderr")[1])
        with open(self.stderr_path, "wb") as err_file:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **(self.env or {})})
        # A thread reads stdout: select() on a buffered pipe misses lines already in Python's buffer.
        lines: queue.Queue = queue.Queue()
        self._stdout = lines
        proc = self.proc
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] and None, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left).rstrip("\n")
            except queue.Empty:
                break
            self.lines.append(line)
            m = LISTEN_RE.match(line)
            if m:
                self.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
            if line.startswith("omnibus: ready"):
                return self
        self.stop()
        err = self.stderr_path.read_text()[-2000:]
        raise RuntimeError(f"omnibus serve did not become ready: {self.lines} {err!r}")

    @property
    def amqp_port(self) -> int:
        return self.listeners["amqp"][1]

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def url_for(self, proto: str, path: str = "") -> str:
        host, port = self.listeners[proto]
        scheme = {"http": "http", "nats": "nats", "amqp": "amqp"}.get(proto, "tcp")
        return f"{scheme}://{host}:{port}{path}"

    def rest_of_stdout(self) -> str:
        """What the process printed after its ready line (call once it has exited)."""
        out = []
        while True:
            try:
                out.append(self._stdout.get(timeout=2))
            except queue.Empty:
                return "".join(out)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` (then SIGKILL); returns the exit code (None if not started)."""
        if self.proc is None:
            return None
        self.returncode = stop_process(self.proc, timeout)
        self.proc = None
        return self.returncode

    def close(self) -> None:
        self.stop()
        if getattr(self, "stderr_path", None) is not None:
            self.stderr_path.unlink(missing_ok=True)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "OmnibusServe":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


#: RabbitMQ's start script without the Debian wrapper (which runs it as user ``rabbitmq`` in /var/lib).
RABBITMQ_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
#: A RabbitMQ node boots in 3-10 s on this machine; give it more before calling it broken.
RABBITMQ_START_TIMEOUT = 60.0


def rabbitmq_server_binary(install: bool = False) -> str | None:
    """Path of RabbitMQ's start script; with ``install``, ``apt-get install -y rabbitmq-server`` first if
    it is missing (Debian 12: 3.10.8)."""
    found = os.environ.get("RABBITMQ_SERVER") or (RABBITMQ_SCRIPT if os.path.exists(RABBITMQ_SCRIPT) else None)
    if found or not install:
        return found
    print("bench: rabbitmq-server not found; installing Debian's package (apt-get install rabbitmq-server)",
          file=sys.stderr)
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update", "-qq"], check=False, env=env, timeout=300)
    subprocess.run([*apt, "install", "-y", "-qq", "rabbitmq-server"], check=True, env=env, timeout=900)
    # Debian's package starts a system node; we run our own, so stop that one again (best effort).
    subprocess.run(["sh", "-c", "command -v systemctl >/dev/null && systemctl stop rabbitmq-server || "
                    "service rabbitmq-server stop"], check=False, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return RABBITMQ_SCRIPT if os.path.exists(RABBITMQ_SCRIPT) else None


class RabbitServer:
    """A RabbitMQ node as a child process, AMQP on 127.0.0.1:``port`` (free by default), no plugins.

    Everything it writes (mnesia, logs, config, Erlang cookie via ``HOME``) is under one temporary dir;
    the node name is unique (``omnibus-<pid>-<n>@localhost``); the Erlang distribution listens on
    loopback only, on a free port. ``stop()`` then ``start()`` restarts it on the same port and data.
    ``conf`` lines are added to rabbitmq.conf (e.g. ``{"frame_max": 131072}``)."""

    _count = 0

    def __init__(self, port: int | None = None, *, binary: str | None = None, install: bool = False,
                 conf: dict[str, Any] | None = None) -> None:
        self.binary = binary or rabbitmq_server_binary(install=install)
        if self.binary is None:
            raise FileNotFoundError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        RabbitServer._count += 1
        self.port = port or free_port()
        self.dist_port = free_port()
        self.node = f"omnibus-{os.getpid()}-{RabbitServer._count}@localhost"
        self._dir = Path(tempfile.mkdtemp(prefix="rabbitmq-"))
        lines = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "log.console = false", "log.file.level = warning"]
        lines += [f"{k} = {v}" for k, v in (conf or {}).items()]
        (self._dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self._dir / "advanced.config").write_text(
            "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n")
        (self._dir / "enabled_plugins").write_text("[].\n")
        (self._dir / "home").mkdir()
        self.log_path = self._dir / "console.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    amqp_url = url

    @property
    def amqp_port(self) -> int:
        return self.port

    @property
    def pid(self) -> int:
        """The Erlang VM's pid (the start script's child), for ``rss()``."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        return kids[0] if kids else self.proc.pid

    def rss(self) -> int:
        return rss_of(self.pid)

    def env(self) -> dict[str, str]:
        d = self._dir
        return {**os.environ, "HOME": str(d / "home"), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "rabbit.pid"), "RABBITMQ_CONF_ENV_FILE": str(d / "none.env"),
                "RABBITMQ_ALLOW_INPUT": ""}

    def start(self) -> "RabbitServer":
        log = open(self.log_path, "ab")
        # own process group, so stop() can end the start script and the VM it runs (and nothing else)
        self.proc = subprocess.Popen([self.binary], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env(), start_new_session=True,
                                     cwd=self._dir)
        log.close()
        try:
            wait_port(self.port, timeout=RABBITMQ_START_TIMEOUT, proc=self.proc)
        except BaseException:
            self.stop()
            raise RuntimeError(f"rabbitmq-server did not start: {self.log_path.read_text()[-3000:]}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)  # the script traps TERM and stops the node cleanly
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, 9)  # whatever of our group is left (the VM, epmd started by it is not ours)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "RabbitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
