"""Identity tokens: how a tenant's site proves that an e-mail belongs to a viewer id.

Exports and purges by e-mail follow the links between an e-mail and viewer ids, so a link
hands that viewer's data to whoever asks in that e-mail's name. `POST /v1/consent` is
public and anonymous: a link written from its body alone let anyone tie a victim's viewer
id to their own address and then export or erase the victim's data (issue #14). A link is
therefore recorded only with a token the tenant's *server* signed, after it authenticated
the person:

    identity_token = "<exp>.<hex HMAC-SHA256(identity_secret,
                                 "wave-identity-v1\\n<tenant_id>\\n<viewer_id>\\n<email>\\n<exp>")>"

with `exp` in epoch seconds. The token names the viewer id too, so a person holding a
token for their own e-mail cannot attach it to somebody else's viewer id.

The per-tenant identity secret is derived from the edge's secret, the tenant id and the
tenant's `identity_version` (rotation bumps it): nothing secret sits in the database (a
dump cannot forge links), every edge sharing `WAVE_SECRET_KEY` derives the same one, and a
rotation retires the old secret at once (tokens are short-lived, issued per page view).
"""

from __future__ import annotations

import hashlib
import hmac
import time

_CONTEXT = "wave-edge identity secret"
_VERSION = "wave-identity-v1"


def identity_secret(edge_secret: bytes, tenant_id: str, version: int) -> str:
    """The tenant's current identity secret (its UTF-8 bytes are the HMAC key)."""
    mac = hmac.new(edge_secret, f"{_CONTEXT}\n{tenant_id}\n{version}".encode(), hashlib.sha256)
    return "wis_" + mac.hexdigest()


def _mac(secret: str, tenant_id: str, viewer_id: str, email: str, exp: int) -> str:
    message = f"{_VERSION}\n{tenant_id}\n{viewer_id}\n{email}\n{exp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, tenant_id: str, viewer_id: str, email: str, exp: int) -> str:
    """What the tenant's server does (any language: one HMAC-SHA256); here for tests and docs."""
    return f"{exp}.{_mac(secret, tenant_id, viewer_id, email, exp)}"


def verify(secret: str, tenant_id: str, viewer_id: str, email: str, token: str | None,
           now: float | None = None) -> bool:
    """True only for an unexpired token over exactly this tenant, viewer id and e-mail."""
    if not token:
        return False
    exp_text, _, mac = token.partition(".")
    if not exp_text.isdigit() or len(exp_text) > 12 or len(mac) != 64:
        return False
    exp = int(exp_text)
    if exp <= (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac, _mac(secret, tenant_id, viewer_id, email, exp))


class IdentityTokens:
    """The edge's view: derive a tenant's secret, check a token against it."""

    def __init__(self, edge_secret: bytes) -> None:
        self._edge_secret = edge_secret

    def secret(self, tenant_id: str, version: int) -> str:
        return identity_secret(self._edge_secret, tenant_id, version)

    def valid(self, tenant_id: str, version: int, viewer_id: str, email: str, token: str | None) -> bool:
        return verify(self.secret(tenant_id, version), tenant_id, viewer_id, email, token)
