"""kafkajs 2.2.4 (Node, from the lock file in tests/clients/js) against Omnibus: a producer and a consumer
group with ``eachMessage`` (see ``js/kafkajs_groups.mjs``): rebalance when a second member joins, commits,
the admin's describe/list/fetchOffsets, and a new member resuming from the committed offsets."""

from __future__ import annotations

from tests.helpers import run_node_script


def test_kafkajs_producer_and_consumer_group(omnibus_broker):
    r = run_node_script("kafkajs_groups.mjs", omnibus_broker.kafka_bootstrap, "kafkajs")
    assert r["seen"] == 40 and r["values"] == sorted(f"v{i}" for i in range(40))
    assert sorted(r["assignments"]["c1"] + r["assignments"]["c2"]) == [0, 1]
    assert r["committedAfterRun"] == {"0": 22, "1": 22}
    assert r["described"] == {"state": "Stable", "protocolType": "consumer", "protocol": "RoundRobinAssigner",
                              "members": 2}
    assert r["listed"] == [["kjs-group", "consumer"]]
    assert r["afterLeave"] == "Empty"
    assert r["late"] == ["0:20", "0:21", "1:20", "1:21"]
