"""The personal-data registry: every table that holds data about a person, and how.

Purge, export, retention and tenant offboarding iterate this list, so a table that holds
personal data but is missing here would silently escape them. A test compares it with the
live schema and fails on any table with a subject-key column that is not registered.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns that identify a data subject; a table with any of them holds personal data.
SUBJECT_COLUMNS = ("viewer_id", "email", "ip")


@dataclass(frozen=True)
class PersonalTable:
    table: str
    subject_columns: tuple[str, ...]
    retention_kind: str  # which of the tenant's retention settings governs its rows
    time_column: str = "ts"  # the age of a row, for retention
    tenant_column: str = "tenant_id"


REGISTRY: tuple[PersonalTable, ...] = (
    PersonalTable("viewer_events", ("viewer_id", "email", "ip"), "viewer_events"),
    PersonalTable("consents", ("viewer_id", "email", "ip"), "consents"),
    PersonalTable("sessions", ("ip",), "sessions", "started_at"),
    # The per-view rollup (analytics/rollup.py): a viewer's views, by viewer id.
    PersonalTable("views", ("viewer_id",), "viewer_events", "started_at"),
    # Admins' and operators' addresses in the audit log.
    PersonalTable("audit_log", ("ip",), "audit_log"),
)


def by_table() -> dict[str, PersonalTable]:
    return {entry.table: entry for entry in REGISTRY}
