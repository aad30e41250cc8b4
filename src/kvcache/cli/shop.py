"""`kvcache shop add|list|remove`: the shops the service calls Shopify for.

    kvcache shop add demo.myshopify.com --token-env DEMO_SHOPIFY_TOKEN
    printf '%s\\n' "$TOKEN" | kvcache shop add demo.myshopify.com --token-stdin
    kvcache shop list
    kvcache shop remove demo.myshopify.com

The app database is KVCACHE_DATABASE_URL (or `database_url` in kvcache.toml). A
token on stdin is stored encrypted with KVCACHE_SECRET_KEY and refused without it;
`--token-env` stores only the variable's name. `list` never prints a token.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from ..errors import KVError
from ._common import stdin_is_terminal, write_json
from ._errors import fail

__all__ = ["shop"]

T = TypeVar("T")
#: The shop commands call no webhook: the client secret is not needed to run them.
_NO_WEBHOOKS = ("(not used by kvcache shop)",)


def _run(config: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the app database (schema brought up to date) and the registry; run `work`."""
    from ..app.settings import load_settings
    from ..shopify.db import migrate, open_database
    from ..shopify.shops import ShopRegistry

    async def session() -> T:
        settings = load_settings(config, api_secrets=_NO_WEBHOOKS)
        engine = open_database(settings.database_url)
        try:
            await migrate(engine)
            return await work(ShopRegistry(engine, secret_key=settings.secret_key))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(session())
    except click.ClickException:
        raise
    except (KVError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the database driver's own errors
        raise fail(f"the app database does not answer: {exc}") from None


@click.group()
@click.option("--config", metavar="FILE", help="Settings file [default: ./kvcache.toml if any].")
@click.pass_context
def shop(ctx: click.Context, config: str | None) -> None:
    """Add, list and remove the shops whose Admin API the service calls."""
    ctx.ensure_object(dict)["config"] = config


def _read_token() -> str:
    if stdin_is_terminal():
        token = click.prompt("Access token", hide_input=True, err=True)
    else:
        token = sys.stdin.readline()
    if not token.strip():
        raise fail("no token on stdin")
    return str(token)


@shop.command()
@click.argument("domain", metavar="SHOP")
@click.option(
    "--token-env", metavar="VAR", help="Read the token from $VAR (only the name is stored)."
)
@click.option("--token-stdin", is_flag=True, help="Read the token from stdin; stored encrypted.")
@click.option(
    "--api-version", default=None, metavar="V", help="Admin API version [default: 2025-01]."
)
@click.option("--admin-url", metavar="URL", help="GraphQL endpoint [default: the shop's own].")
@click.pass_context
def add(
    ctx: click.Context,
    domain: str,
    token_env: str | None,
    token_stdin: bool,
    api_version: str | None,
    admin_url: str | None,
) -> None:
    """Add a shop (or re-add it: that reinstalls it with the new token)."""
    from ..shopify.admin import DEFAULT_API_VERSION

    if bool(token_env) == token_stdin:
        raise fail("give exactly one of --token-env VAR and --token-stdin")
    token = _read_token() if token_stdin else None

    async def work(registry: Any) -> Any:
        return await registry.add(
            domain,
            token=token,
            token_env=token_env,
            api_version=api_version or DEFAULT_API_VERSION,
            admin_url=admin_url,
        )

    record, created = _run(ctx.obj["config"], work)
    verb = "added" if created else "updated"
    click.echo(f"{verb} {record.shop} (API {record.api_version}, token: {record.token_source})")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@shop.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the shops as JSON.")
@click.pass_context
def list_shops(ctx: click.Context, as_json: bool) -> None:
    """The shops, with their API version and where their token comes from (never the token)."""

    async def work(registry: Any) -> Any:
        return await registry.list()

    records = _run(ctx.obj["config"], work)
    if as_json:
        write_json([record.as_json() for record in records])
        return
    for record in records:
        state = "installed" if record.installed else f"uninstalled {_when(record.uninstalled_at)}"
        url = f"  {record.admin_url}" if record.admin_url else ""
        click.echo(
            f"{record.shop}  {state}  API {record.api_version}  token: {record.token_source}{url}"
        )


@shop.command()
@click.argument("domain", metavar="SHOP")
@click.pass_context
def remove(ctx: click.Context, domain: str) -> None:
    """Forget a shop and its token."""

    async def work(registry: Any) -> bool:
        removed: bool = await registry.remove(domain)
        return removed

    if not _run(ctx.obj["config"], work):
        raise fail(f"no shop {domain!r}")
    click.echo(f"removed {domain}")
