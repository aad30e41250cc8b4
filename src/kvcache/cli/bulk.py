"""`kvcache kv bulk ...`: many keys from one JSON file, in store-sized batches.

Every entry is checked before the first batch is written, so a bad entry anywhere
in the file means nothing is written at all.
"""

from __future__ import annotations

import time
from typing import Any

import click

from ..errors import KVError
from ..kv import KVStore
from ..kv.validation import BULK_GET_MAX, BULK_WRITE_MAX, json_kind
from . import _bulkfile as bulkfile
from ._common import LIMITS, chunks, progress, read_json, run, stdin_is_terminal, write_json
from ._errors import fail, one_line
from ._target import Choices, pass_choices, target_options

__all__ = ["bulk"]

FILE = click.argument("path", metavar="FILE")


@click.group()
def bulk() -> None:
    """Write, delete or read many keys listed in a JSON file ("-" reads stdin)."""


def _array(path: str, what: str) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, list):
        raise fail(f"{path} must hold a JSON array of {what}, not {json_kind(data)}")
    return data


def _keys(path: str) -> list[str]:
    items = _array(path, 'key strings or {"name": ...} objects')
    names, problems = bulkfile.key_names(items)
    if problems:
        raise fail(bulkfile.describe_problems(problems, len(items), path, "nothing was done"))
    return names


def _check_keys(names: list[str], path: str, op: str) -> None:
    problems = bulkfile.key_problems(names, op, LIMITS)
    if problems:
        raise fail(bulkfile.describe_problems(problems, len(names), path, "nothing was done"))


def _warn_unexpected(entries: list[Any], path: str) -> None:
    """wrangler's warning (on stderr) about properties it ignores."""
    unexpected = bulkfile.unexpected_fields(entries)
    if unexpected:
        named = "; ".join(text for _, text in unexpected[: bulkfile.MAX_NAMED])
        allowed = ", ".join(bulkfile.PUT_FIELDS)
        warning = f"unexpected properties in {path} are ignored (only {allowed} are used): {named}"
        click.echo(f"Warning: {one_line(warning)}", err=True)


@bulk.command()
@FILE
@target_options
@pass_choices
def put(choices: Choices, path: str) -> None:
    """Write the entries of a wrangler bulk JSON FILE; prints Success!.

    FILE holds [{"key", "value", "expiration"?, "expiration_ttl"?, "metadata"?,
    "base64"?}, ...]. Every entry is checked first: one bad entry writes nothing.
    """
    entries = _array(path, "entry objects")
    _warn_unexpected(entries, path)
    target = choices.resolve(writes=True, creates=True)
    problems = bulkfile.put_problems(entries, time.time(), LIMITS)
    if problems:
        raise fail(bulkfile.describe_problems(problems, len(entries), path, "nothing was written"))

    async def work(kv: KVStore) -> None:
        written = 0
        with progress("Writing", len(entries)) as advance:
            for batch in chunks(entries, BULK_WRITE_MAX):
                try:
                    await kv.put_many(batch)
                except KVError as exc:
                    if not written:
                        raise
                    raise fail(f"{exc} (the first {written} entries were written)") from exc
                written += len(batch)
                advance(len(batch))

    run(target, work)
    click.echo("Success!")


@bulk.command()
@FILE
@click.option("--force", "-f", is_flag=True, help="Delete without asking for confirmation.")
@target_options
@pass_choices
def delete(choices: Choices, path: str, force: bool) -> None:
    """Delete the keys listed in FILE; asks first unless --force.

    FILE holds key strings or {"name": ...} objects (the output of `key list`).
    """
    names = _keys(path)
    _check_keys(names, path, "DELETE")
    target = choices.resolve(writes=True, creates=False)
    if not force:
        if path == "-" or not stdin_is_terminal():
            raise fail(
                f"not deleting {len(names)} keys without confirmation: stdin is not a "
                "terminal to ask on; pass --force (-f) to delete without asking"
            )
        question = (
            f'Are you sure you want to delete all the keys read from "{path}" from '
            f'kv-namespace with id "{target.namespace}"?'
        )
        if not click.confirm(question, err=True):
            click.echo(f'Not deleting keys read from "{path}".')
            return

    async def work(kv: KVStore) -> None:
        with progress("Deleting", len(names)) as advance:
            for batch in chunks(names, BULK_WRITE_MAX):
                await kv.delete_many(batch)
                advance(len(batch))

    run(target, work)
    click.echo("Success!")


@bulk.command()
@FILE
@target_options
@pass_choices
def get(choices: Choices, path: str) -> None:
    """Print the values of the keys listed in FILE as JSON.

    FILE holds key strings or {"name": ...} objects; the output is
    {key: {"value": str | null}}.
    """
    names = _keys(path)
    _check_keys(names, path, "GET_BULK")
    target = choices.resolve(writes=False, creates=False)

    async def work(kv: KVStore) -> dict[str, dict[str, Any]]:
        unique = list(dict.fromkeys(names))
        found: dict[str, dict[str, Any]] = {}
        with progress("Reading", len(unique)) as advance:
            for batch in chunks(unique, BULK_GET_MAX):
                values = await kv.get_many(batch)
                found.update((name, {"value": values[name]}) for name in batch)
                advance(len(batch))
        return found

    write_json(run(target, work))
