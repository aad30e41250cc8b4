"""`kvcache kv key ...`: one key at a time, as `wrangler kv key ...` does it.

put and delete print wrangler's confirmation line on stdout; every argument is
checked, in Workers KV's order, before anything is written, and an error names
the argument at fault.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import click

from ..kv import KVEntry, KVStore
from ..kv import validation as v
from ..kv._json import dumps
from ._common import LIMITS, blame, printable, read_bytes, run, shorten, write_json
from ._params import argv_bytes, int32_option, json_option
from ._target import Choices, pass_choices, target_options

__all__ = ["key"]


@click.group()
def key() -> None:
    """Write, read, list and delete single keys."""


def _shows_metadata(metadata: Any) -> bool:
    """JavaScript truthiness, which decides whether wrangler mentions the metadata."""
    if isinstance(metadata, bool | int | float | str):
        return bool(metadata)
    return metadata is not None


def _writing(name: str, value: str | None, path: str | None, namespace: str, meta: Any) -> str:
    """wrangler's line for `kv key put`."""
    shown = f' with metadata "{dumps(meta, "metadata")}"' if _shows_metadata(meta) else ""
    where = f'"{name}" on namespace {namespace}{shown}.'
    if path is not None:
        return printable(f"Writing the contents of {path} to the key {where}")
    return printable(f'Writing the value "{value}" to key {where}')


@key.command()
@click.argument("name", metavar="KEY")
@click.argument("value", required=False)
@click.option("--path", metavar="FILE", help="Store this file's bytes instead of VALUE.")
@click.option("--ttl", metavar="SECONDS", help="Expire this many seconds from now (at least 60).")
@click.option("--expiration", metavar="EPOCH", help="Expire at this UNIX time.")
@click.option("--metadata", "metadata_text", metavar="JSON", help="JSON to attach to the key.")
@target_options
@pass_choices
def put(
    choices: Choices,
    name: str,
    value: str | None,
    path: str | None,
    ttl: str | None,
    expiration: str | None,
    metadata_text: str | None,
) -> None:
    """Write VALUE (or the bytes of --path FILE) to KEY; --ttl wins over --expiration."""
    if (value is None) == (path is None):
        raise click.UsageError("give exactly one of VALUE or --path FILE")
    ttl_seconds = int32_option(ttl, "--ttl")
    expires_at = int32_option(expiration, "--expiration")
    metadata = json_option(metadata_text, "--metadata")
    target = choices.resolve(writes=True, creates=True)
    data = read_bytes(path) if path is not None else argv_bytes(value or "", "VALUE")
    # put's own checks in its order (key, expiry, metadata, value), before the store is
    # opened: a refused put creates no file and names the argument at fault.
    with blame("KEY"):
        v.check_key(name, "PUT", LIMITS)
    expiry_flag = f"--ttl {ttl}" if ttl is not None else f"--expiration {expiration}"
    with blame(shorten(expiry_flag, 40)):
        v.expiry(expires_at, ttl_seconds, time.time(), LIMITS)
    with blame("--metadata"):
        v.metadata_json(metadata, LIMITS)
    with blame(f"--path {path}" if path is not None else "VALUE"):
        v.value_bytes(data, LIMITS)

    async def work(kv: KVStore) -> None:
        click.echo(_writing(name, value, path, kv.namespace, metadata))
        await kv.put(
            name, data, expiration=expires_at, expiration_ttl=ttl_seconds, metadata=metadata
        )

    run(target, work)


def _entry_json(entry: KVEntry) -> dict[str, Any]:
    """Value and metadata; a value that is not UTF-8 is given as base64, as bulk put reads it."""
    raw: bytes = entry.value
    try:
        return {"value": raw.decode("utf-8"), "metadata": entry.metadata}
    except UnicodeDecodeError:
        text = base64.b64encode(raw).decode("ascii")
        return {"value": text, "base64": True, "metadata": entry.metadata}


@key.command()
@click.argument("name", metavar="KEY")
@click.option("--text", is_flag=True, help="Decode the value as UTF-8 and end with a newline.")
@click.option("--metadata", "with_metadata", is_flag=True, help="Print value and metadata as JSON.")
@target_options
@pass_choices
@click.pass_context
def get(ctx: click.Context, choices: Choices, name: str, text: bool, with_metadata: bool) -> None:
    """Print KEY's value (raw bytes unless --text or --metadata)."""
    with blame("KEY"):
        v.check_key(name, "GET", LIMITS)
    target = choices.resolve(writes=False, creates=False)

    async def work(kv: KVStore) -> KVEntry:
        return await kv.get_with_metadata(name, type="bytes")

    entry = run(target, work)
    if entry.value is None:
        click.echo("Value not found", err=True)
        ctx.exit(1)
    if with_metadata:
        write_json(_entry_json(entry))
    elif text:
        click.echo(entry.value.decode("utf-8", "replace"))
    else:
        click.echo(entry.value, nl=False)


@key.command(name="list")
@click.option("--prefix", metavar="P", help="Only keys that start with P.")
@target_options
@pass_choices
def list_keys(choices: Choices, prefix: str | None) -> None:
    """Print every live key as a JSON array of {name, expiration?, metadata?}."""
    with blame("--prefix"):
        v.check_prefix(prefix, LIMITS)
    target = choices.resolve(writes=False, creates=False)

    async def work(kv: KVStore) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await kv.list(prefix=prefix, cursor=cursor)
            found.extend(info.as_dict() for info in page.keys)
            if page.list_complete or page.cursor is None:
                return found
            cursor = page.cursor

    write_json(run(target, work))


@key.command()
@click.argument("name", metavar="KEY")
@target_options
@pass_choices
def delete(choices: Choices, name: str) -> None:
    """Delete KEY; deleting an absent key is not an error."""
    with blame("KEY"):
        v.check_key(name, "DELETE", LIMITS)
    target = choices.resolve(writes=True, creates=False)

    async def work(kv: KVStore) -> None:
        click.echo(printable(f'Deleting the key "{name}" on namespace {kv.namespace}.'))
        await kv.delete(name)

    run(target, work)
