"""Start the brokers that NATS benchmarks and reference tests run against, as child processes on 127.0.0.1.

- :func:`nats_server_binary` finds ``nats-server`` (``$NATS_SERVER``, ``PATH``, ``/usr/sbin``) and, when
  asked, installs Debian's package (``apt-get install nats-server``, 2.9.x) if it is missing.
- :class:`NatsServer` runs one nats-server on a chosen or free port with a generated config file
  (``max_payload``, ``max_pending``, ``ping_interval``/``ping_max``, ``authorization``), and can be
  stopped and started again on the same port.
- :class:`OmnibusServe` runs ``omnibus serve`` on free ports with a temporary (or given) data dir.

Both expose ``url``, ``port``, ``pid`` and ``rss()`` (resident bytes from ``/proc/<pid>/status``).
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
           "nats_server_conf"]

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
                     write_deadline_s: float | None = None) -> str:
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


class NatsServer:
    """A nats-server child process on 127.0.0.1. ``NatsServer(**conf).start()``; ``stop()``; ``start()``
    again reuses the same port (for reconnect tests)."""

    def __init__(self, port: int | None = None, *, binary: str | None = None, install: bool = False,
                 **conf: Any) -> None:
        self.binary = binary or nats_server_binary(install=install)
        if self.binary is None:
            raise FileNotFoundError("nats-server is not installed (apt-get install nats-server)")
        self.port = port or free_port()
        self.conf_text = nats_server_conf(**conf)
        self._dir = tempfile.mkdtemp(prefix="nats-server-")
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
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
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
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        self.returncode = proc.returncode
        return proc.returncode

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
