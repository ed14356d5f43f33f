"""Kafka admin APIs (registered with :func:`omnibus.server.kafka_session.handler`)."""

from __future__ import annotations
