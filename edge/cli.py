"""`wave-edge`: serve, and the offline administration commands.

Offline commands open the store themselves, so they work with the server stopped (an
embedded chDB path belongs to one process at a time; against a ClickHouse server they
work while edges run, too). Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core import migrations
from core.store import open_store
from core.tenants import CONSENT_MODES, IP_MODES, TenantError, create_tenant, parse_live_ladder
from edge.settings import from_env


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from edge import logs, serving
    from edge.app import create_app

    settings = from_env()
    logs.configure()
    host = args.host or settings.host
    port = args.port or settings.port
    serving.raise_open_files_limit()
    uvicorn.Server(serving.config(create_app(settings), settings, host, port)).run()
    return 0


def _elsewhere(settings, tenant_id: str | None, region: str | None = None) -> bool:
    """A tenant of another region is none of this deployment's business: its data is kept,
    purged, exported and offboarded only in its own region. Says so on stderr."""
    from core.regions import region_of

    region = region or (region_of(tenant_id) if tenant_id else None)
    if region is None or region == settings.region:
        return False
    where = settings.regions.get(region)
    print(json.dumps({"error": "wrong_region", "detail": (
        f"this deployment serves region {settings.region!r} only (WAVE_REGION); region {region!r} is served "
        + (f"at {where}" if where else "by another deployment") + ": run the command there")}), file=sys.stderr)
    return True


def _tenant_create(args: argparse.Namespace) -> int:
    settings = from_env()
    if _elsewhere(settings, None, args.region):
        return 2
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        tenant, key = create_tenant(
            store,
            args.name,
            region=args.region or settings.region,
            retention_days=args.retention_days,
            ip_mode=args.ip_mode,
            allowed_origins=tuple(args.allowed_origin or ()),
            drop_bots=not args.keep_bots,
            consent_text=args.consent_text,
            policy_version=args.policy_version,
            identified_viewers=args.identified_viewers,
            publisher_takeover=args.publisher_takeover,
            k_anonymity=args.k_anonymity,
            consent_mode=args.consent_mode,
            live_ladder=parse_live_ladder(args.live_ladder),
        )
        from retention import audit

        audit.write(store, audit.row(tenant.tenant_id, "cli", "operator", "tenant create",
                                     after={"name": tenant.name, "region": tenant.region,
                                            "consent_mode": tenant.consent_mode}))
    except TenantError as exc:
        print(json.dumps({"error": "invalid_tenant", "detail": str(exc)}), file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps({"tenant_id": tenant.tenant_id, "admin_key": key}))
    return 0


def _drain_spool(settings, store) -> None:
    """What the stopped edge spooled, into ClickHouse (edge/retention_hooks.py)."""
    import asyncio

    from edge.retention_hooks import drain_spool

    asyncio.run(drain_spool(settings, store))


def _offline_retention(settings, store):
    """The retention service the API runs, with the server stopped (edge/retention_hooks.py)."""
    from edge.retention_hooks import OfflineHooks
    from edge.streaming.tokens import load_secret
    from retention import backups
    from retention.service import RetentionService

    return RetentionService(store, load_secret(settings.data_dir, settings.secret_key), OfflineHooks(settings, store),
                            backups.backups_dir(settings.data_dir, settings.clickhouse_url), settings.backup_every_s)


def _subject_of(args: argparse.Namespace):
    from retention import subjects

    return subjects.one_of({"viewer_id": args.viewer_id, "email": args.email, "ip": args.ip})


def _privacy(args: argparse.Namespace) -> int:
    """`privacy purge|export`: the same work as the API (the retention service), for an
    operator, audited as `cli`."""
    import asyncio

    from core.validation import BadInput
    from retention import audit, export

    settings = from_env()
    if _elsewhere(settings, args.tenant):
        return 2
    try:
        subject = _subject_of(args)
    except BadInput as exc:
        print(json.dumps({"error": exc.error, "detail": exc.detail()}), file=sys.stderr)
        return 2
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        service = _offline_retention(settings, store)
        hashed = service.subject_params(subject)
        if args.action == "purge":
            result = asyncio.run(service.purge(args.tenant, subject, "cli"))  # drains the spool first
            out = {"purge_id": result.purge_id, "status": result.status, "rows_deleted": result.rows_deleted}
            audit.write(store, audit.row(args.tenant, "cli", "operator", "privacy purge", params=hashed, after=out))
            out["receipt"] = result.receipt
        else:
            _drain_spool(settings, store)  # the export must see what the stopped edge spooled
            linked, data = asyncio.run(service.export(args.tenant, subject))
            out = export.as_json(data, linked)
            if args.zip:
                Path(args.zip).write_bytes(export.as_zip(data, linked))
                out = {"zip": args.zip, "rows": {t: len(rows) for t, rows in out["tables"].items()}}
            audit.write(store, audit.row(args.tenant, "cli", "operator", "privacy export", params=hashed))
    finally:
        store.close()
    print(json.dumps(out, default=str))
    return 0


def _receipt_verify(args: argparse.Namespace) -> int:
    """`receipt verify FILE`: exit 0 if the receipt is intact and signed by this
    deployment's key (or `--public-key`: a PEM file or the well-known JSON), else 1."""
    from edge.streaming.tokens import load_secret
    from retention import receipts

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(json.dumps({"valid": False, "error": "unreadable", "detail": str(exc)}))
        return 2
    if args.public_key:
        try:
            public = receipts.public_key_from(Path(args.public_key).read_text())
        except (OSError, ValueError, KeyError) as exc:
            print(json.dumps({"valid": False, "error": "bad_key", "detail": str(exc)}))
            return 2
    else:
        settings = from_env()
        if not settings.secret_key and not (settings.data_dir / "secret.key").exists():  # never make one here
            print(json.dumps({"valid": False, "error": "no_key",
                              "detail": "no deployment secret here: pass --public-key (the well-known key)"}))
            return 2
        public = receipts.ReceiptSigner.from_secret(load_secret(settings.data_dir, settings.secret_key)).public
    try:
        receipt = receipts.verify(data, public)
    except receipts.Invalid as exc:
        print(json.dumps({"valid": False, "error": "invalid_receipt", "detail": str(exc)}))
        return 1
    print(json.dumps({"valid": True, "purge_id": receipt.get("purge_id"), "type": receipt.get("type"),
                      "key_id": receipt.get("key_id"), "completed_at": receipt.get("completed_at")}))
    return 0


def _ropa(args: argparse.Namespace) -> int:
    """`ropa --tenant T [--format json|html]`: the tenant's records of processing."""
    from core.tenants import load_tenant
    from retention import ropa

    settings = from_env()
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        tenant = load_tenant(store, args.tenant)
        if tenant is None:
            print(json.dumps({"error": "not_found", "detail": f"no tenant {args.tenant!r}"}), file=sys.stderr)
            return 2
        record = _offline_retention(settings, store).ropa(tenant)
    finally:
        store.close()
    print(ropa.as_html(record) if args.format == "html" else json.dumps(record))
    return 0


def _backup(args: argparse.Namespace) -> int:
    """`backup create|list|prune|restore`: the embedded store must not be in use."""
    import time

    from edge import media_layout
    from edge.streaming.tokens import load_secret
    from retention import audit, backups

    settings = from_env()
    directory = backups.backups_dir(settings.data_dir, settings.clickhouse_url)
    if args.action in ("list", "prune"):
        out = ({"backups": [m.public(time.time(), directory) for m in backups.list_backups(directory)],
                "incomplete": backups.incomplete(directory)}
               if args.action == "list" else {"pruned": backups.prune(directory)})
        print(json.dumps(out))
        return 0
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        if args.action == "create":
            _drain_spool(settings, store)
            media = media_layout.videos_on_disk(settings.media_dir)
            manifest = backups.create(store, directory, media, tier=args.tier, region=settings.region)
            out = {k: v for k, v in manifest.public(time.time()).items() if k in ("backup_id", "tier", "expires_at")}
        else:
            try:
                out = backups.restore(store, directory, args.backup_id,
                                      load_secret(settings.data_dir, settings.secret_key), region=settings.region)
            except LookupError as exc:
                error = ("incomplete" if isinstance(exc, backups.Incomplete)
                         else "wrong_region" if isinstance(exc, backups.WrongRegion) else "not_found")
                print(json.dumps({"error": error, "detail": str(exc)}), file=sys.stderr)
                return 2
        audit.write(store, audit.row("", "cli", "operator", f"backup {args.action}", after=out))
    finally:
        store.close()
    print(json.dumps(out))
    return 0


def _retention(args: argparse.Namespace) -> int:
    """`retention show|set|enforce`."""
    from core.tenants import load_tenant
    from retention import audit, policy

    settings = from_env()
    if _elsewhere(settings, getattr(args, "tenant", None)):
        return 2
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        if args.action == "enforce":
            out = {"rows_deleted": policy.enforce(store)}
            audit.write(store, audit.row("", "cli", "operator", "retention enforce", after=out))
        else:
            tenant = load_tenant(store, args.tenant)
            if tenant is None:
                print(json.dumps({"error": "not_found", "detail": f"no tenant {args.tenant!r}"}), file=sys.stderr)
                return 2
            if args.action == "show":
                out = policy.settings_of(tenant)
            else:
                changes = {k: v for k in (*policy.KINDS, "ip_mode") if (v := getattr(args, k)) is not None}
                if any(not 1 <= v <= 3650 for k, v in changes.items() if k != "ip_mode"):
                    print(json.dumps({"error": "invalid_field", "detail": "days must be 1-3650"}), file=sys.stderr)
                    return 2
                before, out = policy.apply(store, tenant, changes)
                audit.write(store, audit.row(tenant.tenant_id, "cli", "operator", "retention set",
                                             before=before, after=out))
    finally:
        store.close()
    print(json.dumps(out))
    return 0


def _tenant_delete(args: argparse.Namespace) -> int:
    """Offboard a tenant: every row and media file, verified; the server must be stopped."""
    import asyncio

    settings = from_env()
    if _elsewhere(settings, args.tenant_id):
        return 2
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        if not store.rows("SELECT 1 FROM tenants WHERE tenant_id = {t:String} LIMIT 1", {"t": args.tenant_id}):
            print(json.dumps({"error": "not_found", "detail": f"no tenant {args.tenant_id!r}"}), file=sys.stderr)
            return 2
        out = asyncio.run(_offline_retention(settings, store).offboard(args.tenant_id, "cli"))  # drains first
    finally:
        store.close()
    print(json.dumps(out))
    return 0


def _support_key(args: argparse.Namespace) -> int:
    from core.tenants import create_support_key
    from retention import audit

    settings = from_env()
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        key = create_support_key(store, args.name, role=args.role)
        audit.write(store, audit.row("", "cli", "operator", "support key-create",
                                     params={"name": args.name, "role": args.role}))
    finally:
        store.close()
    print(json.dumps({f"{args.role}_key": key, "name": args.name}))
    return 0


def _tenant_key(args: argparse.Namespace) -> int:
    """An operator's way back in for a tenant that lost its keys, and out for a leaked one."""
    from core import tenants
    from retention import audit

    settings = from_env()
    if _elsewhere(settings, args.tenant_id):
        return 2
    store = open_store(settings.clickhouse_url)
    try:
        migrations.apply(store)
        if tenants.load_tenant(store, args.tenant_id) is None:
            print(json.dumps({"error": "not_found", "detail": f"no tenant {args.tenant_id!r}"}), file=sys.stderr)
            return 2
        if args.action == "key-create":
            key = tenants.create_admin_key(store, args.tenant_id)
            out = {"tenant_id": args.tenant_id, "key_id": tenants.hash_key(key)[: tenants.KEY_ID_CHARS],
                   "admin_key": key}
        else:
            named = tenants.named_key(tenants.admin_keys(store, args.tenant_id), args.key_id)
            if named is None or named[2]:
                print(json.dumps({"error": "not_found", "detail": f"no live key {args.key_id!r}"}), file=sys.stderr)
                return 2
            tenants.revoke_admin_key(store, args.tenant_id, named[0])
            out = {"tenant_id": args.tenant_id, "key_id": args.key_id, "revoked": True}
        audit.write(store, audit.row(args.tenant_id, "cli", "operator", f"tenant {args.action}",
                                     params={"key_id": out["key_id"]}))
    finally:
        store.close()
    print(json.dumps(out))
    return 0


def _front_config(args: argparse.Namespace) -> int:
    from edge import front_config

    settings = from_env()
    path = front_config.write(settings, listen=args.listen, edge=args.edge, workers=args.workers)
    print(json.dumps({"nginx_conf": path, "run": f"nginx -c {path}",
                      "edge_env": {"WAVE_TRUSTED_PROXIES": front_config.trusted_hint(args.edge)}}))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wave-edge", description="Privacy-first streaming edge")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve HTTP (default 127.0.0.1:8080)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="action", required=True)
    create = tenant.add_parser("create", help="create a tenant; prints its id and admin key")
    create.add_argument("name")
    create.add_argument("--region", default=None,
                        help="the tenant's region for life; only the one this deployment serves (WAVE_REGION)")
    create.add_argument("--retention-days", type=int, default=395)
    create.add_argument("--ip-mode", choices=IP_MODES, default="truncated")
    create.add_argument("--allowed-origin", action="append", help="repeat for each origin")
    create.add_argument("--keep-bots", action="store_true", help="store bot traffic (flagged)")
    create.add_argument("--consent-text", default="", help="the player's consent prompt (default: the platform's)")
    create.add_argument("--policy-version", default="1", help="privacy policy version viewers consent to")
    create.add_argument("--identified-viewers", action="store_true",
                        help="viewers may be identified by email (proven by identity tokens the tenant's server signs)")
    create.add_argument("--publisher-takeover", choices=("idle", "newest"), default="idle",
                        help="a new publish replaces a live one: only when silent (idle) or always (newest)")
    create.add_argument("--k-anonymity", type=int, default=5, metavar="N",
                        help="analytics never show a group of fewer than N unique viewers (1 = off)")
    create.add_argument("--consent-mode", choices=CONSENT_MODES, default="opt-in",
                        help="opt-in: beacons only with the viewer's consent; anonymous: no consent asked, no stable"
                             " viewer id, no IP stored (a daily-rotating hash; unique viewers count per day)")
    create.add_argument("--live-ladder", default="360", metavar="HEIGHTS",
                        help="lower live renditions beside the source, e.g. 360,240 (only those below the"
                             " source's height); 'none' = the source alone")
    create.set_defaults(run=_tenant_create)
    delete = tenant.add_parser("delete", help="offboard: delete every row and media file of the tenant")
    delete.add_argument("tenant_id")
    delete.set_defaults(run=_tenant_delete)

    privacy = sub.add_parser("privacy", help="data-subject requests (server stopped, with embedded chDB)")
    actions = privacy.add_subparsers(dest="action", required=True)
    for action, text in (("purge", "erase a subject from every table"), ("export", "every row about a subject")):
        p_action = actions.add_parser(action, help=text)
        p_action.add_argument("--tenant", required=True)
        p_action.add_argument("--viewer-id")
        p_action.add_argument("--email")
        p_action.add_argument("--ip")
        if action == "export":
            p_action.add_argument("--zip", help="also write the ZIP (a CSV per table and a README) here")
        p_action.set_defaults(run=_privacy)

    receipt = sub.add_parser("receipt", help="erasure receipts").add_subparsers(dest="action", required=True)
    r_verify = receipt.add_parser("verify", help="check a receipt's signature and integrity (exit 0: valid)")
    r_verify.add_argument("file")
    r_verify.add_argument("--public-key", help="PEM or /.well-known/wave-edge/receipt-key JSON (default: this"
                                               " deployment's key, from WAVE_SECRET_KEY or $WAVE_DATA_DIR/secret.key)")
    r_verify.set_defaults(run=_receipt_verify)

    ropa = sub.add_parser("ropa", help="records of processing (GDPR Art. 30) of a tenant, from the registry")
    ropa.add_argument("--tenant", required=True)
    ropa.add_argument("--format", choices=("json", "html"), default="json")
    ropa.set_defaults(run=_ropa)

    backup = sub.add_parser("backup", help="backups in tiers (daily 24 h, weekly 7 d, monthly 30 d)")
    b_actions = backup.add_subparsers(dest="action", required=True)
    b_create = b_actions.add_parser("create", help="back up the database now")
    b_create.add_argument("--tier", choices=("daily", "weekly", "monthly"),
                          help="default: monthly if none this month, weekly if none this week, else daily")
    b_actions.add_parser("list", help="each backup's tier, age and expiry")
    b_actions.add_parser("prune", help="delete expired backups")
    b_restore = b_actions.add_parser("restore", help="restore a backup, then erase again everyone purged since")
    b_restore.add_argument("backup_id")
    backup.set_defaults(run=_backup)

    retention = sub.add_parser("retention", help="how long data is kept; delete what expired")
    r_actions = retention.add_subparsers(dest="action", required=True)
    r_show = r_actions.add_parser("show", help="a tenant's retention settings")
    r_show.add_argument("--tenant", required=True)
    r_set = r_actions.add_parser("set", help="change them (stored rows follow)")
    r_set.add_argument("--tenant", required=True)
    for kind in ("viewer_events_days", "sessions_days", "consents_days", "audit_days", "server_logs_days"):
        r_set.add_argument("--" + kind.replace("_", "-"), dest=kind, type=int)
    r_set.add_argument("--ip-mode", dest="ip_mode", choices=IP_MODES)
    r_actions.add_parser("enforce", help="delete every row past its period, now")
    retention.set_defaults(run=_retention)

    k_create = tenant.add_parser("key-create", help="a new admin key for a tenant; prints it once")
    k_create.add_argument("tenant_id")
    k_create.set_defaults(run=_tenant_key)
    k_revoke = tenant.add_parser("key-revoke", help="revoke one of a tenant's admin keys (by key id)")
    k_revoke.add_argument("tenant_id")
    k_revoke.add_argument("key_id")
    k_revoke.set_defaults(run=_tenant_key)

    support = sub.add_parser("support", help="operator support keys (tenants grant them access)")
    s_actions = support.add_subparsers(dest="action", required=True)
    s_create = s_actions.add_parser("key-create", help="a support key; prints it once")
    s_create.add_argument("name")
    s_create.add_argument("--role", choices=("support", "operator"), default="support",
                          help="support: reads under a tenant's grant; operator: offboards tenants")
    s_create.set_defaults(run=_support_key)

    front = sub.add_parser("front-config", help="write the nginx front's configuration under $WAVE_DATA_DIR/run")
    front.add_argument("--listen", default="0.0.0.0:80", help="where nginx listens")
    front.add_argument("--edge", default="127.0.0.1:8080", help="where the edge listens")
    front.add_argument("--workers", default="auto")
    front.set_defaults(run=_front_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
