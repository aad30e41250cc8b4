"""`kvcache cost [--window 24h] [--json]`: the cost projection from the app database.

Reads the metering history the service writes (`kv_ops`, `kv_stored_bytes` in the
database the settings name: KVCACHE_DATABASE_URL or kvcache.toml) and prints
`kvcache.cost.project`'s figures as a table, or its JSON (the same as
`GET /api/cost`). Nothing is created: a SQLite database that does not exist is
an error.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click

from ..cost import describe_seconds, parse_window, project
from ..errors import KVError
from ._common import write_json
from ._errors import fail

__all__ = ["cost"]


def _window(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_window(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _database_url(config: str | None) -> str:
    from sqlalchemy.engine import make_url

    from ..app.settings import load_settings

    try:
        url = load_settings(config, api_secrets=("(not used)",)).database_url
        parsed = make_url(url)
    except KVError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # SQLAlchemy's ArgumentError: not a URL
        raise fail(f"KVCACHE_DATABASE_URL is not a SQLAlchemy URL: {exc}") from None
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not os.path.exists(database):
            raise fail(f"no app database at {database!r}: nothing has been metered yet")
    return url


async def _projection(url: str, window: float) -> dict[str, Any]:
    from ..app.usage import load_usage
    from ..shopify.db import open_database
    from ..shopify.history import History

    engine = open_database(url)
    try:
        return project(await load_usage(History(engine), window))
    finally:
        await engine.dispose()


def _table(report: dict[str, Any]) -> str:
    observed, monthly = report["observed"], report["monthly"]
    kv, d1 = report["workers_kv"], report["d1"]["paid"]
    observed_for = describe_seconds(report["window_seconds"])
    lines = [f"Observed over {observed_for}, projected to a 30-day month:", ""]
    lines.append(f"{'operation':<14}{'observed':>14}{'per month':>18}{'Paid overage $':>16}")
    for name in ("reads", "writes", "deletes", "lists"):
        usd = kv["paid"]["by_operation_usd"][name]
        lines.append(f"{name:<14}{observed[name]:>14,}{monthly[name]:>18,}{usd:>16.2f}")
    stored = observed["stored_bytes"]
    lines.append(f"{'stored bytes':<14}{'-' if stored is None else f'{stored:,}':>14}")
    lines.append("")
    free = "fits" if kv["free"]["fits"] else "over: " + ", ".join(kv["free"]["over"])
    lines.append(f"Workers KV Free: {free}")
    paid = kv["paid"]
    lines.append(
        f"Workers KV Paid: ${paid['total_usd']:.2f} a month "
        f"(${paid['usage_usd']:.2f} usage + the $5 minimum)"
    )
    lines.append(
        f"D1 Paid, same reads and writes: ${d1['total_usd']:.2f} a month "
        f"(${d1['usage_usd']:.2f} usage + the $5 minimum)"
    )
    families = [row for row in report["drivers"]["families"] if row["monthly"]][:5]
    if families:
        lines += ["", "What pushes the bill (per month):"]
        for row in families:
            lines.append(
                f"  {row['family']:<24}{row['operation']:<9}{row['monthly']:>14,}"
                f"  ${row['usd']:.2f}"
            )
    for warning in report["warnings"]:
        lines.append(f"warning [{warning['code']}]: {warning['message']}")
    lines.append(f"(prices read {report['prices_read_on']})")
    return "\n".join(lines)


@click.command()
@click.option(
    "--window",
    default="24h",
    callback=_window,
    show_default=True,
    help="How far back to look: 90m, 24h, 7d (at most what the history holds).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON of GET /api/cost.")
@click.option("--config", metavar="FILE", help="Settings file [default: ./kvcache.toml if any].")
def cost(window: float, as_json: bool, config: str | None) -> None:
    """Project the month's Workers KV (Free, Paid) and D1 bill from the metered traffic."""
    from sqlalchemy.exc import SQLAlchemyError

    url = _database_url(config)
    try:
        report = asyncio.run(_projection(url, window))
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot read the metering history: {exc}") from None
    if as_json:
        write_json(report)
    else:
        click.echo(_table(report))
