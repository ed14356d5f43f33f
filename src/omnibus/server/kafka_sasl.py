"""Kafka SASL (SASL_PLAINTEXT): SaslHandshake (17) v0/v1 and SaslAuthenticate (36) v0-v2, with PLAIN
(RFC 4616) and SCRAM-SHA-256/-512 (RFC 5802, RFC 7677) on the server side.

Strategy: when ``settings.kafka.users`` is non-empty every Kafka session starts with a :class:`SaslState`
(``session.sasl``); the session's gate lets only ApiVersions, SaslHandshake and SaslAuthenticate through
while it is set, and closes the connection on anything else, as Kafka's SaslServerAuthenticator does
("Unexpected Kafka request of type ... during SASL handshake"). On success ``session.sasl`` becomes None
and the gate costs one attribute test per request from then on.

Two ways to carry the SASL tokens (KIP-152):
- SaslHandshake v1, then SaslAuthenticate requests (what librdkafka and kafka-python do when ApiVersions
  advertises SaslAuthenticate, which it does here);
- SaslHandshake v0, then raw tokens outside the Kafka framing: a 4-byte size and the token each way
  (the legacy exchange; kafka-python still uses it against brokers it takes for 0.10). The session hands
  its bytes to :meth:`SaslState.raw_received` while ``raw`` is set; bytes after the last token go back to
  the Kafka codec.

Credentials: SCRAM salted passwords are derived once per broker start (random salt, 4096 iterations,
Kafka's minimum and default), so an exchange costs two HMACs and a hash. Failures answer
SASL_AUTHENTICATION_FAILED with Kafka's message and close the connection (a raw-token failure just
closes, as Kafka does: there is no frame to carry an error).

Rules: event-loop thread only; hashlib/hmac/secrets only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import struct
from typing import TYPE_CHECKING, Any

from omnibus.server.kafka_session import handler
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.kafka_session import KafkaSession
    from omnibus.wire.kafka.connection import Request

__all__ = ["SaslState", "PRE_AUTH_APIS", "ScramCredentials", "new_state"]

#: APIs served before authentication (Kafka SaslServerAuthenticator states HANDSHAKE_OR_VERSIONS_REQUEST,
#: HANDSHAKE_REQUEST, AUTHENTICATE).
PRE_AUTH_APIS = frozenset({M.API_VERSIONS, M.SASL_HANDSHAKE, M.SASL_AUTHENTICATE})
#: Kafka's ScramMechanism minimum iterations (and the kafka-configs default).
SCRAM_ITERATIONS = 4096
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
#: A raw SASL token larger than this closes the connection (Kafka sasl.server.max.receive.size, 512 KiB).
MAX_RAW_TOKEN = 524288
_SIZE = struct.Struct(">i")
#: Kafka connection.failed.authentication.delay.ms (100): the failed connection closes this long after the
#: answer, so the client reads the error instead of a reset.
FAILED_AUTH_CLOSE_DELAY_S = 0.1


def _close_failed(session: "KafkaSession") -> None:
    """Stop reading from the connection now and close it after the delay (answers already queued go out)."""
    session.closed = True
    for f in session._fetches:
        f.cancel()
    asyncio.get_running_loop().call_later(FAILED_AUTH_CLOSE_DELAY_S, session.conn.close)


class _AuthFailed(Exception):
    """Authentication failed; the message is what Kafka tells the client."""


def _generic_failure(mechanism: str) -> _AuthFailed:
    # SaslServerAuthenticator.handleSaslToken, for a plain SaslException from the mechanism.
    return _AuthFailed(f"Authentication failed during authentication due to invalid credentials with SASL "
                       f"mechanism {mechanism}")


class ScramCredentials:
    """Per-user SCRAM credentials (salt, stored key, server key) for each SCRAM mechanism, derived once."""

    def __init__(self, users: dict[str, str]) -> None:
        self.by_mech: dict[str, dict[str, tuple[bytes, bytes, bytes]]] = {}
        for mech, hname in SCRAM_HASHES.items():
            creds = self.by_mech[mech] = {}
            for user, password in users.items():
                salt = secrets.token_bytes(16)
                salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, SCRAM_ITERATIONS)
                client_key = hmac.new(salted, b"Client Key", hname).digest()
                stored_key = hashlib.new(hname, client_key).digest()
                server_key = hmac.new(salted, b"Server Key", hname).digest()
                creds[user] = (salt, stored_key, server_key)


def _users(server: Any) -> dict[str, str]:
    out = {}
    for u in server.settings.kafka.users or ():
        get = u.get if isinstance(u, dict) else lambda k, u=u: getattr(u, k, None)
        out[str(get("user"))] = str(get("password") or "")
    return out


def _broker_auth(server: Any) -> tuple[dict[str, str], ScramCredentials]:
    cached = getattr(server, "_kafka_sasl", None)
    if cached is None:
        users = _users(server)
        cached = server._kafka_sasl = (users, ScramCredentials(users))
    return cached


def new_state(session: "KafkaSession") -> "SaslState | None":
    """The SASL state a new session starts with: None when no users are configured (no authentication)."""
    if not session.server.settings.kafka.users:
        return None
    return SaslState(session.server)


def _saslname(s: str) -> str:
    """RFC 5802 saslname decoding: '=2C' is ',' and '=3D' is '='; any other '=' is an error."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "=":
            code = s[i + 1:i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ValueError("invalid saslname")
            i += 3
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _attrs(msg: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"}; RFC 5802 attributes are one letter, Kafka's extensions
    (``tokenauth=true``, KIP-48) longer."""
    out = {}
    for part in msg.split(","):
        name, eq, value = part.partition("=")
        if not name or not eq:
            raise ValueError(f"invalid SCRAM attribute {part!r}")
        out[name] = value
    return out


class SaslState:
    """One connection's SASL exchange. Event-loop thread only."""

    __slots__ = ("users", "scram", "enabled", "mechanism", "raw", "step", "user", "_scram", "_buf")

    def __init__(self, server: Any) -> None:
        self.users, self.scram = _broker_auth(server)
        # Only what is implemented is offered (a configured GSSAPI or OAUTHBEARER is not).
        self.enabled = [m for m in server.settings.kafka.sasl_enabled_mechanisms if m == "PLAIN" or m in SCRAM_HASHES]
        self.mechanism: str | None = None
        self.raw = False  # SaslHandshake v0: tokens without Kafka framing
        self.step = 0
        self.user: str | None = None
        self._scram: tuple | None = None
        self._buf = b""

    # -- mechanisms: evaluate one client token; returns the server token and whether we are done ------------
    def evaluate(self, token: bytes) -> tuple[bytes, bool]:
        mech = self.mechanism
        if mech == "PLAIN":
            return self._plain(token), True
        if mech in SCRAM_HASHES:
            return self._scram_step(token)
        raise _generic_failure(str(mech))

    def _plain(self, token: bytes) -> bytes:
        # Kafka PlainSaslServer.evaluateResponse
        parts = token.decode("utf-8", "replace").split("\x00")
        if len(parts) != 3:
            raise _generic_failure("PLAIN")
        authzid, user, password = parts
        if not user:
            raise _AuthFailed("Authentication failed: username not specified")
        if not password:
            raise _AuthFailed("Authentication failed: password not specified")
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise _AuthFailed("Authentication failed: Invalid username or password")
        if authzid and authzid != user:
            raise _AuthFailed("Authentication failed: Client requested an authorization id that is different "
                              "from username")
        self.user = user
        return b""

    def _scram_step(self, token: bytes) -> tuple[bytes, bool]:
        mech = str(self.mechanism)
        hname = SCRAM_HASHES[mech]
        try:
            msg = token.decode("utf-8")
            if self.step == 0:
                # client-first-message: gs2-header "n,," / "y,," / "n,a=authzid," then the bare message
                cbind, authz, bare = msg.split(",", 2)
                if cbind not in ("n", "y") or (authz and not authz.startswith("a=")):
                    raise ValueError("bad gs2 header")
                attrs = _attrs(bare)
                user = _saslname(attrs["n"])
                cnonce = attrs["r"]
                if not cnonce:
                    raise ValueError("empty nonce")
                cred = self.scram.by_mech[mech].get(user)
                if cred is None:
                    raise _generic_failure(mech)  # Kafka: "Invalid user credentials" as a SaslException
                if authz and _saslname(authz[2:]) != user:
                    raise _AuthFailed("Authentication failed: Client requested an authorization id that is "
                                      "different from username")
                salt = cred[0]
                nonce = cnonce + base64.b64encode(secrets.token_bytes(18)).decode()
                server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
                self._scram = (user, cred, bare, server_first, nonce, f"{cbind},{authz},")
                self.step = 1
                return server_first.encode(), False
            if self.step == 1 and self._scram is not None:
                user, (_salt, stored_key, server_key), client_first_bare, server_first, nonce, gs2 = self._scram
                without_proof, _, proof_part = msg.rpartition(",p=")
                attrs = _attrs(without_proof)
                if attrs.get("r") != nonce:
                    raise ValueError("nonce mismatch")
                if base64.b64decode(attrs.get("c", ""), validate=True) != gs2.encode():
                    raise ValueError("channel binding mismatch")
                proof = base64.b64decode(proof_part, validate=True)
                auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
                client_signature = hmac.new(stored_key, auth_message, hname).digest()
                if len(proof) != len(client_signature):
                    raise ValueError("bad proof length")
                client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
                if not hmac.compare_digest(hashlib.new(hname, client_key).digest(), stored_key):
                    raise _generic_failure(mech)  # Kafka: SaslException("Invalid client credentials")
                server_signature = hmac.new(server_key, auth_message, hname).digest()
                self.user = user
                self.step = 2
                return b"v=" + base64.b64encode(server_signature), True
        except _AuthFailed:
            raise
        except (ValueError, KeyError, UnicodeDecodeError):
            raise _generic_failure(mech) from None
        raise _generic_failure(mech)

    # -- raw tokens (after SaslHandshake v0) ------------------------------------------------------------
    def raw_received(self, session: "KafkaSession", data: bytes) -> bytes:
        """Consume raw size-prefixed SASL tokens from ``data``; returns the bytes that follow the final
        token (Kafka requests, for the codec) once authenticated, else b""."""
        buf = self._buf + data
        while len(buf) >= 4:
            size, = _SIZE.unpack_from(buf, 0)
            if size < 0 or size > MAX_RAW_TOKEN:
                self._buf = b""
                session._close_after_pending()
                return b""
            if len(buf) < 4 + size:
                break
            token, buf = buf[4:4 + size], buf[4 + size:]
            try:
                reply, done = self.evaluate(token)
            except _AuthFailed:
                self._buf = b""
                _close_failed(session)  # no frame to carry the error: Kafka just closes
                return b""
            session.conn.write(_SIZE.pack(len(reply)) + reply)
            if done:
                self._buf = b""
                session.sasl = None
                return buf
        self._buf = buf
        return b""


# -- handlers ------------------------------------------------------------------------------------------

@handler(M.SASL_HANDSHAKE, (0, 1))
def sasl_handshake(session: "KafkaSession", req: "Request") -> None:
    R = M.SaslHandshakeResponse
    state: SaslState | None = session.sasl
    if state is None:  # no SASL on this listener, or already authenticated
        session.respond(req, R(error_code=E.ILLEGAL_SASL_STATE, mechanisms=[]))
        return
    if state.mechanism is not None:
        session.respond(req, R(error_code=E.ILLEGAL_SASL_STATE, mechanisms=list(state.enabled)))
        session._close_after_pending()
        return
    mech = req.body.mechanism
    if mech not in state.enabled:
        session.respond(req, R(error_code=E.UNSUPPORTED_SASL_MECHANISM, mechanisms=list(state.enabled)))
        session._close_after_pending()  # Kafka throws UnsupportedSaslMechanismException after the answer
        return
    state.mechanism = mech
    state.raw = req.api_version == 0
    session.respond(req, R(error_code=0, mechanisms=list(state.enabled)))


@handler(M.SASL_AUTHENTICATE, (0, 2))
def sasl_authenticate(session: "KafkaSession", req: "Request") -> None:
    R = M.SaslAuthenticateResponse
    state: SaslState | None = session.sasl
    if state is None:
        session.respond(req, R(error_code=E.ILLEGAL_SASL_STATE,
                               error_message="SaslAuthenticate request received after successful authentication",
                               auth_bytes=b""))
        return
    if state.mechanism is None or state.raw:
        session.respond(req, R(error_code=E.ILLEGAL_SASL_STATE,
                               error_message="Unexpected SaslAuthenticate request received before SaslHandshake",
                               auth_bytes=b""))
        session._close_after_pending()
        return
    try:
        reply, done = state.evaluate(bytes(req.body.auth_bytes))
    except _AuthFailed as e:
        session.respond(req, R(error_code=E.SASL_AUTHENTICATION_FAILED, error_message=str(e), auth_bytes=b""))
        _close_failed(session)
        return
    if done:
        session.sasl = None
    session.respond(req, R(error_code=0, error_message=None, auth_bytes=reply, session_lifetime_ms=0))
