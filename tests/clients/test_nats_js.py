"""NATS core with the real nats.js client (npm ``nats`` 2.x), driven through the node scripts in ``js/``.

Each script takes the broker URL as its argument and prints one JSON line (see ``js/_common.mjs``).
``./scripts/test`` runs ``npm ci`` in ``tests/clients/js`` first; nothing here is skipped: without
``node_modules`` every test fails and says what to run. Also passes against nats-server
(``OMNIBUS_TEST_AGAINST=nats-server``).
"""

from __future__ import annotations

from tests.helpers import run_node_script


def run_script(name: str, url: str) -> dict:
    return run_node_script(name, url, "nats")


def test_pub_sub_and_wildcards(nats_url):
    r = run_script("pubsub.mjs", nats_url)
    assert r["exact"] == [f"hello {i}" for i in range(10)]
    assert r["star"] == ["js.greet"] * 10 + ["js.bin"]
    assert r["tail"] == ["js.greet"] * 10 + ["js.deep.down", "js.bin"]
    assert r["binary_ok"] is True


def test_request_reply(nats_url):
    r = run_script("reqrep.mjs", nats_url)
    assert r["sequential"] == [f"pong:{i}" for i in range(20)]
    assert r["concurrent"] == [f"pong:c{i}" for i in range(20)]
    assert r["no_responders"] == "503"  # nats.js ErrorCode.NoResponders


def test_headers(nats_url):
    r = run_script("headers.mjs", nats_url)
    assert r["messages"] == [
        {"data": "with", "headers": {"Foo": ["bar"], "Multi": ["one", "two"], "Only": []}},
        {"data": "", "headers": {"Foo": [], "Multi": [], "Only": ["headers"]}},
        {"data": "without", "headers": None},
    ]
    assert r["reply_seen"] == "please"


def test_queue_groups(nats_url):
    r = run_script("queue.mjs", nats_url)
    n = r["n"]
    assert r["total"] == n and r["unique"] == n, r  # each message once to the group
    assert sum(r["counts"]) == n and all(c > 0 for c in r["counts"]), r  # spread over the members
    assert r["plain"] == n  # a plain subscriber gets them all
