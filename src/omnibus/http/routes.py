"""The admin HTTP API: plain functions from a request to a response, no sockets and no event loop.

``server/http_session.py`` drives the HTTP/1.1 framing (h11) and calls :func:`handle`. Endpoints today:
``GET /healthz`` (200 once every listener accepts connections, 503 before; nats-server answers
``{"status":"ok"}`` on its own /healthz, so we do too) and ``GET /metrics`` (Prometheus text format).
Protocol issues add their endpoints (nats-server's /varz, /connz, /subsz) to :data:`ROUTES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Request", "Response", "handle", "ROUTES"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_response(status: int, obj: Any) -> Response:
    return Response(status, orjson.dumps(obj) + b"\n")


def healthz(broker: Any, req: Request) -> Response:
    if broker.ready:
        return json_response(200, {"status": "ok"})
    return json_response(503, {"status": "unavailable", "error": "listeners are not ready"})


def metrics(broker: Any, req: Request) -> Response:
    return Response(200, generate_latest(broker.metrics.registry), CONTENT_TYPE_LATEST)


#: path -> handler(broker, request). Handlers run on the event loop: keep them quick.
ROUTES: dict[str, Callable[[Any, Request], Response]] = {
    "/healthz": healthz,
    "/metrics": metrics,
}


def handle(broker: Any, method: str, target: str) -> Response:
    parts = urlsplit(target)
    path = parts.path.rstrip("/") or "/"
    handler = ROUTES.get(path)
    if handler is None:
        return json_response(404, {"error": f"no such endpoint: {path}"})
    if method not in ("GET", "HEAD"):
        return json_response(405, {"error": f"method {method} not allowed"})
    return handler(broker, Request(method, path, parse_qs(parts.query)))
