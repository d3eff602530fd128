"""Access requests: every row about a subject, in every registered table, as JSON or ZIP.

The ZIP holds one CSV per table and a README that says what each column means, so the
person reading it needs no knowledge of the platform.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime

from core import csv_responses
from core.store import Store
from retention import registry
from retention.subjects import Subject

# What each column means, for the export's README (columns not listed show their type).
COLUMN_NOTES = {
    "tenant_id": "the platform client (website or app) whose player or service recorded the row",
    "viewer_id": "a random identifier the player created for you when you accepted measurement",
    "email": "your email address, if the website identified you to its player",
    "email_proof": "how the website proved the email was yours (token: signed by its server)",
    "ip": "your network address as stored (possibly shortened, as the client chose)",
    "ts": "when it happened (UTC)",
    "type": "what happened in the player (start, playing, pause, stall, error, end...)",
    "view_id": "one viewing of one video",
    "video_id": "the video or live stream watched",
    "country": "country derived from your network address",
    "region": "region derived from your network address",
    "city": "city derived from your network address",
    "os": "operating system, from your browser's user agent",
    "browser": "browser, from its user agent",
    "device": "kind of device (desktop, mobile, tablet, tv)",
    "screen_w": "screen width in pixels", "screen_h": "screen height in pixels",
    "position_ms": "position in the video, in milliseconds",
    "action": "for consents: grant or withdraw; for the audit log: the call made",
    "purposes": "what the consent was given for",
    "policy_version": "the privacy policy version you consented to",
    "started_at": "when the session or view began", "ended_at": "when it ended",
    "playing_ms": "time the video was playing, in milliseconds",
    "bytes_sent": "bytes of video sent to you",
    "kind": "sessions: publisher or viewer session (WebRTC, HLS); WebRTC samples: video or audio",
    "stream_id": "the live stream watched",
    "session_id": "one viewing session (a random id)",
    "packets_sent": "media packets the platform sent you in that session so far",
    "packets_lost": "of those, how many your browser reported lost",
    "fraction_lost": "share of packets lost just before the sample (0 to 1)",
    "jitter_ms": "variation in packet arrival times your browser reported, in milliseconds",
    "rtt_ms": "round-trip time between the platform and your browser, in milliseconds",
    "received_at": "when the platform received it (UTC)",
}


def collect(store: Store, tenant_id: str, subject: Subject) -> dict[str, dict]:
    """{table: {"columns": [...], "types": [...], "rows": [[...]]}} for every registered table."""
    out: dict[str, dict] = {}
    for table in registry.REGISTRY:
        cond = subject.condition(table)
        if cond is None:
            out[table.table] = {"columns": [], "types": [], "rows": []}
            continue
        sql, params = cond
        result = store.query(
            f"SELECT * FROM {table.table} WHERE {table.tenant_column} = {{tenant:String}} AND {sql}",
            parameters={"tenant": tenant_id, **params},
        )
        out[table.table] = {
            "columns": list(result.column_names),
            "types": [t.name for t in result.column_types],
            "rows": [[_plain(v) for v in row] for row in result.result_rows],
        }
    return out


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # UUID, IPv6Address, Decimal


def as_json(data: dict[str, dict], subject: Subject) -> dict:
    return {
        "subject": {"kind": subject.kind, "linked_viewer_ids": list(subject.linked_viewer_ids)},
        "tables": {name: [dict(zip(t["columns"], row)) for row in t["rows"]] for name, t in data.items()},
    }


def as_zip(data: dict[str, dict], subject: Subject) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        readme = ["# Your data", "", f"Every row about you ({subject.kind}), one CSV file per table.", ""]
        for name, table in data.items():
            out = io.StringIO()
            writer = csv_responses.writer(out)  # the person may open it in a spreadsheet: no formulas
            writer.writeheader(table["columns"])
            for row in table["rows"]:
                writer.writerow([json.dumps(v) if isinstance(v, (list, dict)) else v for v in row])
            archive.writestr(f"{name}.csv", out.getvalue())
            readme += [f"## {name}.csv ({len(table['rows'])} rows)", ""]
            readme += [f"- `{c}`: {COLUMN_NOTES.get(c, t)}" for c, t in zip(table["columns"], table["types"])]
            readme.append("")
        archive.writestr("README.md", "\n".join(readme))
    return buffer.getvalue()
