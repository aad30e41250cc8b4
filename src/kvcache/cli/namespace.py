"""`kvcache kv namespace list`: the namespaces that hold keys in the store.

wrangler lists the account's namespaces as `[{"id", "title", ...}]`; a kvcache
namespace has only its name, which is both its id (what `--namespace-id` takes)
and its title. A namespace is listed while it holds at least one live key.
"""

from __future__ import annotations

import asyncio

import click

from ..errors import KVError
from ..kv.namespaces import list_namespaces
from ._common import write_json
from ._errors import fail
from ._target import Choices, pass_choices, target_options

__all__ = ["namespace"]


@click.group()
def namespace() -> None:
    """The namespaces of a store."""


@namespace.command(name="list")
@target_options
@pass_choices
def list_command(choices: Choices) -> None:
    """Print the store's namespaces as a JSON array of {"id", "title"}."""
    if choices.remote:
        raise fail(
            "kv namespace list --remote: kvcache does not list a Cloudflare account's "
            "namespaces (yet); `wrangler kv namespace list` does, and --namespace-id ID "
            "--remote reaches any of them"
        )
    target = choices.resolve(writes=False, creates=False)
    try:
        names = asyncio.run(list_namespaces(target.url))
    except (KVError, ValueError, TypeError) as exc:  # a URL it cannot use, a store that fails
        raise fail(f"{target.where}: {exc}") from exc
    write_json([{"id": name, "title": name} for name in names])
