"""The words of the exporter-toolkit's web configuration, each vocabulary declared once:
its keys, its client auth policies, TLS versions, Go's cipher and curve names with OpenSSL's
for each, and the headers a file may set (web_config.py reads the file with them).
"""

from __future__ import annotations

import ssl
from enum import StrEnum


class ClientAuth(StrEnum):
    """`client_auth_type`: Go's crypto/tls policies, by the toolkit's names."""

    NONE = "NoClientCert"
    REQUEST = "RequestClientCert"
    REQUIRE_ANY = "RequireAnyClientCert"
    REQUIRE_ANY_OLD = "RequireClientCert"  # the toolkit's older name for RequireAnyClientCert
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"


# Policies Go has and Python's ssl has not: OpenSSL, through Python, cannot ask for a
# client certificate and then accept it unverified.
UNVERIFIED = {
    ClientAuth.REQUEST: "use NoClientCert, or VerifyClientCertIfGiven with client_ca_file",
    ClientAuth.REQUIRE_ANY: "use RequireAndVerifyClientCert with client_ca_file",
    ClientAuth.REQUIRE_ANY_OLD: "use RequireAndVerifyClientCert with client_ca_file",
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names (tls.CipherSuites(), the ones the toolkit accepts) -> OpenSSL's, up to TLS 1.2.
CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3's suites: Go accepts their names and ignores them (they cannot be chosen); so do we.
TLS13_CIPHERS = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                           "TLS_CHACHA20_POLY1305_SHA256"})  # fmt: skip
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}  # fmt: skip
# The headers the toolkit lets a file set, and the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
KEYS = {
    "": {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"},
    "tls_server_config": {
        "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
        "client_ca_file", "cipher_suites", "curve_preferences", "min_version", "max_version",
        "prefer_server_cipher_suites", "client_allowed_sans",
    },
    "http_server_config": {"http2", "headers"},
    "rate_limit": {"interval", "burst"},
}  # fmt: skip
