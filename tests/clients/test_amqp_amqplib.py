"""AMQP 0-9-1 with the real Node client amqplib (npm ``amqplib`` 2.x), driven through ``js/amqp_*.mjs``.

Each script takes the broker's AMQP URL, prints one JSON line (see ``js/_amqp.mjs``) and has its own
deadline. ``./scripts/test`` runs ``npm ci`` in ``tests/clients/js`` first; without ``node_modules`` these
tests fail and say what to run. The scripts print the same JSON against RabbitMQ 3.10.8 (checked with
bench/_servers.RabbitServer).
"""

from __future__ import annotations

import pytest

from omnibus import SyncBroker
from tests.helpers import run_node_script


@pytest.fixture
def amqp_url(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b.amqp_url


def run_script(name: str, url: str) -> dict:
    return run_node_script(name, url, "amqplib")


def test_confirms_consume_get_topic_return_and_channel_error(amqp_url):
    r = run_script("amqp_basic.mjs", amqp_url)
    assert r["declared"] == {"queue": "js-work", "messageCount": 0, "consumerCount": 0}
    assert r["afterPublish"] == 20
    assert r["consumed"] == [f"job {i}" for i in range(20)]
    assert r["first"] == {"contentType": "text/plain", "messageId": "m0", "headers": {"n": 0, "tag": "js"},
                          "deliveryMode": 2, "redelivered": False, "routingKey": "js-work", "exchange": ""}
    assert r["consumerTagPrefix"] == "amq.ctag-"
    assert r["get"] == ["one", 1, "two", False]
    assert r["namedPrefix"] == "amq.gen-"
    assert r["routed"] == ["logs.web.error", "logs.db.error"]
    assert r["returned"] == [312, "NO_ROUTE", "nobody", "bounce"]
    assert r["checkMissing"]["code"] == 404
    assert "NOT_FOUND - no queue 'js-missing' in vhost '/'" in r["checkMissing"]["message"]
    assert r["channelError"] == ("Channel closed by server: 404 (NOT-FOUND) with message "
                                 "\"NOT_FOUND - no queue 'js-missing' in vhost '/'\"")
    assert r["stillWorks"] == "js-after"


def test_competing_consumers_nack_requeue_and_orphaned_delivery(amqp_url):
    r = run_script("amqp_workers.mjs", amqp_url)
    assert r["unique"] == 40 and sum(r["counts"]) == 40
    assert all(c >= 10 for c in r["counts"]), r["counts"]  # prefetch 1, equal work: shared (20/20 here)
    assert r["nackRequeue"] == [["again", False], ["again", True]]
    assert r["beforeClose"] == 0  # the other consumer does not get a message held unacked elsewhere
    assert r["orphan"] == ["orphan", True]
