"""SASL: SaslHandshake (key 17) and SaslAuthenticate (key 36).

Schemas as Kafka's SaslHandshake*/SaslAuthenticate*.json. SaslHandshake v0 is followed by raw
size-prefixed SASL tokens outside the Kafka framing (KIP-43, legacy); v1 by SaslAuthenticate requests
(KIP-152). SaslHandshake has no flexible version. SaslAuthenticate v1 adds the session lifetime (KIP-368),
v2 is flexible. The legacy v0 raw-token exchange (4-byte size + token, no Kafka header) is not framed by
this codec yet: a broker that advertises SaslHandshake v1 only never sees it from current clients.
"""

from __future__ import annotations

from omnibus.wire.kafka.types import BYTES, INT16, INT64, REQUEST, RESPONSE, STRING, Array, F, message

__all__ = ["SaslHandshakeRequest", "SaslHandshakeResponse", "SaslAuthenticateRequest", "SaslAuthenticateResponse"]

SaslHandshakeRequest = message("SaslHandshakeRequest", api_key=17, kind=REQUEST, versions="0-1", flexible="none",
                               fields=[
    F("mechanism", STRING),
])

SaslHandshakeResponse = message("SaslHandshakeResponse", api_key=17, kind=RESPONSE, versions="0-1", flexible="none",
                                fields=[
    F("error_code", INT16),
    F("mechanisms", Array(STRING)),
])

SaslAuthenticateRequest = message("SaslAuthenticateRequest", api_key=36, kind=REQUEST, versions="0-2", flexible="2+",
                                  fields=[
    F("auth_bytes", BYTES),
])

SaslAuthenticateResponse = message("SaslAuthenticateResponse", api_key=36, kind=RESPONSE, versions="0-2",
                                   flexible="2+", fields=[
    F("error_code", INT16),
    F("error_message", STRING, nullable="0+"),
    F("auth_bytes", BYTES),
    F("session_lifetime_ms", INT64, "1+", default=0),
])
