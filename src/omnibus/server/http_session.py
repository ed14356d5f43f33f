"""The HTTP listener's session: h11 does the HTTP/1.1 framing (sans-IO, well kept), http/routes.py answers.

Rules: event-loop thread only; requests are tiny (GET only), so a request body or a header block larger
than MAX_REQUEST_BYTES ends the connection with 431/413 as h11 and common servers do.
"""

from __future__ import annotations

import h11

from omnibus import __version__
from omnibus.http.routes import Response, handle

#: Largest request head we read (h11's default limit is 16 KiB; admin requests are a line or two).
MAX_REQUEST_BYTES = 16 * 1024
SERVER_HEADER = f"omnibus/{__version__}".encode()


class HttpSession:
    """One HTTP/1.1 connection with keep-alive."""

    def __init__(self, conn, server) -> None:
        self.conn = conn
        self.server = server
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._process()

    def _process(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self._send_error(e.error_status_hint, str(e))
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                response = handle(self.server, event.method.decode("ascii", "replace"),
                                  event.target.decode("ascii", "replace"))
                self._send(response, head_only=event.method == b"HEAD")
            elif isinstance(event, h11.ConnectionClosed):
                self.conn.close()
                return

    def _send(self, response: Response, *, head_only: bool = False) -> None:
        headers = [("content-type", response.content_type.encode()),
                   ("content-length", str(len(response.body)).encode()),
                   ("server", SERVER_HEADER)]
        out = self.h11.send(h11.Response(status_code=response.status, headers=headers))
        if not head_only:
            out += self.h11.send(h11.Data(data=response.body))
        out += self.h11.send(h11.EndOfMessage())
        self.conn.write(out)
        if self.h11.our_state is h11.MUST_CLOSE:
            self.conn.close()

    def _send_error(self, status: int, message: str) -> None:
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = message.encode() + b"\n"
            try:
                out = self.h11.send(h11.Response(status_code=status, headers=[
                    ("content-type", b"text/plain"), ("content-length", str(len(body)).encode()),
                    ("connection", b"close")]))
                out += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
                self.conn.write(out)
            except h11.LocalProtocolError:  # pragma: no cover - state already broken
                pass
        self.conn.close()

    def connection_lost(self, exc) -> None:
        pass

    def shutdown(self) -> None:
        self.conn.close()
