"""Privacy routes: purge (erasure), export (access), retention settings, offboarding, the
audit log and support grants, for a tenant's admin (offboarding also for the operator).

Purge, export and offboarding are the retention service's (retention/service.py), the
same the CLI runs; these routes parse, authenticate and answer. What they need arrives as
Litestar dependencies the app registers (`tenant`, `auth`, `store`, `tenant_directory`, `retention`), never
from the edge's attributes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath

from core import validation
from core.auth import AdminAuth
from core.csv_responses import csv_response
from core.openapi import ADMIN, body, errors
from core.query_params import time_range, wants_csv
from core.store import Store
from core.tenants import MAX_K, MIN_K, ConsentMode, Tenant, TenantDirectory, save_tenant, with_consent_mode
from core.validation import BadInput
from retention import audit, export, policy, purge, receipts, ropa, subjects, support
from retention.service import RetentionService

Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
# What the handlers take: Litestar dependencies the app registers by these names
# (`tenant`, `auth`, `store`, `tenant_directory`, `retention`; edge/dependencies.py).
Auth = NamedDependency[AdminAuth]
AdminTenant = NamedDependency[Tenant]
Db = NamedDependency[Store]
Tenants = NamedDependency[TenantDirectory]
Retention = NamedDependency[RetentionService]


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


class PrivacySettings(msgspec.Struct):
    k_anonymity: int  # analytics figures never single out fewer unique viewers (analytics/suppression.py)
    # "opt-in": beacons only under a recorded consent; "anonymous": no consent asked, a
    # daily-rotating hash as the only viewer key, no IP (analytics/anonymous.py).
    consent_mode: str


class PrivacyChange(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Any subset of the settings; k_anonymity from 1 (off) to 1000. Switching
    consent_mode keeps stored data; back to opt-in, only consents given from then on count."""

    k_anonymity: Annotated[int, msgspec.Meta(ge=MIN_K, le=MAX_K)] | None = None
    consent_mode: ConsentMode | None = None


def _privacy_of(tenant: Tenant) -> dict:
    return {"k_anonymity": tenant.k_anonymity, "consent_mode": tenant.consent_mode}


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    viewer_id: str | None = None
    email: str | None = None
    ip: str | None = None


class PurgeDone(msgspec.Struct):
    purge_id: str
    status: str
    rows_deleted: dict[str, int]
    receipt: dict  # signed (retention/receipts.py); also at GET /v1/privacy/receipts/{purge_id}


def _audit_change(request: Request, **change) -> None:
    request.scope.setdefault("state", {})["wave_audit"] = change


@post("/v1/privacy/purge", status_code=200, request_max_body_size=4096, responses=errors(*ADMIN), opt=body(PurgeRequest))
async def purge_route(request: Request, retention: Retention, tenant: AdminTenant) -> PurgeDone:
    """Erase one data subject (exactly one of viewer_id, email, ip) from every table of the
    tenant; answers with the rows deleted per table, after verifying none is left."""
    body = validation.decode(await request.body(), PurgeRequest)
    subject = subjects.one_of(msgspec.structs.asdict(body))
    actor = request.scope["state"]["wave_actor"][1]
    try:
        result = await retention.purge(tenant.tenant_id, subject, actor)
    except purge.PurgeIncomplete as exc:
        raise BadInput("purge_incomplete", str(exc), status=503) from None
    _audit_change(request, params=retention.subject_params(subject),
                  after={"purge_id": result.purge_id, "rows_deleted": result.rows_deleted})
    return PurgeDone(result.purge_id, result.status, result.rows_deleted, result.receipt or {})


@get("/v1/privacy/receipts/{purge_id:str}", responses=errors(*ADMIN))
async def receipt_route(retention: Retention, tenant: AdminTenant, purge_id: FromPath[str]) -> Response:
    """The signed receipt of one of the tenant's purges, exactly as issued; verify it with
    the key at `/.well-known/wave-edge/receipt-key` (or `wave-edge receipt verify`)."""
    if not receipts.PURGE_ID.fullmatch(purge_id):
        raise BadInput("invalid_parameter", "not a purge id", "$.path.purge_id")
    found = await asyncio.to_thread(retention.receipt, tenant.tenant_id, purge_id)
    if found is None:
        raise BadInput("not_found", f"no receipt {purge_id!r} for this tenant", "$.path.purge_id", status=404)
    return Response(receipts.encode(found), media_type="application/json", headers={"Cache-Control": "no-store"})


@get("/v1/privacy/ropa", responses=errors(*ADMIN))
async def ropa_route(request: Request, retention: Retention, tenant: AdminTenant) -> Response:
    """The tenant's records of processing (GDPR Art. 30), generated from the personal-data
    registry and the tenant's settings: JSON, or `format=html` for a printable page."""
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "html"):
        raise BadInput("invalid_parameter", "format must be one of: json, html", "$.query.format")
    record = await asyncio.to_thread(retention.ropa, tenant)
    if fmt == "html":
        return Response(ropa.as_html(record), media_type="text/html; charset=utf-8", headers=ropa.HEADERS)
    return Response(record, headers={"Cache-Control": "no-store"})


@get("/.well-known/wave-edge/receipt-key", sync_to_thread=False)
def receipt_key(retention: Retention) -> Response:
    """The public key that verifies this deployment's erasure receipts (public, cacheable)."""
    return Response(retention.signer.published(), headers={"Cache-Control": "public, max-age=3600",
                                                            "Access-Control-Allow-Origin": "*"})


@get("/v1/privacy/export", responses=errors(*ADMIN))
async def export_route(request: Request, retention: Retention, tenant: AdminTenant) -> Response:
    """Every row about one subject (`viewer_id`, `email` or `ip`), by table: JSON, or
    `format=zip` for one CSV per table with a README of the columns."""
    q = request.query_params
    subject = subjects.one_of({k: q.get(k) for k in subjects.KINDS})
    fmt = q.get("format", "json")
    if fmt not in ("json", "zip"):
        raise BadInput("invalid_parameter", "format must be one of: json, zip", "$.query.format")
    linked, data = await retention.export(tenant.tenant_id, subject)
    if fmt == "zip":
        body = await asyncio.to_thread(export.as_zip, data, linked)
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="export.zip"', "Cache-Control": "no-store"})
    return Response(export.as_json(data, linked), headers={"Cache-Control": "no-store"})


@get("/v1/audit", responses=errors(*ADMIN))
async def audit_route(request: Request, store: Db, tenant: AdminTenant) -> Response:
    """The tenant's audit records in [from, to) (default: the last 7 days), optionally by
    `actor` (a key id), `actor_kind` (admin, admin-dashboard, support, operator) or
    `action` (a substring such as `privacy`); CSV on request."""
    start, end = time_range(request)
    as_csv = wants_csv(request)
    q = request.query_params
    rows = await asyncio.to_thread(audit.query, store, tenant.tenant_id, start, end,
                                   actor=q.get("actor"), action=q.get("action"), actor_kind=q.get("actor_kind"))
    if as_csv:
        return csv_response(rows, ["ts", "actor", "actor_kind", "action", "params", "before", "after", "ip", "status"],
                            "audit.csv")
    return Response({"records": rows, "from": start, "to": end, "generated_at": time.time()})


@get("/v1/retention", responses=errors(*ADMIN))
async def retention_show(request: Request, tenant: AdminTenant) -> RetentionSettings:
    """How long each kind of the tenant's data is kept, and how much of an IP is stored."""
    return RetentionSettings(**policy.settings_of(tenant))


@put("/v1/retention", request_max_body_size=4096, responses=errors(*ADMIN), opt=body(RetentionChange))
async def retention_set(request: Request, store: Db, tenant_directory: Tenants,
                        tenant: AdminTenant) -> RetentionSettings:
    """Change any of the settings; stored rows take the new periods too."""
    change = validation.decode(await request.body(), RetentionChange)
    changes = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not None}
    before, after = await asyncio.to_thread(policy.apply, store, tenant, changes)
    tenant_directory.forget(tenant.tenant_id)
    _audit_change(request, before=before, after=after)
    return RetentionSettings(**after)


@get("/v1/privacy/settings", responses=errors(*ADMIN))
async def privacy_show(request: Request, tenant: AdminTenant) -> PrivacySettings:
    """The tenant's privacy settings beside retention: the small-group threshold and the
    consent mode."""
    return PrivacySettings(**_privacy_of(tenant))


@put("/v1/privacy/settings", request_max_body_size=4096, responses=errors(*ADMIN), opt=body(PrivacyChange))
async def privacy_set(request: Request, store: Db, tenant_directory: Tenants, tenant: AdminTenant) -> PrivacySettings:
    """Change any of the settings; the next analytics answer uses them."""
    change = validation.decode(await request.body(), PrivacyChange)
    updated = tenant
    if change.k_anonymity is not None:
        updated = msgspec.structs.replace(updated, k_anonymity=change.k_anonymity)
    if change.consent_mode is not None:  # what a switch does to data and consents: with_consent_mode
        updated = with_consent_mode(updated, change.consent_mode, int(time.time() * 1000))
    if updated != tenant:
        await asyncio.to_thread(save_tenant, store, updated)
    tenant_directory.forget(tenant.tenant_id)
    _audit_change(request, before=_privacy_of(tenant), after=_privacy_of(updated))
    return PrivacySettings(**_privacy_of(updated))


@delete("/v1/tenant", status_code=200, responses=errors(*ADMIN))
async def tenant_delete(request: Request, retention: Retention, tenant: AdminTenant) -> Response:
    """Offboard this tenant: every row and media file, verified. `?confirm=<tenant_id>`
    guards against a slip; the key stops working with the tenant."""
    if request.query_params.get("confirm") != tenant.tenant_id:
        raise BadInput("invalid_parameter", "confirm with ?confirm=<your tenant id>", "$.query.confirm")
    return Response(await retention.offboard(tenant.tenant_id, request.scope["state"]["wave_actor"][1]))


class GrantRequest(msgspec.Struct, forbid_unknown_fields=True):
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=support.MAX_GRANT_S)] = 86400


@post("/v1/support-grants", status_code=201, request_max_body_size=4096, responses=errors(*ADMIN),
      opt=body(GrantRequest, required=False))
async def grant_support(request: Request, store: Db, tenant: AdminTenant) -> Response:
    """Let the operator's support staff read this tenant's data for `duration_s` seconds."""
    if request.scope["state"]["wave_actor"][2] == "support":
        raise BadInput("forbidden", "support keys cannot grant themselves access", status=403)
    raw = await request.body()
    body = validation.decode(raw, GrantRequest) if raw.strip() else GrantRequest()
    actor = request.scope["state"]["wave_actor"][1]
    out = await asyncio.to_thread(support.grant, store, tenant.tenant_id, actor, body.duration_s)
    _audit_change(request, after=out)
    return Response(out, status_code=201)


@get("/v1/support-grants", responses=errors(*ADMIN))
async def list_support_grants(request: Request, store: Db, tenant: AdminTenant) -> Response:
    return Response({"grants": await asyncio.to_thread(support.grants, store, tenant.tenant_id)})


@delete("/v1/support-grants/{grant_id:str}", status_code=200, responses=errors(*ADMIN))
async def revoke_support(request: Request, store: Db, grant_id: FromPath[str], tenant: AdminTenant) -> Response:
    """Revoke at once: the next support request is refused."""
    if not await asyncio.to_thread(support.revoke, store, tenant.tenant_id, grant_id):
        raise BadInput("not_found", f"no live grant {grant_id!r}", "$.path.grant_id", status=404)
    return Response({"grant_id": grant_id, "revoked": True})


@delete("/v1/tenants/{tenant_id:str}", status_code=200, responses=errors(*ADMIN))
async def operator_tenant_delete(request: Request, auth: Auth, tenant_directory: Tenants, retention: Retention,
                                 tenant_id: FromPath[str]) -> Response:
    """The operator offboards a tenant whose contract ended (operator key)."""
    actor = await auth.operator(request)
    tenant = await tenant_directory.get(tenant_id)
    if tenant is None:
        raise BadInput("not_found", f"no tenant {tenant_id!r}", "$.path.tenant_id", status=404)
    return Response(await retention.offboard(tenant.tenant_id, actor))


ROUTES = [purge_route, receipt_route, receipt_key, ropa_route, export_route, audit_route, retention_show, retention_set, privacy_show, privacy_set, tenant_delete, operator_tenant_delete,
          grant_support, list_support_grants, revoke_support]
