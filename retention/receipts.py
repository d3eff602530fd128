"""Erasure receipts: a signed statement of what a purge (or an offboarding) erased.

A receipt names the subject only by a hash salted per tenant (from the edge's secret), so
it links to nobody: after the purge no row names the subject any more, and only someone
who already knows the identifier *and* holds the deployment's secret can confirm a guess.
Receipts are kept (table `receipts`, migration 14) as proof records, not as personal
data, which is why that table has no subject column and is not in the registry; like the
purge ledger it survives restores and offboarding.

Signature: Ed25519 (the `cryptography` package) over the canonical JSON of every field
but `signature` (keys sorted, no spaces, ASCII). The signing key is derived from the
edge's secret (`WAVE_SECRET_KEY` or `$WAVE_DATA_DIR/secret.key`), so the server and the
CLI with the server stopped, and every edge sharing that secret, sign with one key, and
no second key file has to be kept safe; its public half is published at
`/.well-known/wave-edge/receipt-key`.

Verification is strict on bytes: a receipt file must be the receipt as the edge wrote it
or one of the usual JSON layouts of it (compact, Python's `json.dumps`, 2- or 4-space
indent as `jq .` prints); anything else, whitespace included, counts as a change. So
changing any byte of a receipt makes it fail, not only bytes that change a value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.store import Store

VERSION = 1
ALGORITHM = "Ed25519"
PURGE_ID = re.compile(r"(pg_[0-9a-f]{16}|tenant-[A-Za-z0-9_.:-]{1,128})")


def canonical(fields: dict) -> bytes:
    """The bytes signed: every field but `signature`, keys sorted, no spaces, ASCII."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the one spelling `_b64` writes (Python's decoder would skip foreign
    characters and ignore the last character's unused bits: a changed byte unnoticed)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class ReceiptSigner:
    private: Ed25519PrivateKey

    @classmethod
    def from_secret(cls, secret: bytes) -> "ReceiptSigner":
        """The deployment's signing key, derived from the edge's secret (never stored)."""
        seed = hmac.new(secret, b"wave-edge receipt signing key v1", hashlib.sha256).digest()
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, fields: dict) -> dict:
        """The receipt: `fields` plus `algorithm`, `key_id` and the `signature`."""
        body = {**fields, "algorithm": ALGORITHM, "key_id": key_id(self.public)}
        body.pop("signature", None)
        return {**body, "signature": _b64(self.private.sign(canonical(body)))}

    def published(self) -> dict:
        """What `/.well-known/wave-edge/receipt-key` serves (and `--public-key` reads)."""
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pem = self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"algorithm": ALGORITHM, "key_id": key_id(self.public), "public_key": _b64(raw),
                "public_key_pem": pem.decode()}


def public_key_from(text: str) -> Ed25519PublicKey:
    """A verifying key from a PEM file or the well-known JSON document."""
    text = text.strip()
    if text.startswith("{"):
        doc = json.loads(text)
        return Ed25519PublicKey.from_public_bytes(_unb64(doc["public_key"]))
    key = serialization.load_pem_public_key(text.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class Invalid(ValueError):
    """The receipt is malformed, altered, or signed by another key."""


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Invalid("duplicate keys")
    return dict(pairs)


def _layouts(obj: dict) -> set[bytes]:
    out = set()
    for ascii_only in (True, False):
        for kw in ({"separators": (",", ":")}, {}, {"indent": 1}, {"indent": 2}, {"indent": 4}, {"indent": "\t"}):
            text = json.dumps(obj, ensure_ascii=ascii_only, **kw).encode()
            out.update((text, text + b"\n"))
    return out


def verify(data: bytes, public: Ed25519PublicKey) -> dict:
    """The receipt in `data` if it is intact and signed by `public`; else `Invalid`."""
    try:
        receipt = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"not a JSON receipt: {exc}") from None
    if not isinstance(receipt, dict) or not isinstance(receipt.get("signature"), str):
        raise Invalid("no signature")
    if data not in _layouts(receipt):
        raise Invalid("the file is not laid out as any writer of this receipt lays it out: it was changed")
    if receipt.get("key_id") != key_id(public):
        raise Invalid("signed with another key")
    try:
        public.verify(_unb64(receipt["signature"]), canonical(receipt))
    except (InvalidSignature, ValueError, TypeError):
        raise Invalid("the signature does not match the receipt") from None
    return receipt


def encode(receipt: dict) -> bytes:
    """How the edge writes a receipt: canonical, signature included."""
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def tenant_salt(secret: bytes, tenant_id: str) -> str:
    """Receipts hash subjects with a salt of their tenant: the same person in two tenants
    has unrelated hashes, so receipts of different tenants cannot be joined."""
    return hmac.new(secret, f"wave-edge receipt salt\n{tenant_id}".encode(), hashlib.sha256).hexdigest()


def subject_hash(secret: bytes, tenant_id: str, kind: str, value: str) -> str:
    return "sha256:" + hashlib.sha256(f"{tenant_salt(secret, tenant_id)}{kind}:{value}".encode()).hexdigest()


def save(store: Store, receipt: dict, issued_at: float) -> None:
    store.insert_json_lines("receipts", json.dumps({
        "purge_id": receipt["purge_id"], "tenant_id": receipt["tenant_id"],
        "issued_at": issued_at, "receipt": encode(receipt).decode(),
    }).encode() + b"\n")


def load(store: Store, tenant_id: str, purge_id: str) -> dict | None:
    rows = store.rows("SELECT receipt FROM receipts WHERE tenant_id = {t:String} AND purge_id = {p:String} LIMIT 1",
                      {"t": tenant_id, "p": purge_id})
    return json.loads(rows[0][0]) if rows else None


def issued_since(store: Store, since: float) -> list[str]:
    """Purge ids of the receipts issued at or after `since` (what a restore replays)."""
    return [r[0] for r in store.rows("SELECT purge_id FROM receipts WHERE issued_at >= {s:DateTime64(3)}"
                                     " ORDER BY issued_at, purge_id", {"s": float(since)})]


def backups_status(manifests: list, done_at: float) -> dict:
    """Which backups still hold the erased rows, and when the last of them expires: each
    restore of one of them replays this erasure (the purge ledger) before serving."""
    holding = [m for m in manifests if m.created_at <= done_at and m.expires_at > done_at]
    return {
        "status": "pending_expiry" if holding else "none_hold_the_data",
        "backups_holding_data": [m.backup_id for m in holding],
        "all_erased_by": iso_ms(max((m.expires_at for m in holding), default=done_at)),
        "restore_replays_this_erasure": True,
    }


def iso_ms(ts: float) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fields(*, kind: str, purge_id: str, tenant_id: str, region: str, subject: dict, requested_by: str,
           requested_at: float, completed_at: float, found: dict[str, int], after: dict[str, int],
           spool: dict, backups: dict) -> dict:
    """A receipt's fields before signing (every number an integer, every time a string:
    no two spellings of one value)."""
    return {
        "receipt_version": VERSION, "type": kind, "purge_id": purge_id, "tenant_id": tenant_id, "region": region,
        "subject": subject, "requested_by": requested_by,
        "requested_at": iso_ms(requested_at), "completed_at": iso_ms(completed_at),
        "tables": {t: {"rows_found": int(found.get(t, 0)), "rows_after_physical": int(after.get(t, 0))}
                   for t in sorted(set(found) | set(after))},
        "spool": spool, "backups": backups,
        "replay": "recorded in the purge ledger: a restore of any older backup erases this again",
    }
