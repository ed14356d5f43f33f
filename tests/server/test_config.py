"""Settings: defaults, TOML, env, overrides, and one-line errors."""

from pathlib import Path

import pytest

from omnibus.config import ConfigError, Settings, load_settings


def test_defaults_need_no_file():
    s = load_settings(environ={})
    assert s == Settings()
    assert s.data_dir == Path("./omnibus-data")
    assert (s.kafka_port, s.amqp_port, s.nats_port, s.http_port) == (9092, 5672, 4222, 8222)
    assert s.host == "127.0.0.1"
    assert s.storage.fsync == "interval"


def test_precedence_file_env_overrides(tmp_path):
    cfg = tmp_path / "omnibus.toml"
    cfg.write_text('data_dir = "/srv/a"\nnats_port = 1000\nkafka_port = 1001\n'
                   '[storage]\nfsync = "never"\nsegment_bytes = 4096\n')
    env = {"OMNIBUS_NATS_PORT": "2000", "OMNIBUS_STORAGE__FSYNC": "always", "HOME": "/x"}
    s = load_settings(cfg, environ=env, overrides={"nats_port": 3000, "kafka_port": None})
    assert s.data_dir == Path("/srv/a")
    assert s.kafka_port == 1001  # None override falls through to the file
    assert s.nats_port == 3000  # flag beats env beats file
    assert s.storage.fsync == "always"  # env beats file
    assert s.storage.segment_bytes == 4096


def test_config_path_from_env(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("http_port = 0\n")
    assert load_settings(environ={"OMNIBUS_CONFIG": str(cfg)}).http_port == 0


@pytest.mark.parametrize("kwargs, fragment", [
    ({"environ": {"OMNIBUS_NATS_PORT": "abc"}}, "invalid value 'abc' for nats_port (from environment)"),
    ({"environ": {"OMNIBUS_NATS_PORT": "70000"}}, "invalid nats_port 70000"),
    ({"environ": {"OMNIBUS_STORAGE__FSYNC": "sometimes"}}, "invalid storage.fsync 'sometimes'"),
    ({"environ": {"OMNIBUS_NO_SUCH": "1"}}, "unknown setting 'no_such' (from environment)"),
    ({"environ": {}, "overrides": {"storage.retention_ms": 0}}, "invalid storage.retention_ms 0"),
    ({"environ": {}, "overrides": {"limits.max_payload": -5}}, "invalid limits.max_payload -5"),
    ({"environ": {}, "overrides": {"kafka_port": True}}, "invalid value True for kafka_port"),
])
def test_bad_values_raise_one_line(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("nats_port = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    sec = tmp_path / "sec.toml"
    sec.write_text("[nosuch]\na = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[nosuch\]"):
        load_settings(sec, environ={})


def test_readme_settings_example_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = tmp_path / "readme.toml"
    cfg.write_text(block)
    s = load_settings(cfg, environ={})
    assert s.storage.fsync == "interval"
    assert s.nats.users[0]["user"] == "svc" and s.nats.auth_required
