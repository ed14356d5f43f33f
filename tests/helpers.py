"""Shared test helpers: run ``omnibus serve`` as a real process and talk HTTP to it."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

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
