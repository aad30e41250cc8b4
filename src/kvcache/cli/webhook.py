"""`kvcache webhook trigger|list|replay`: try the service by hand, read and replay its log.

    kvcache webhook trigger --topic customers/update --shop demo.myshopify.com
    kvcache webhook trigger --topic orders/create --shop demo.myshopify.com --repeat 20
    kvcache webhook list --outcome failed
    kvcache webhook replay 4f1c...-webhook-id

`trigger` signs a sample payload (or --file) with the configured SHOPIFY_API_SECRET,
as Shopify CLI's `app webhook trigger` does; `--repeat N` sends N copies of the one
delivery (same webhook id: duplicates), `--forged` signs with a wrong secret.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ..errors import KVError
from ._common import read_json, write_json
from ._errors import fail

__all__ = ["webhook"]

T = TypeVar("T")
DEFAULT_ADDRESS = "http://127.0.0.1:8787/webhooks"


def _settings(ctx: click.Context, *, signs: bool = False) -> Any:
    """The service's settings; only a command that `signs` needs SHOPIFY_API_SECRET."""
    from ..app.settings import load_settings

    config = ctx.obj.get("config") if ctx.obj else None
    try:
        if signs:
            return load_settings(config)
        # list and replay read the log and run handlers; no signature is made or checked.
        return load_settings(config, api_secrets=("(not used)",))
    except KVError as exc:
        raise fail(str(exc)) from None


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(work())
    except click.ClickException:
        raise
    except (KVError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None


@click.group()
@click.option("--config", metavar="FILE", help="Settings file [default: ./kvcache.toml if any].")
@click.pass_context
def webhook(ctx: click.Context, config: str | None) -> None:
    """Send signed test deliveries; list and replay the delivery log."""
    ctx.ensure_object(dict)["config"] = config


async def _send(
    address: str, body: bytes, headers: dict[str, str], repeat: int, concurrency: int
) -> list[tuple[int, str]]:
    import httpx

    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient) -> tuple[int, str]:
        async with gate:
            try:
                answer = await client.post(address, content=body, headers=headers)
            except httpx.HTTPError as exc:
                return 0, f"no answer ({type(exc).__name__})"
        try:
            outcome = str(answer.json().get("outcome", ""))
        except ValueError:
            outcome = answer.text[:60]
        return answer.status_code, outcome

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(*(one(client) for _ in range(repeat)))


@webhook.command()
@click.option("--topic", required=True, help="Topic, e.g. customers/update.")
@click.option("--shop", required=True, help="The shop's domain, e.g. demo.myshopify.com.")
@click.option("--file", "path", metavar="FILE", help="Payload JSON instead of the sample.")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True, help="Where to POST.")
@click.option("--repeat", default=1, type=click.IntRange(1, 100_000), help="Copies to send.")
@click.option("--concurrency", default=1, type=click.IntRange(1, 1000), help="Copies in flight.")
@click.option("--webhook-id", help="X-Shopify-Webhook-Id [default: a fresh one].")
@click.option("--forged", is_flag=True, help="Sign with a wrong secret (expect 401).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def trigger(
    ctx: click.Context,
    topic: str,
    shop: str,
    path: str | None,
    address: str,
    repeat: int,
    concurrency: int,
    webhook_id: str | None,
    forged: bool,
    as_json: bool,
) -> None:
    """Send a signed delivery (N copies of it with --repeat) and summarise the answers."""
    from ..shopify.samples import sample
    from ..shopify.webhooks import signed_headers

    secret = "forged-" + uuid.uuid4().hex if forged else _settings(ctx, signs=True).api_secrets[0]
    try:
        payload = read_json(path) if path else sample(topic, shop)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    body = json.dumps(payload).encode()
    ident = webhook_id or str(uuid.uuid4())
    headers = signed_headers(body, topic, shop, secret, webhook_id=ident)
    answers = _run(lambda: _send(address, body, headers, repeat, concurrency))
    counts = Counter(answers)
    if as_json:
        write_json(
            {
                "webhookId": ident,
                "answers": [
                    {"status": status, "outcome": outcome, "count": count}
                    for (status, outcome), count in sorted(counts.items())
                ],
            }
        )
    else:
        click.echo(f"{topic} {shop} webhook id {ident}: {repeat} sent")
        for (status, outcome), count in sorted(counts.items()):
            click.echo(f"  {status or '---'} {outcome:<12} x{count}")
    if any(status == 0 for status, _ in answers):
        raise fail(f"the service at {address} did not answer every request")


@webhook.command(name="list")
@click.option("--shop", help="Only this shop.")
@click.option("--topic", help="Only this topic.")
@click.option("--outcome", help="Only this outcome (processed, failed, ...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def list_deliveries(
    ctx: click.Context,
    shop: str | None,
    topic: str | None,
    outcome: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The delivery log, newest first."""
    from ..shopify.db import open_database
    from ..shopify.deliveries import OUTCOMES, DeliveryLog

    if outcome is not None and outcome not in OUTCOMES:
        raise fail(f"--outcome must be one of {', '.join(OUTCOMES)}")
    settings = _settings(ctx)

    async def read() -> list[dict[str, Any]]:
        log = DeliveryLog(open_database(settings.database_url))
        try:
            rows, _ = await log.page(shop=shop, topic=topic, outcome=outcome, limit=limit)
        finally:
            await log.engine.dispose()
        return [row.as_json() for row in rows]

    rows = _run(read)
    if as_json:
        write_json(rows)
        return
    for row in rows:
        error = f"  {row['error']}" if row["error"] else ""
        click.echo(
            f"{row['receivedAt']}  {row['outcome']:<11} x{row['attempts']:<3} {row['topic']:<24} "
            f"{row['shop']}  {row['webhookId']}{error}"
        )


@webhook.command()
@click.argument("webhook_id")
@click.option("--shop", help="The shop, when several shops have this webhook id.")
@click.pass_context
def replay(ctx: click.Context, webhook_id: str, shop: str | None) -> None:
    """Run a failed delivery's handlers again from its stored body."""
    from ..app.service import ReplayRefused, Service

    settings = _settings(ctx)

    async def again() -> Any:
        service = await Service.open(settings)
        try:
            return await service.replay(webhook_id, shop)
        except ReplayRefused as refused:
            raise fail(str(refused)) from None
        finally:
            await service.close()

    answer = _run(again)
    click.echo(f"{webhook_id}: {answer.outcome}" + (f" ({answer.detail})" if answer.detail else ""))
    if answer.outcome not in ("processed", "duplicate"):
        raise SystemExit(1)
