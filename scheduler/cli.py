"""`viva`: serve, migrate, create organisations, seed a demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scheduler.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from scheduler.migrate import Migration


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


async def _migrate(settings: Settings) -> Migration:
    from scheduler.db import Database
    from scheduler.migrate import migrate

    if settings.database.url.startswith("sqlite"):
        _sqlite_folder(settings.database.url)
    db = Database(settings.database.url)
    try:
        return await migrate(db)
    finally:
        await db.dispose()


def _sqlite_folder(url: str) -> None:
    """Create the folder of an SQLite file, so the quick start needs no mkdir."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    print(asyncio.run(_migrate(_settings(args))).describe())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from scheduler import logs
    from scheduler.app import create_app

    settings = _settings(args)
    logging.basicConfig(
        level=settings.server.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logs.install()  # no link or API key in any line the server writes
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin chatter is not news
    asyncio.run(_migrate(settings))
    app = create_app(settings)
    app.on_startup.append(_freeze_gc)
    print(f"Viva serving on {settings.server.base_url}", flush=True)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        print=None,
        access_log_format='%a "%r" %s %b %Tfs',
        access_log_class=logs.AccessLogger,
    )
    return 0


async def _freeze_gc(_app: object) -> None:
    """Move everything built at start-up out of the cyclic collector's way.

    Modules, the ORM's mappings and the templates never become garbage; without this every
    full collection walks them again, which showed up as 30-80 ms stalls in request p95.
    """
    import gc

    gc.collect()
    gc.freeze()


def cmd_org_create(args: argparse.Namespace) -> int:
    from mailer.message import validate_address
    from scheduler.clock import SystemClock
    from scheduler.db import Database
    from scheduler.orgs import create_organisation

    settings = _settings(args)
    try:
        validate_address(args.email.strip())
    except ValueError as exc:
        # Before the database is touched: every booking of this organisation would fail.
        print(f"viva: --email: {exc}", file=sys.stderr)
        return 2

    async def run() -> dict[str, str]:
        await _migrate(settings)
        db = Database(settings.database.url)
        try:
            async with db.write() as session:
                new = await create_organisation(
                    session,
                    name=args.name,
                    contact_email=args.email,
                    contact_phone=args.phone,
                    now=SystemClock().now(),
                )
            return {"id": str(new.organisation.id), "api_key": new.api_key}
        finally:
            await db.dispose()

    print(json.dumps(asyncio.run(run())))
    return 0


def _key_row(key: object) -> dict[str, str | None]:
    from scheduler.models import ApiKey

    assert isinstance(key, ApiKey)
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def cmd_org_key(args: argparse.Namespace) -> int:
    """`viva org key create|list|revoke`: rotate an organisation's API keys."""
    import uuid

    from scheduler.clock import SystemClock
    from scheduler.db import Database
    from scheduler.errors import VivaError
    from scheduler.models import Organisation
    from scheduler.orgs import add_key, list_keys, revoke_key

    settings = _settings(args)
    try:
        org_id = uuid.UUID(args.org)
        key_id = uuid.UUID(args.key_id) if args.key_command == "revoke" else None
    except ValueError:
        print("viva: not an id", file=sys.stderr)
        return 2
    if args.key_command == "create":
        from pydantic import ValidationError

        from scheduler.web.schemas import ApiKeyIn

        try:
            args.name = ApiKeyIn(name=args.name).name  # the API's rule: one line, 1-200
        except ValidationError as exc:
            print(f"viva: --name: {exc.errors()[0]['msg']}", file=sys.stderr)
            return 2

    async def run() -> object:
        await _migrate(settings)
        db = Database(settings.database.url)
        now = SystemClock().now()
        try:
            async with db.write() as session:
                if await session.get(Organisation, org_id) is None:
                    raise LookupError("no such organisation")
                if args.key_command == "create":
                    row, key = await add_key(session, org_id, name=args.name, now=now)
                    return {**_key_row(row), "api_key": key}
                if args.key_command == "list":
                    return [_key_row(k) for k in await list_keys(session, org_id)]
                assert key_id is not None
                return _key_row(await revoke_key(session, org_id, key_id, now=now))
        finally:
            await db.dispose()

    try:
        result = asyncio.run(run())
    except (LookupError, VivaError) as exc:
        print(f"viva: {exc}", file=sys.stderr)
        return 1
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        print(json.dumps(row))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from scheduler.demo import seed_demo

    settings = _settings(args)
    asyncio.run(_migrate(settings))
    result = asyncio.run(seed_demo(settings, only_if_empty=args.if_empty))
    print(result.describe(), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viva", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve HTTP")
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.set_defaults(func=cmd_migrate)
    org = sub.add_parser("org", help="organisations")
    org_sub = org.add_subparsers(dest="org_command", required=True)
    create = org_sub.add_parser("create", help="create an organisation; prints id and api_key")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True, help="the organisation's contact address")
    create.add_argument("--phone", default=None, help="the organisation's contact phone")
    create.set_defaults(func=cmd_org_create)
    key = org_sub.add_parser("key", help="an organisation's API keys: create, list, revoke")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    key_create = key_sub.add_parser("create", help="a new key; prints it, this once")
    key_create.add_argument("--name", required=True, help="what the key is for")
    key_list = key_sub.add_parser("list", help="the keys (never the keys themselves)")
    key_revoke = key_sub.add_parser("revoke", help="revoke a key at once, on every process")
    key_revoke.add_argument("key_id", help="the key's id (see `viva org key list`)")
    key_commands = (key_create, key_list, key_revoke)
    for p in key_commands:
        p.add_argument("--org", required=True, help="the organisation's id")
        p.set_defaults(func=cmd_org_key)
    demo = sub.add_parser("demo", help="seed a demo organisation and print its links")
    demo.add_argument(
        "--if-empty", action="store_true", help="seed only when there is no organisation yet"
    )
    demo.set_defaults(func=cmd_demo)
    for p in (serve, mig, create, demo, *key_commands):
        p.add_argument("--config", help="a TOML file laid over config.toml")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"viva: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
