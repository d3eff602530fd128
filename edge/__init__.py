"""wave-edge: the service that composes streaming, analytics and retention."""

# aiortc's DTLS must see edge/streaming/openssl-webrtc.cnf: import the module that sets
# OPENSSL_CONF before anything else in the edge can load OpenSSL.
from edge.streaming import rtc as _rtc  # noqa: E402,F401
