"""Shared test helpers: run ``omnibus serve`` as a real process and talk HTTP to it."""

from __future__ import annotations

import os
import re
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

LISTEN_RE = re.compile(r"^omnibus: (\w+) listening on (\S+):(\d+)$")
#: Generous: a cold start imports everything; the < 0.5 s goal is measured in bench/, not asserted here.
START_TIMEOUT = 15.0


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    listeners: dict[str, tuple[str, int]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    stdout: "queue.Queue[str] | None" = None  # the rest of stdout, line by line

    def rest_of_stdout(self) -> str:
        """What the process printed after its ready line (call once it has exited)."""
        out = []
        while self.stdout is not None:
            try:
                out.append(self.stdout.get(timeout=2))
            except queue.Empty:
                break
        return "".join(out)

    def url(self, path: str) -> str:
        host, port = self.listeners["http"]
        return f"http://{host}:{port}{path}"

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "omnibus", "serve", *args]


def start_serve(data_dir, *args: str, env: dict | None = None) -> ServeProcess:
    """Start ``omnibus serve`` on free ports and wait for its ready line."""
    cmd = serve_command("--data-dir", str(data_dir), "--kafka-port", "0", "--amqp-port", "0",
                        "--nats-port", "0", "--http-port", "0", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    sp = ServeProcess(proc)
    lines: queue.Queue = queue.Queue()
    # A thread reads stdout: select() on a buffered pipe misses lines already in Python's buffer.
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] and None, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left).rstrip("\n")
        except queue.Empty:
            break
        sp.lines.append(line)
        m = LISTEN_RE.match(line)
        if m:
            sp.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
        if line.startswith("omnibus: ready"):
            sp.stdout = lines
            return sp
    proc.kill()
    proc.wait()
    err = proc.stderr.read()
    raise AssertionError(f"omnibus serve did not become ready: {sp.lines} {err!r}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
