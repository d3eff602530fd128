"""Records of processing (GDPR Art. 30), generated, never written by hand.

Every entry comes from the personal-data registry (retention/registry.py: the table, its
subject columns, categories, purpose, legal basis) and the tenant's own settings
(retention actually configured, IP mode, consent mode, region), plus the deployment's
backup schedule; so the record describes what the code stores, and a registered table
cannot be missing from it (tests/retention/test_ropa.py). The same record is served as
JSON (`GET /v1/privacy/ropa`, `wave-edge ropa --tenant T`) and as a printable HTML page
(`?format=html`) in which every string is escaped.
"""

from __future__ import annotations

import html
import time

from core.tenants import Tenant
from retention import backups, policy, receipts, registry

IP_MODES = {
    "full": "stored in full",
    "truncated": "stored truncated to /24 (IPv4) or /48 (IPv6): no longer points to one person",
    "none": "not stored",
}

MEASURES = (
    "Consent recorded before any telemetry is sent (opt-in tenants); withdrawal honoured on the next beacon",
    "IP addresses stored as the tenant's IP mode says (full, truncated to /24 or /48, or not at all)",
    "Retention per kind of data: a row TTL on every row plus an hourly enforcer that deletes physically",
    "Erasure by subject: physical deletion verified with the deleted-rows mask off; Ed25519-signed receipts",
    "Backups in tiers expire on schedule; a restore replays every erasure made since the backup",
    "Admin keys stored as SHA-256 hashes only; dashboard sessions in HttpOnly, SameSite=Strict cookies",
    "Support staff read a tenant's data only under a live grant the tenant gives and can revoke",
    "Audit log of every admin, support and CLI action, with data subjects hashed",
    "No access log; no personal data in log lines; nothing is sent to third parties",
    "One region per edge and store: a request for another region's tenant is redirected, never stored here",
    "Rate limits, request-size and slow-client guards on every public and admin route",
)
# For tenants in anonymous mode (analytics/anonymous.py), instead of the consent measure.
ANONYMOUS_MEASURES = (
    "Anonymous mode: no consent asked and nothing stored on the viewer's device (no cookie, no local storage)",
    "Anonymous mode: the only viewer key is a hash of address and browser with a random salt of the day; the salt"
    " is deleted after the day, so keys change daily and cannot be linked across days or to a person",
    "Anonymous mode: no IP address (not even truncated), no region, city, OS or browser stored: country and device"
    " class only; unique viewers are counted per day",
)


def legal_basis(entry: registry.PersonalTable, consent_mode: str) -> str:
    if entry.legal_basis == "consent_mode":
        if consent_mode == "anonymous":
            return ("legitimate interest (Art. 6(1)(f)): anonymous mode, no stable viewer id or IP address stored")
        return "consent (Art. 6(1)(a)), recorded in the consent ledger before any beacon is stored"
    return entry.legal_basis or "(not described in the registry)"


def build(tenant: Tenant, *, backup_every_s: float, embedded: bool, now: float | None = None) -> dict:
    """The tenant's record of processing, one entry per registered table."""
    now = time.time() if now is None else now
    consent_mode = tenant.consent_mode
    settings = policy.settings_of(tenant)
    entries = []
    for entry in registry.REGISTRY:
        days = settings.get(entry.retention_kind)
        measures = ["rows carry their retention and a TTL on it" if entry.row_ttl
                    else "deleted by the hourly retention enforcer"]
        if "ip" in entry.subject_columns:
            measures.append("IP address " + IP_MODES.get(tenant.ip_mode, tenant.ip_mode))
        if entry.kept_past_period:
            measures.append("a row still proving the consent behind stored data stays past its period")
        entries.append({
            "table": entry.table,
            "data_subjects": entry.data_subjects or "(not described in the registry)",
            "categories": list(entry.categories) or ["(not described in the registry)"],
            "subject_columns": list(entry.subject_columns),
            "purpose": entry.purpose or "(not described in the registry)",
            "legal_basis": legal_basis(entry, consent_mode),
            "retention": {"setting": entry.retention_kind, "days": days},
            "recipients": [],
            "third_country_transfers": "none",
            "region": tenant.region,
            "technical_measures": measures,
        })
    return {
        "record": "records of processing activities (GDPR Art. 30(2)): the processor's record for this controller",
        "controller": {"tenant_id": tenant.tenant_id, "name": tenant.name},
        "processor": "this wave-edge deployment",
        "generated_at": receipts.iso_ms(now),
        "region": tenant.region,
        "consent_mode": consent_mode,
        "ip_mode": tenant.ip_mode,
        "storage": "ClickHouse, " + ("embedded (chDB) on this edge" if embedded else "server of this region"),
        "recipients": [],
        "backups": {
            "schedule": (f"every {backup_every_s / 3600:g} h" if backup_every_s > 0 else "by the operator (cron)"),
            "tiers": {tier: f"kept {seconds // 86400} day(s)" for tier, seconds in backups.TIERS.items()},
            "erasures": "a restore replays every erasure (purge ledger) made since the backup",
        },
        "technical_measures": list(ANONYMOUS_MEASURES if consent_mode == "anonymous" else ()) + list(MEASURES),
        "entries": entries,
        "supporting_tables": [{"table": t.table, "purpose": t.purpose, "retention": t.retention,
                               "personal_data": "none (no row is about a person)", "technical_measures": list(t.measures)}
                              for t in registry.SUPPORTING],
    }


CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; frame-ancestors 'none'; base-uri 'none';"
       " form-action 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE = ("body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;width:100%}"
          "th,td{border:1px solid #999;padding:.3em .5em;vertical-align:top;text-align:left}"
          "th{background:#eee}@media print{body{margin:0}}")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _list(items) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>" if items else "none"


def as_html(record: dict) -> str:
    """A printable page: no script, every string escaped."""
    c = record["controller"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in (
            f"<code>{_e(e['table'])}</code>", _e(e["data_subjects"]), _list(e["categories"]), _e(e["purpose"]),
            _e(e["legal_basis"]), _e(f"{e['retention']['days']} days ({e['retention']['setting']})"),
            _list(e["recipients"]), _e(e["region"]), _list(e["technical_measures"]))) + "</tr>"
        for e in record["entries"])
    b = record["backups"]
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Records of processing: {_e(c['name'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Records of processing</h1><p>{_e(record['record'])}</p>"
        f"<p>Controller: {_e(c['name'])} (<code>{_e(c['tenant_id'])}</code>). Processor: {_e(record['processor'])}."
        f" Region: {_e(record['region'])}. Consent mode: {_e(record['consent_mode'])}."
        f" IP mode: {_e(record['ip_mode'])}. Storage: {_e(record['storage'])}. Recipients: none."
        f" Generated {_e(record['generated_at'])}.</p>"
        "<table><thead><tr><th>Table</th><th>Data subjects</th><th>Categories of data</th><th>Purpose</th>"
        "<th>Legal basis</th><th>Retention</th><th>Recipients</th><th>Region</th><th>Measures</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<h2>Backups</h2><p>{_e(b['schedule'])}; "
        + "; ".join(f"{_e(t)}: {_e(v)}" for t, v in b["tiers"].items())
        + f". {_e(b['erasures'])}.</p>"
        f"<h2>Technical and organisational measures</h2>{_list(record['technical_measures'])}"
        "<h2>Supporting tables (no personal data in them)</h2>"
        + _list([f"{t['table']}: {t['purpose']}; kept {t['retention']}" for t in record["supporting_tables"]])
        + "</body></html>"
    )
