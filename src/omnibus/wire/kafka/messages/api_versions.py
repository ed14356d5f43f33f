"""ApiVersions (key 18): the first request of every modern client (KIP-35; v3 adds client software name
and version and flexible versions, KIP-511; v4 lets SupportedFeatures.MinVersion be 0, KAFKA-17011).

The response is always sent with response header v0, even in flexible versions (a client must be able to
read it before it knows what the broker supports); connection.py applies that rule. An ApiVersions request
at a version the broker does not support is answered at v0 with UNSUPPORTED_VERSION and the ApiVersions
range only (KIP-511; Kafka's ApiVersionsRequest.getErrorResponse).

Schema as Kafka's ApiVersionsRequest.json/ApiVersionsResponse.json, valid versions 0-4.
"""

from __future__ import annotations

from omnibus.wire.kafka.types import BOOL, INT16, INT32, INT64, REQUEST, RESPONSE, STRING, Array, F, Struct, message

__all__ = ["API_KEY", "ApiVersionsRequest", "ApiVersionsResponse"]

API_KEY = 18

ApiVersionsRequest = message("ApiVersionsRequest", api_key=API_KEY, kind=REQUEST, versions="0-4", flexible="3+",
                             fields=[
    F("client_software_name", STRING, "3+"),
    F("client_software_version", STRING, "3+"),
])

ApiVersionsResponse = message("ApiVersionsResponse", api_key=API_KEY, kind=RESPONSE, versions="0-4", flexible="3+",
                              fields=[
    F("error_code", INT16),
    F("api_keys", Array(Struct("ApiVersion", [
        F("api_key", INT16),
        F("min_version", INT16),
        F("max_version", INT16),
    ]))),
    F("throttle_time_ms", INT32, "1+"),
    F("supported_features", Array(Struct("SupportedFeatureKey", [
        F("name", STRING, "3+"),
        F("min_version", INT16, "3+"),
        F("max_version", INT16, "3+"),
    ])), "3+", tag=0),
    F("finalized_features_epoch", INT64, "3+", tag=1, default=-1),
    F("finalized_features", Array(Struct("FinalizedFeatureKey", [
        F("name", STRING, "3+"),
        F("max_version_level", INT16, "3+"),
        F("min_version_level", INT16, "3+"),
    ])), "3+", tag=2),
    F("zk_migration_ready", BOOL, "3+", tag=3, default=False),
])
