"""`kvcache kv key ...`: one key at a time, as `wrangler kv key ...` does it."""

from __future__ import annotations

import base64
import json
from typing import Any

import click

from ..kv import KVEntry, KVStore
from ._bulkfile import json_type
from ._common import Target, fail, pass_target, read_bytes, run, target_options, write_json

__all__ = ["key"]


@click.group()
def key() -> None:
    """Write, read, list and delete single keys."""


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise fail(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"--metadata must be a JSON object, not {json_type(value)}: {text}")
    return value


@key.command()
@click.argument("name", metavar="KEY")
@click.argument("value", required=False)
@click.option("--path", metavar="FILE", help="Store this file's bytes instead of VALUE.")
@click.option("--ttl", type=int, metavar="SECONDS", help="Expire this many seconds from now.")
@click.option("--expiration", type=int, metavar="EPOCH", help="Expire at this UNIX time.")
@click.option("--metadata", "metadata_text", metavar="JSON", help="A JSON object to attach.")
@target_options(envvars=False)
@pass_target
def put(
    target: Target,
    name: str,
    value: str | None,
    path: str | None,
    ttl: int | None,
    expiration: int | None,
    metadata_text: str | None,
) -> None:
    """Write VALUE (or the bytes of --path FILE) to KEY."""
    if path is not None and value is None:
        data: str | bytes = read_bytes(path)
    elif value is not None and path is None:
        data = value
    else:
        raise click.UsageError("give exactly one of VALUE or --path FILE")
    metadata = _metadata(metadata_text)

    async def work(kv: KVStore) -> None:
        await kv.put(name, data, expiration=expiration, expiration_ttl=ttl, metadata=metadata)

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
@target_options(envvars=False)
@pass_target
@click.pass_context
def get(ctx: click.Context, target: Target, name: str, text: bool, with_metadata: bool) -> None:
    """Print KEY's value (raw bytes unless --text or --metadata)."""

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
@target_options(envvars=False)
@pass_target
def list_keys(target: Target, prefix: str | None) -> None:
    """Print every live key as a JSON array of {name, expiration?, metadata?}."""

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
@target_options(envvars=False)
@pass_target
def delete(target: Target, name: str) -> None:
    """Delete KEY; deleting an absent key is not an error."""

    async def work(kv: KVStore) -> None:
        await kv.delete(name)

    run(target, work)
