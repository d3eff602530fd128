"""Privacy routes: purge (erasure), export (access), and the audit log, for a tenant's admin.

A purge first drains the write buffer (beacons accepted but not yet in ClickHouse are
inserted, then the drained spool files are deleted) and holds the rollup still, so no row
of the subject is on its way in while the tables are cleaned; then it checks that no spool
file names the subject. If ClickHouse cannot take the spooled rows now, the purge answers
503 and erases nothing: better a retry than a report of success with rows still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath

from analytics import validation
from analytics.dashboard_api import csv_response, scope, wants_csv
from analytics.openapi import ADMIN, body, errors
from analytics.validation import BadInput
from retention import audit, export, offboard, policy, purge, subjects, support
from retention.subjects import Subject

Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]


class RetentionSettings(msgspec.Struct):
    viewer_events_days: int
    sessions_days: int
    consents_days: int
    audit_days: int
    server_logs_days: int
    ip_mode: str


class RetentionChange(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Any subset of the settings; days from 1 to 3650."""

    viewer_events_days: Days | None = None
    sessions_days: Days | None = None
    consents_days: Days | None = None
    audit_days: Days | None = None
    server_logs_days: Days | None = None
    ip_mode: Literal["full", "truncated", "none"] | None = None


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    viewer_id: str | None = None
    email: str | None = None
    ip: str | None = None


class PurgeDone(msgspec.Struct):
    purge_id: str
    status: str
    rows_deleted: dict[str, int]


async def purge_subject(edge, tenant_id: str, subject: Subject, requested_by: str) -> purge.PurgeResult:
    """Stop accepting the subject's beacons, drain, erase everywhere, verify, record.

    The consent cache forgets the subject first, so no beacon of theirs is accepted
    between the drain and the delete (their consent rows are about to go anyway)."""
    linked = await asyncio.to_thread(subjects.with_links, edge.store, tenant_id, subject)
    for viewer_id in ([subject.value] if subject.kind == "viewer_id" else list(linked.linked_viewer_ids)):
        edge.consents.forget(tenant_id, viewer_id)
    if subject.kind == "ip":
        await edge.front_log.collect(time.time() + 2)  # the nginx front's unread hand-off files, too
        edge.sessions.forget_ip(subject.value, tenant_id)
    if not await edge.buffer.drain(timeout_s=10):
        raise BadInput("unavailable", "beacons are waiting for ClickHouse; retry the purge shortly", status=503)
    lock = edge.rollup.lock if edge.rollup is not None else contextlib.nullcontext()
    async with lock:  # no fold pass writes a view of the subject back meanwhile
        needles = [linked.value.encode(), *(v.encode() for v in linked.linked_viewer_ids)]
        if subject.kind == "ip":
            needles = [subject.value.removeprefix("::ffff:").encode()]
        if await asyncio.to_thread(edge.buffer.spool.files_containing, needles):
            raise BadInput("unavailable", "the subject's beacons are still spooled; retry shortly", status=503)
        result = await asyncio.to_thread(purge.purge, edge.store, tenant_id, subject, edge.secret, requested_by)
    return result


def _audit_change(request: Request, **change) -> None:
    request.scope.setdefault("state", {})["wave_audit"] = change


@post("/v1/privacy/purge", status_code=200, request_max_body_size=4096, responses=errors(*ADMIN), opt=body(PurgeRequest))
async def purge_route(request: Request, state: State) -> PurgeDone:
    """Erase one data subject (exactly one of viewer_id, email, ip) from every table of the
    tenant; answers with the rows deleted per table, after verifying none is left."""
    tenant = await state.edge.auth.tenant(request)
    body = validation.decode(await request.body(), PurgeRequest)
    subject = subjects.one_of(msgspec.structs.asdict(body))
    actor = request.scope["state"]["wave_actor"][1]
    try:
        result = await purge_subject(state.edge, tenant.tenant_id, subject, actor)
    except purge.PurgeIncomplete as exc:
        raise BadInput("purge_incomplete", str(exc), status=503) from None
    _audit_change(request, params={subject.kind: "sha256:" + subjects.hash_value(state.edge.secret, subject.kind,
                                                                              subject.value)},
                  after={"purge_id": result.purge_id, "rows_deleted": result.rows_deleted})
    return PurgeDone(result.purge_id, result.status, result.rows_deleted)


@get("/v1/privacy/export", responses=errors(*ADMIN))
async def export_route(request: Request, state: State) -> Response:
    """Every row about one subject (`viewer_id`, `email` or `ip`), by table: JSON, or
    `format=zip` for one CSV per table with a README of the columns."""
    tenant = await state.edge.auth.tenant(request)
    q = request.query_params
    subject = subjects.one_of({k: q.get(k) for k in subjects.KINDS})
    fmt = q.get("format", "json")
    if fmt not in ("json", "zip"):
        raise BadInput("invalid_parameter", "format must be one of: json, zip", "$.query.format")
    linked = await asyncio.to_thread(subjects.with_links, state.edge.store, tenant.tenant_id, subject)
    data = await asyncio.to_thread(export.collect, state.edge.store, tenant.tenant_id, linked)
    if fmt == "zip":
        body = await asyncio.to_thread(export.as_zip, data, linked)
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="export.zip"', "Cache-Control": "no-store"})
    return Response(export.as_json(data, linked), headers={"Cache-Control": "no-store"})


@get("/v1/audit", responses=errors(*ADMIN))
async def audit_route(request: Request, state: State) -> Response:
    """The tenant's audit records in [from, to) (default: the last 7 days), optionally by
    `actor` (a key id), `actor_kind` (admin, admin-dashboard, support, operator) or
    `action` (a substring such as `privacy`); CSV on request."""
    tenant = await state.edge.auth.tenant(request)
    where = scope(request, tenant.tenant_id)
    as_csv = wants_csv(request)
    q = request.query_params
    rows = await asyncio.to_thread(audit.query, state.edge.store, tenant.tenant_id, where.start, where.end,
                                   actor=q.get("actor"), action=q.get("action"), actor_kind=q.get("actor_kind"))
    if as_csv:
        return csv_response(rows, ["ts", "actor", "actor_kind", "action", "params", "before", "after", "ip", "status"],
                            "audit.csv")
    return Response({"records": rows, "from": where.start, "to": where.end, "generated_at": time.time()})


@get("/v1/retention", responses=errors(*ADMIN))
async def retention_show(request: Request, state: State) -> RetentionSettings:
    """How long each kind of the tenant's data is kept, and how much of an IP is stored."""
    tenant = await state.edge.auth.tenant(request)
    return RetentionSettings(**policy.settings_of(tenant))


@put("/v1/retention", request_max_body_size=4096, responses=errors(*ADMIN), opt=body(RetentionChange))
async def retention_set(request: Request, state: State) -> RetentionSettings:
    """Change any of the settings; stored rows take the new periods too."""
    tenant = await state.edge.auth.tenant(request)
    change = validation.decode(await request.body(), RetentionChange)
    changes = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not None}
    before, after = await asyncio.to_thread(policy.apply, state.edge.store, tenant, changes)
    state.edge.tenants.forget(tenant.tenant_id)
    _audit_change(request, before=before, after=after)
    return RetentionSettings(**after)


@delete("/v1/tenant", status_code=200, responses=errors(*ADMIN))
async def tenant_delete(request: Request, state: State) -> Response:
    """Offboard this tenant: every row and media file, verified. `?confirm=<tenant_id>`
    guards against a slip; the key stops working with the tenant."""
    tenant = await state.edge.auth.tenant(request)
    if request.query_params.get("confirm") != tenant.tenant_id:
        raise BadInput("invalid_parameter", "confirm with ?confirm=<your tenant id>", "$.query.confirm")
    return await _offboard(state.edge, tenant, request.scope["state"]["wave_actor"][1])


class GrantRequest(msgspec.Struct, forbid_unknown_fields=True):
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=support.MAX_GRANT_S)] = 86400


@post("/v1/support-grants", status_code=201, request_max_body_size=4096, responses=errors(*ADMIN),
      opt=body(GrantRequest, required=False))
async def grant_support(request: Request, state: State) -> Response:
    """Let the operator's support staff read this tenant's data for `duration_s` seconds."""
    tenant = await state.edge.auth.tenant(request)
    if request.scope["state"]["wave_actor"][2] == "support":
        raise BadInput("forbidden", "support keys cannot grant themselves access", status=403)
    raw = await request.body()
    body = validation.decode(raw, GrantRequest) if raw.strip() else GrantRequest()
    actor = request.scope["state"]["wave_actor"][1]
    out = await asyncio.to_thread(support.grant, state.edge.store, tenant.tenant_id, actor, body.duration_s)
    _audit_change(request, after=out)
    return Response(out, status_code=201)


@get("/v1/support-grants", responses=errors(*ADMIN))
async def list_support_grants(request: Request, state: State) -> Response:
    tenant = await state.edge.auth.tenant(request)
    return Response({"grants": await asyncio.to_thread(support.grants, state.edge.store, tenant.tenant_id)})


@delete("/v1/support-grants/{grant_id:str}", status_code=200, responses=errors(*ADMIN))
async def revoke_support(request: Request, state: State, grant_id: FromPath[str]) -> Response:
    """Revoke at once: the next support request is refused."""
    tenant = await state.edge.auth.tenant(request)
    if not await asyncio.to_thread(support.revoke, state.edge.store, tenant.tenant_id, grant_id):
        raise BadInput("not_found", f"no live grant {grant_id!r}", "$.path.grant_id", status=404)
    return Response({"grant_id": grant_id, "revoked": True})


@delete("/v1/tenants/{tenant_id:str}", status_code=200, responses=errors(*ADMIN))
async def operator_tenant_delete(request: Request, state: State, tenant_id: FromPath[str]) -> Response:
    """The operator offboards a tenant whose contract ended (operator key)."""
    actor = await state.edge.auth.operator(request)
    tenant = await state.edge.tenants.get(tenant_id)
    if tenant is None:
        raise BadInput("not_found", f"no tenant {tenant_id!r}", "$.path.tenant_id", status=404)
    return await _offboard(state.edge, tenant, actor)


async def _offboard(edge, tenant, actor: str) -> Response:
    await edge.live.end_tenant(tenant.tenant_id, "tenant deleted", "offboarded")
    if not await edge.buffer.drain(timeout_s=10):
        raise BadInput("unavailable", "beacons are waiting for ClickHouse; retry shortly", status=503)
    summary = await asyncio.to_thread(offboard.delete_tenant, edge.store, tenant.tenant_id,
                                      edge.settings.media_dir, actor)
    edge.tenants.forget(tenant.tenant_id)
    return Response(summary)


ROUTES = [purge_route, export_route, audit_route, retention_show, retention_set, tenant_delete, operator_tenant_delete,
          grant_support, list_support_grants, revoke_support]
