"""JetStream with nats.js (npm ``nats`` 2.x, tests/clients/js): stream management, PubAcks with msgID
de-duplication and expectations, pull ``consumer.fetch``/``consume``, a push durable consumer with a
NAK, ordered consumers (pull and push), and key-value buckets (``js.views.kv``) with watch/history.
Each script's JSON is the same against nats-server 2.9.10 (checked side by side)."""

from __future__ import annotations

from tests.clients.test_jetstream_push import js_url  # noqa: F401  (fixture: Omnibus or nats-server -js)
from tests.helpers import run_node_script


def run_script(name: str, url: str) -> dict:
    return run_node_script(name, url, "nats")


def test_streams_and_publish(js_url):  # noqa: F811
    r = run_script("js_streams.mjs", js_url)
    assert r["created"] == "JSORDERS"
    assert r["acks"] == [["JSORDERS", i, False] for i in range(1, 5)]
    assert r["dup"] == [3, True]
    assert r["wrong_last"] == {"code": "400", "api": {"code": 400, "err_code": 10071,
                                                      "description": "wrong last sequence: 4"}}
    assert r["ok_last"] == 5
    assert (r["updated_subjects"], r["max_msgs"], r["via_new"]) == (["jsorders.>", "jsmore.*"], 100, 6)
    assert r["state"] == [6, 1, 6] and r["names"] == ["JSORDERS"]
    assert r["missing"] == {"code": "404", "api": {"code": 404, "err_code": 10059, "description": "stream not found"}}
    assert r["consumers"] == ["c1"]
    assert r["get"] == ["jsorders.new", 2, "o1"] and r["deleted"] is True


def test_pull_push_and_ordered_consumers(js_url):  # noqa: F811
    r = run_script("js_consume.mjs", js_url)
    assert r["fetched"] == ["0", "1", "2", "3"]
    assert r["consumed"] == [[str(i), 1, 9 - i] for i in range(4, 10)]  # data, redelivery count, pending
    assert r["pull_info"] == [0, 0, 10]
    assert r["pushed"][:5] == [[str(i), 1] for i in (1, 3, 5, 7, 9)]
    assert r["pushed"][5] == ["3", 2]  # the NAK'd one, once more
    assert r["push_info"] == [0, 10]
    assert r["ordered"] == [str(i) for i in range(10)]
    assert r["ordered_push"] == [[str(i), i + 1] for i in range(10)]


def test_key_value(js_url):  # noqa: F811
    r = run_script("js_kv.mjs", js_url)
    assert r["direct"] is True and r["bucket"] == ["jsbucket", 5, "KV_jsbucket"]
    assert r["revisions"] == [1, 2, 3, 4]
    assert r["got"] == ["a", "2", 2, "PUT"] and r["missing"] is None
    assert r["create_err"] == r["update_err"] == "wrong last sequence: 2"
    assert r["watched"] == [["a", "PUT", "3", 4], ["a", "PUT", "4", 5], ["a", "DEL", "", 6]]
    assert r["after_delete"] == ["DEL", 6]
    assert r["keys"] == ["b"]  # "a" deleted, "c" purged
    assert r["history"] == [["PUT", "1"], ["PUT", "2"], ["PUT", "3"], ["PUT", "4"], ["DEL", ""]]
