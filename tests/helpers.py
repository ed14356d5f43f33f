"""Shared test helpers: run ``omnibus serve`` as a real process and talk HTTP to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench._servers import OmnibusServe


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "omnibus", "serve", *args]


def start_serve(data_dir, *args: str, env: dict | None = None) -> OmnibusServe:
    """Start ``omnibus serve`` on free ports and wait for its ready line (bench/_servers.OmnibusServe)."""
    return OmnibusServe(data_dir, args=args, env=env).start()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


JS_DIR = Path(__file__).parent / "clients" / "js"
#: Each node script has its own deadline (15-20 s); this is the backstop for node itself.
NODE_SCRIPT_TIMEOUT = 45


def run_node_script(name: str, url: str, package: str) -> dict:
    """Run ``tests/clients/js/<name> <url>`` with node and return the JSON of its last line. ``package`` is
    the npm package the script needs (installed by ./scripts/test with `npm ci`)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not installed: the {package} tests need Node.js >= 18 and npm")
    if not (JS_DIR / "node_modules" / package).is_dir():
        pytest.fail(f"{JS_DIR / 'node_modules' / package} is missing: run ./scripts/test (it runs `npm ci` "
                    f"there), or `cd {JS_DIR} && npm ci`")
    proc = subprocess.run([node, str(JS_DIR / name), url], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=NODE_SCRIPT_TIMEOUT, stdin=subprocess.DEVNULL)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{name} printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, f"{name} failed: {result} {proc.stderr[-2000:]}"
    return result
