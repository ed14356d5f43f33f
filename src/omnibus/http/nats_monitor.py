"""nats-server's monitoring endpoints (/varz, /connz, /subsz), the subset of fields tools read, same names.

Reference: nats-server server/monitor.go (Varz, Connz, ConnInfo, Subsz). Handlers read the broker's NATS
router (``broker.nats``, created with the first NATS connection) and never block.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from omnibus.http.routes import ROUTES, Request, Response, json_response


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + (f"{h}h" if h or d else "") + (f"{m}m" if m or h or d else "") + f"{s}s"


def _rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


def varz(broker: Any, req: Request) -> Response:
    from omnibus.server.nats_session import PROTOCOL_VERSION, NatsRouter

    router = NatsRouter.of(broker)
    s = broker.settings
    host, port = broker.listeners.get("nats", (s.host, s.nats_port))
    stats = broker.stats.get("nats")
    now = time.time()
    in_msgs, out_msgs, in_bytes, out_bytes = router.totals()
    return json_response(200, {
        "server_id": router.server_id, "server_name": s.nats.server_name, "version": PROTOCOL_VERSION,
        "proto": 1, "host": host, "port": port, "auth_required": s.nats.auth_required,
        "max_connections": s.limits.max_connections, "ping_interval": int(s.nats.ping_interval_s * 1e9),
        "ping_max": s.nats.max_pings_out, "max_control_line": s.nats.max_control_line,
        "max_payload": s.limits.max_payload, "max_pending": s.limits.max_pending_bytes,
        "start": _iso(router.started), "now": _iso(now), "uptime": _uptime(now - router.started),
        "mem": _rss_bytes(), "cores": os.cpu_count(),
        "connections": len(router.sessions), "total_connections": stats.connections_total if stats else 0,
        "in_msgs": in_msgs, "out_msgs": out_msgs, "in_bytes": in_bytes, "out_bytes": out_bytes,
        "slow_consumers": router.slow_consumers,
        "subscriptions": len(router.trie),
    })


def connz(broker: Any, req: Request) -> Response:
    from omnibus.server.nats_session import NatsRouter

    router = NatsRouter.of(broker)
    q = req.query
    try:
        offset = int(q.get("offset", ["0"])[0])
        limit = int(q.get("limit", ["1024"])[0])  # nats-server DefaultConnListSize
    except ValueError:
        return json_response(400, {"error": "offset and limit must be integers"})
    subs = q.get("subs", ["0"])[0] in ("1", "true", "detail")
    now = time.time()
    sessions = sorted(router.sessions.values(), key=lambda x: x.cid)
    conns = []
    for sess in sessions[offset:offset + limit]:
        peer = sess.conn.peer or ("", 0)
        info = {
            "cid": sess.cid, "kind": "Client", "type": "nats", "ip": peer[0], "port": peer[1],
            "start": _iso(sess.start), "last_activity": _iso(sess.last_activity),
            "uptime": _uptime(now - sess.start), "pending_bytes": sess.conn.pending_bytes,
            "in_msgs": sess.in_msgs, "out_msgs": sess.out_msgs, "in_bytes": sess.in_bytes,
            "out_bytes": sess.out_bytes, "subscriptions": len(sess.subs), "name": sess.name,
            "lang": sess.lang, "version": sess.version,
        }
        if sess.user:
            info["authorized_user"] = sess.user
        if subs:
            info["subscriptions_list"] = sorted(s.subject for s in sess.subs.values())
        conns.append(info)
    return json_response(200, {
        "server_id": router.server_id, "now": _iso(now), "num_connections": len(conns),
        "total": len(sessions), "offset": offset, "limit": limit, "connections": conns,
    })


def subsz(broker: Any, req: Request) -> Response:
    from omnibus.server.nats_session import NatsRouter

    trie = NatsRouter.of(broker).trie
    matches = trie.matches
    return json_response(200, {
        "num_subscriptions": len(trie), "num_cache": trie.cache_count, "num_matches": matches,
        "cache_hit_rate": (trie.cache_hits / matches) if matches else 0.0,
    })


ROUTES.update({"/varz": varz, "/connz": connz, "/subsz": subsz})
