"""Prometheus metrics, collected at scrape time from plain counters.

Hot paths bump plain ``int`` attributes (``ProtocolStats``, ``omnibus.storage.stats``); a custom collector
turns them into metric families when ``/metrics`` is scraped. No prometheus-client object is touched per
message, and every broker has its own registry, so two embedded brokers in one process never mix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from omnibus.storage import stats as storage_stats

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.app import BrokerServer


class BrokerCollector:
    def __init__(self, server: "BrokerServer") -> None:
        self.server = server

    def collect(self) -> Iterable:
        conns = GaugeMetricFamily("omnibus_connections", "Open client connections", labels=["protocol"])
        total = CounterMetricFamily("omnibus_connections", "Client connections accepted", labels=["protocol"])
        bin_ = CounterMetricFamily("omnibus_received_bytes", "Bytes received from clients", labels=["protocol"])
        bout = CounterMetricFamily("omnibus_sent_bytes", "Bytes sent to clients", labels=["protocol"])
        for proto, st in self.server.stats.items():
            conns.add_metric([proto], st.connections)
            total.add_metric([proto], st.connections_total)
            bin_.add_metric([proto], st.bytes_in)
            bout.add_metric([proto], st.bytes_out)
        yield conns
        yield total
        yield bin_
        yield bout
        s = storage_stats
        yield CounterMetricFamily("omnibus_log_appends", "Batches appended to logs (all brokers in this process)",
                                  value=s.appends)
        yield CounterMetricFamily("omnibus_log_appended_bytes", "Bytes appended to logs", value=s.bytes_appended)
        yield CounterMetricFamily("omnibus_log_fsyncs", "fsync calls on log files", value=s.fsyncs)
        yield GaugeMetricFamily("omnibus_ready", "1 once every listener accepts connections",
                                value=1 if self.server.ready else 0)


class Metrics:
    def __init__(self, server: "BrokerServer") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BrokerCollector(server))
