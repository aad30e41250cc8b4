"""`kvcache shopify emulate`: a local Shopify Admin GraphQL API for development.

    kvcache shopify emulate --port 8788 --latency 0.1 --customer bob@example.com

Serves `kvcache.testing.ShopifyAdminEmulator` in the foreground until Ctrl-C or
SIGTERM. Point a shop at it with
`kvcache shop add demo.myshopify.com --token-env T --admin-url <the printed URL>`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from ._errors import fail

__all__ = ["shopify"]


@click.group()
def shopify() -> None:
    """Shopify for development: a local Admin GraphQL API."""


@shopify.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8788, show_default=True, type=click.IntRange(0, 65535))
@click.option("--shop", default="demo.myshopify.com", show_default=True, help="The default shop.")
@click.option("--token", default="shpat_emulator", show_default=True, help="Accepted token.")
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="Seconds added to every answer.",
)
@click.option(
    "--plan",
    default="standard",
    show_default=True,
    type=click.Choice(["standard", "advanced", "plus", "enterprise", "legacy"]),
    help="Shopify plan whose bucket size and restore rate apply.",
)
@click.option("--legacy", is_flag=True, help="No customerByIdentifier (an API before 2025-01).")
@click.option("--throttle-429", is_flag=True, help="Throttle with HTTP 429, not a THROTTLED error.")
@click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="EMAIL",
    help="A customer to start with; repeatable.",
)
def emulate(
    host: str,
    port: int,
    shop: str,
    token: str,
    latency: float,
    plan: str,
    legacy: bool,
    throttle_429: bool,
    customers: tuple[str, ...],
) -> None:
    """Run a local Admin GraphQL API (customers, customerCreate, costs, throttling)."""
    from ..testing import ShopifyAdminEmulator

    emulator = ShopifyAdminEmulator(
        host=host,
        port=port,
        shop=shop,
        access_token=token,
        plan=plan,
        latency=latency,
        legacy=legacy,
        throttle_status=429 if throttle_429 else 200,
    )
    for email in customers:
        try:
            emulator.add_customer(email, first_name=email.split("@", 1)[0].title())
        except Exception as exc:
            raise fail(f"customer {email!r}: {exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        emulator.start()
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"Shopify Admin API emulator for {shop} at {emulator.admin_url()}", err=True)
        click.echo(
            f"  token {token}; other shops at {emulator.url}/shops/SHOP/admin/api/V/graphql.json",
            err=True,
        )
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emulator.stop()
        click.echo(f"stopped; {emulator.stats()}", err=True)
