"""The personal-data registry: every table that holds data about a person, and how.

Purge, export, retention (settings, TTL rewrites, the enforcer), the links from an e-mail
to viewer ids and tenant offboarding all iterate this list, so a new table with personal
data is one entry here plus its migration, and a table missing here would silently escape
them. A test compares the list with the live schema and fails on any table with a
subject-key column that is not registered.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns that identify a data subject; a table with any of them holds personal data.
SUBJECT_COLUMNS = ("viewer_id", "email", "ip")


@dataclass(frozen=True)
class PersonalTable:
    table: str
    subject_columns: tuple[str, ...]
    # The tenant's retention setting that governs its rows (a name of `policy.KINDS`).
    retention_kind: str
    time_column: str = "ts"  # the age of a row, for retention
    tenant_column: str = "tenant_id"
    # Rows carry `retention_days` (and a TTL on it): a changed setting rewrites that column.
    row_ttl: bool = True
    # SQL: rows past their period that must still stay (parameters `t`, the tenant, and
    # `cutoff`, the period's start); empty: none.
    kept_past_period: str = ""
    # SQL: when a row proves that its `email` belongs to its `viewer_id`, so that an
    # e-mail subject reaches that viewer id's data everywhere; empty: never (anyone may
    # write any e-mail into a public request, so an unproven one links nobody).
    links_email_to_viewer: str = ""
    # For the records of processing (retention/ropa.py, GDPR Art. 30), said here so they
    # cannot drift from what the code stores: whose data, which categories, why, and on
    # which legal basis (`consent_mode`: consent for opt-in tenants, legitimate interest
    # for anonymous ones; or a fixed basis).
    data_subjects: str = ""
    categories: tuple[str, ...] = ()
    purpose: str = ""
    legal_basis: str = ""


REGISTRY: tuple[PersonalTable, ...] = (
    PersonalTable("viewer_events", ("viewer_id", "email", "ip"), "viewer_events_days",
                  data_subjects="viewers",
                  categories=("pseudonymous viewer id", "IP address (per the tenant's IP mode)",
                              "country, region and city (from the IP address)", "OS, browser and device (user agent)",
                              "screen and player size", "playback events and times"),
                  purpose="playback quality and audience analytics for the tenant (QoE, views, watch time)",
                  legal_basis="consent_mode"),
    # Consents prove the consent behind stored data: a viewer's latest one stays past its
    # period while the viewer still has beacons within it. Only an e-mail the tenant's
    # server vouched for (an identity token, analytics/identity.py) links viewer ids.
    PersonalTable("consents", ("viewer_id", "email", "ip"), "consents_days", row_ttl=False,
                  kept_past_period="(viewer_id, ts) IN (SELECT viewer_id, max(ts) FROM consents"
                                   " WHERE tenant_id = {t:String} GROUP BY viewer_id)"
                                   " AND viewer_id IN (SELECT DISTINCT viewer_id FROM viewer_events"
                                   " WHERE tenant_id = {t:String} AND ts >= {cutoff:DateTime64(3)})",
                  links_email_to_viewer="email_proof != ''",
                  data_subjects="viewers",
                  categories=("pseudonymous viewer id", "e-mail (identified viewers, proven by the tenant)",
                              "IP address (per the tenant's IP mode)", "purposes, policy version, grant and withdrawal"),
                  purpose="proof of the consent behind stored data, and its withdrawal (Art. 7(1))",
                  legal_basis="legal obligation (Art. 6(1)(c): demonstrating consent, Art. 7(1))"),
    PersonalTable("sessions", ("ip",), "sessions_days", "started_at",
                  data_subjects="publishers and viewers",
                  categories=("IP address (per the tenant's IP mode)", "stream or video, endpoint, start and end"),
                  purpose="history of successful publisher and viewer sessions: operation, abuse handling, billing",
                  legal_basis="legitimate interest (Art. 6(1)(f): running and securing the service)"),
    # The per-view rollup (analytics/rollup.py): a viewer's views, by viewer id.
    PersonalTable("views", ("viewer_id",), "viewer_events_days", "started_at",
                  data_subjects="viewers",
                  categories=("pseudonymous viewer id", "per-view startup, playing, rebuffering and seeking times",
                              "country, OS, browser, device, screen"),
                  purpose="the tenant's analytics dashboards (a rollup of viewer_events)",
                  legal_basis="consent_mode"),
    # Dense numbers for the dashboard cube's viewer bitmaps (analytics/ordinals.py); the
    # TTL is a day past `last_seen`, renewed daily while the viewer watches.
    PersonalTable("viewer_ordinals", ("viewer_id",), "viewer_events_days", "last_seen",
                  # Kept while the viewer has a view within the period: a new number for a
                  # returning viewer would count them twice beside their older views.
                  kept_past_period="viewer_id IN (SELECT viewer_id FROM views WHERE tenant_id = {t:String}"
                                   " AND started_at >= {cutoff:DateTime64(3)})",
                  data_subjects="viewers",
                  categories=("pseudonymous viewer id", "a number standing for it in the dashboards' counts",
                              "when it was first and last seen"),
                  purpose="exact unique-viewer counts on the tenant's dashboards (a rollup of viewer_events)",
                  legal_basis="consent_mode"),
    # WHEP viewers' QoE as the edge measured it (analytics/webrtc_qoe.py): operational data
    # with a random session id, personal only on rows whose viewer presented a consented
    # viewer id (then `viewer_id` is filled); kept as long as the tenant keeps beacons.
    PersonalTable("webrtc_samples", ("viewer_id",), "viewer_events_days",
                  data_subjects="viewers watching live streams over WebRTC (linked only with their consent)",
                  categories=("pseudonymous viewer id (consented viewers only)",
                              "per WebRTC session: stream, times, packets and bytes sent, packets lost,"
                              " jitter, round-trip time"),
                  purpose="delivery quality of live streams for the tenant (server-side WebRTC QoE)",
                  legal_basis="consent_mode"),
    # Admins' and operators' addresses in the audit log.
    PersonalTable("audit_log", ("ip",), "audit_days",
                  data_subjects="tenant admins, support staff and operators",
                  categories=("key id (never the key)", "IP address", "action, parameters (subjects hashed), outcome"),
                  purpose="accountability: who accessed or changed what, and when (Art. 5(2), 32)",
                  legal_basis="legal obligation and legitimate interest (Art. 6(1)(c), (f): security and"
                              " accountability)"),
)


@dataclass(frozen=True)
class SupportingTable:
    """A table without any subject column that still serves the processing of personal
    data, so the records of processing name it (purge and export have nothing to find in
    it: no row is about a person)."""

    table: str
    purpose: str
    retention: str
    measures: tuple[str, ...] = ()
    # False: no backup may hold it (its rows must be gone when their day is, and a backup
    # lives for weeks); a restore leaves the current rows as they are.
    backed_up: bool = True


SUPPORTING: tuple[SupportingTable, ...] = (
    # analytics/anonymous.py: the salt of the day that anonymous viewer keys are hashed with.
    SupportingTable("anonymous_salts",
                    purpose="anonymous mode: a random salt per day, hashed with a viewer's address and browser into"
                            " that day's only viewer key, so views are counted without consent and without any"
                            " stable id",
                    retention="the current day only (UTC): the partition of a past day is dropped, files included,"
                              " within a minute after midnight, and the edge forgets it; a 2-day TTL as a backstop",
                    measures=("never derived from anything, never logged (log_queries = 0), never sent anywhere,"
                              " never in a backup",
                              "once dropped, a past day's keys cannot be recomputed or linked to a person"),
                    backed_up=False),
    # analytics/cube.py: per day and dimension value, the sums of the tenant's views and a
    # bitmap of the numbers (viewer_ordinals) of the viewers behind them.
    SupportingTable("dashboard_cube",
                    purpose="the tenant's dashboards: per day and dimension value (country, video, hour, ...), the"
                            " views' sums, startup times and a bitmap of the viewers' numbers, merged instead of"
                            " reading every view",
                    retention="as the views it sums (a row expires with the shortest retention among them)",
                    measures=("no viewer id: a viewer is only a number, which only viewer_ordinals links to an id",
                              "an erasure drops every day that held the subject's views; each is rebuilt from the"
                              " remaining views, and a restore re-applies it (retention/purge.py)")),
)
NOT_BACKED_UP: tuple[str, ...] = tuple(t.table for t in SUPPORTING if not t.backed_up)


def by_table() -> dict[str, PersonalTable]:
    return {entry.table: entry for entry in REGISTRY}
