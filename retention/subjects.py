"""Data subjects: who a privacy request is about, and how each table names them.

A subject is a viewer id, an email or an IP address. An email also reaches every viewer id
it was *provably* linked to: a consent row whose email the tenant's server vouched for with
an identity token (`email_proof`, analytics/identity.py; the registry's
`links_email_to_viewer` says which rows prove a link). Anyone can write an email into a
public request, so an unproven email on a row (beacons, or consents from before proofs)
matches that row itself but never leads to the rest of a viewer id's data. IP addresses
are compared in the form tables store them (IPv6, IPv4 mapped); rows stored with a
truncated address no longer point to one person and are not matched.

Subjects are written down only as salted hashes (the purge ledger, the audit log): the
salt is derived from the edge's secret, and the same hash can be computed in SQL over a
column, which is how a restore finds the rows of subjects erased after its backup.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from core.store import Store
from core.validation import BadInput
from retention import registry
from retention.registry import PersonalTable

Kind = Literal["viewer_id", "email", "ip"]
KINDS: tuple[str, ...] = ("viewer_id", "email", "ip")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Subject:
    kind: Kind
    value: str
    linked_viewer_ids: tuple[str, ...] = field(default=())

    def condition(self, table: PersonalTable) -> tuple[str, dict] | None:
        """SQL matching this subject's rows in `table` (None: the table cannot name them)."""
        parts, params = [], {}
        if self.kind in table.subject_columns:
            if self.kind == "ip":
                parts.append("ip = toIPv6({subject:String})")
            else:
                parts.append(f"{self.kind} = {{subject:String}}")
            params["subject"] = self.value
        if self.linked_viewer_ids and "viewer_id" in table.subject_columns:
            parts.append("viewer_id IN {linked:Array(String)}")
            params["linked"] = list(self.linked_viewer_ids)
        if not parts:
            return None
        return "(" + " OR ".join(parts) + ")", params


def parse(kind: str, raw: str) -> Subject:
    """A subject from a request; a value that cannot name anyone is a 400."""
    raw = (raw or "").strip()
    if kind == "viewer_id":
        if not _ID.match(raw):
            raise BadInput("invalid_field", "viewer_id must be 1-128 letters, digits or ._:-", "$.viewer_id")
        return Subject("viewer_id", raw)
    if kind == "email":
        if not _EMAIL.match(raw) or len(raw) > 254:
            raise BadInput("invalid_field", "email is not an email address", "$.email")
        return Subject("email", raw)
    if kind == "ip":
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            raise BadInput("invalid_field", "ip is not an IPv4 or IPv6 address", "$.ip") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        # Written as ClickHouse writes an IPv6 column (IPv4 as mapped), so a hash made here
        # equals the one SQL makes of the stored value.
        return Subject("ip", f"::ffff:{address}" if address.version == 4 else str(address))
    raise BadInput("invalid_field", f"the subject must be one of: {', '.join(KINDS)}", "$")


def one_of(values: dict[str, str | None]) -> Subject:
    """Exactly one of viewer_id, email, ip."""
    given = {k: v for k, v in values.items() if k in KINDS and v not in (None, "")}
    if len(given) != 1:
        raise BadInput("invalid_field", "give exactly one of viewer_id, email or ip", "$")
    (kind, value), = given.items()
    return parse(kind, value)


def with_links(store: Store, tenant_id: str, subject: Subject) -> Subject:
    """An email subject with every viewer id provably linked to that email in this tenant,
    by the registry's tables whose rows can prove such a link (`links_email_to_viewer`)."""
    if subject.kind != "email":
        return subject
    linked: set[str] = set()
    for table in registry.REGISTRY:
        if table.links_email_to_viewer:
            rows = store.rows(
                f"SELECT DISTINCT viewer_id FROM {table.table} WHERE {table.tenant_column} = {{t:String}}"
                f" AND email = {{e:String}} AND ({table.links_email_to_viewer}) AND viewer_id != ''",
                {"t": tenant_id, "e": subject.value},
            )
            linked.update(r[0] for r in rows)
    return Subject(subject.kind, subject.value, tuple(sorted(linked)))


def salt(secret: bytes) -> str:
    return hmac.new(secret, b"wave-edge subject hashes", hashlib.sha256).hexdigest()


def hash_value(secret: bytes, kind: str, value: str) -> str:
    return hashlib.sha256(f"{salt(secret)}{kind}:{value}".encode()).hexdigest()


def hashes(subject: Subject, secret: bytes) -> list[str]:
    """The subject's salted hashes, its linked viewer ids' included."""
    keyed = [(subject.kind, subject.value), *(("viewer_id", v) for v in subject.linked_viewer_ids)]
    return [hash_value(secret, kind, value) for kind, value in keyed]


def hash_sql(column: str) -> str:
    """SQL computing `hashes()` over a column (for IPs, of its stored IPv6 text)."""
    value = f"toString({column})" if column == "ip" else column
    return f"lower(hex(SHA256(concat({{salt:String}}, '{column}:', {value}))))"
