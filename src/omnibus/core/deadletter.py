"""Dead-letter bookkeeping as RabbitMQ 3.x does it (rabbit_dead_letter.erl, dlx.html): the ``x-death``
history of a dead-lettered message, and the cycle rule. Pure functions over already decoded header
dicts; the session decodes and re-encodes a protocol's properties around them (only for dead-lettered
messages: the normal publish path never decodes properties).

Strategy
    * ``update_x_death(headers, ...)``: the first death adds ``x-first-death-reason``/``-queue``/``-exchange``
      and an ``x-death`` array of one table. A later death for the same queue and reason increments that
      entry's ``count`` and moves it to the front (the most recent first); another queue/reason adds a new
      entry at the front. Each entry: ``count``, ``reason``, ``queue``, ``time`` (seconds, made by the
      caller's ``timestamp`` factory so it encodes as an AMQP timestamp), ``exchange``, ``routing-keys``
      and, for a message that had a per-message TTL, ``original-expiration``.
    * ``is_cycle(queue, deaths)``: a message routed to ``queue`` that already died there is dropped when
      every death from the most recent back to that queue's was automatic (not ``rejected``); a cycle that
      a client took part in (a reject) is allowed. Deaths by reject are never checked (``detect_cycles``).

Rules: no protocol and no I/O here; event-loop thread only (plain functions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["update_x_death", "is_cycle", "death_routing_keys", "dead_letter_headers", "X_DEATH"]

X_DEATH = "x-death"


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def death_routing_keys(routing_key: str, headers: Mapping[str, Any] | None) -> list[str]:
    """The routing keys a message was published with: its routing key, then its ``CC`` and ``BCC``
    header keys (rabbit_basic header_routes)."""
    keys = [routing_key]
    if headers:
        for name in ("CC", "BCC"):
            v = headers.get(name)
            if isinstance(v, list):
                keys.extend(_text(k) for k in v if isinstance(k, (str, bytes)))
    return keys


def update_x_death(headers: Mapping[str, Any] | None, *, queue: str, reason: str, exchange: str,
                   routing_keys: Sequence[str], time: Any, original_expiration: str | None = None,
                   ) -> dict[str, Any]:
    """The headers of a message dying in ``queue`` for ``reason`` (rabbit_dead_letter update_x_death_header).
    ``time`` is stored as given (the caller passes an AMQP timestamp value)."""
    out = dict(headers or {})
    info: dict[str, Any] = {"reason": reason, "queue": queue, "time": time, "exchange": exchange,
                            "routing-keys": list(routing_keys)}
    if original_expiration is not None:
        info["original-expiration"] = original_expiration
    deaths = out.get(X_DEATH)
    if not isinstance(deaths, list):
        out["x-first-death-reason"] = reason
        out["x-first-death-queue"] = queue
        out["x-first-death-exchange"] = exchange
        out[X_DEATH] = [{"count": 1, **info}]
        return out
    count = 1
    others = []
    for d in deaths:
        if (isinstance(d, dict) and _text(d.get("queue")) == queue and _text(d.get("reason")) == reason
                and count == 1):
            c = d.get("count")
            count = (c if isinstance(c, int) else 1) + 1
        else:
            others.append(d)
    out[X_DEATH] = [dict(sorted({"count": count, **info}.items())), *others]
    return out


def is_cycle(queue: str, deaths: Any) -> bool:
    """rabbit_dead_letter is_cycle: ``deaths`` (the x-death array, most recent first) shows the message
    already died in ``queue`` with no ``rejected`` death since (inclusive)."""
    if not isinstance(deaths, list):
        return False
    for i, d in enumerate(deaths):
        if isinstance(d, dict) and _text(d.get("queue")) == queue:
            return all(isinstance(e, dict) and _text(e.get("reason")) != "rejected" for e in deaths[:i + 1])
    return False


def dead_letter_headers(headers: Mapping[str, Any] | None, *, queue: str, reason: str, exchange: str,
                        routing_key: str, dead_letter_routing_key: str | None, time: Any,
                        expiration: str | None) -> dict[str, Any]:
    """Headers of the dead-lettered copy: x-death updated; ``CC`` removed when the queue has a
    dead-letter routing key (its routing keys replace the message's)."""
    out = update_x_death(headers, queue=queue, reason=reason, exchange=exchange,
                         routing_keys=death_routing_keys(routing_key, headers), time=time,
                         original_expiration=expiration)
    if dead_letter_routing_key is not None:
        out.pop("CC", None)
    return out
