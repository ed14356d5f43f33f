"""``omnibus serve`` as a real process: it starts, listens, answers HTTP, and stops cleanly; bad settings
end with one line and a non-zero exit."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers import http_get, serve_command, start_serve


def test_serve_listens_answers_and_exits_0_on_sigterm(tmp_path):
    sp = start_serve(tmp_path / "data")
    try:
        assert "http" in sp.listeners
        host, port = sp.listeners["http"]
        assert host == "127.0.0.1" and port > 0
        assert sp.lines[-1].startswith("omnibus: ready in ")
        status, body = http_get(sp.url_for("http", "/healthz"))
        assert (status, body.strip()) == (200, '{"status":"ok"}')
        status, body = http_get(sp.url_for("http", "/metrics"))
        assert status == 200
        assert 'omnibus_connections{protocol="http"} 1.0' in body
        assert "omnibus_log_fsyncs_total" in body
        assert http_get(sp.url_for("http", "/nope"))[0] == 404
    finally:
        code = sp.stop(timeout=5.0)  # graceful stop must finish within 5 s
    assert code == 0
    out = sp.rest_of_stdout()
    assert "omnibus: stopped" in out
    assert (tmp_path / "data" / "meta.sqlite").exists()


def test_sigint_also_stops_cleanly(tmp_path):
    sp = start_serve(tmp_path / "data")
    sp.proc.send_signal(signal.SIGINT)
    assert sp.proc.wait(5.0) == 0


def _run_fail(*args: str, env=None) -> tuple[int, str]:
    proc = subprocess.run([*serve_command(*args)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.stdout == "" or "ready" not in proc.stdout
    return proc.returncode, proc.stderr


def _assert_one_line(stderr: str, fragment: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("omnibus: error: "), stderr
    assert fragment in lines[0], stderr
    assert "Traceback" not in stderr


def test_bad_port_value(tmp_path):
    code, err = _run_fail("--data-dir", str(tmp_path), "--http-port", "99999")
    assert code == 2
    _assert_one_line(err, "invalid http_port 99999")


def test_bad_env_value(tmp_path):
    import os
    code, err = _run_fail("--data-dir", str(tmp_path), env={**os.environ, "OMNIBUS_STORAGE__FSYNC": "maybe"})
    assert code == 2
    _assert_one_line(err, "invalid storage.fsync 'maybe'")


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("kafka_port = 'x'\n")
    code, err = _run_fail("--config", str(cfg), "--data-dir", str(tmp_path))
    assert code == 2
    _assert_one_line(err, "invalid value 'x' for kafka_port")


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = _run_fail("--data-dir", str(tmp_path / "d"), "--http-port", str(port),
                              "--kafka-port", "0", "--amqp-port", "0", "--nats-port", "0")
    assert code == 1
    _assert_one_line(err, f"cannot listen for http on 127.0.0.1:{port}: address already in use")


def test_unusable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    code, err = _run_fail("--data-dir", str(blocker / "sub"), "--http-port", "0")
    assert code == 1
    _assert_one_line(err, f"data dir {blocker / 'sub'} is not usable")


def test_data_dir_in_use_by_another_broker(tmp_path):
    sp = start_serve(tmp_path / "data")
    try:
        code, err = _run_fail("--data-dir", str(tmp_path / "data"), "--http-port", "0")
        assert code == 1
        _assert_one_line(err, "is in use by another omnibus process")
    finally:
        assert sp.stop() == 0


def test_version():
    out = subprocess.run([sys.executable, "-m", "omnibus", "--version"], capture_output=True, text=True)
    from omnibus import __version__
    assert out.returncode == 0 and out.stdout.strip() == f"omnibus {__version__}"
