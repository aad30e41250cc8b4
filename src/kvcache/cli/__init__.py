"""The `kvcache` command: `wrangler kv key|bulk|namespace ...` against any kvcache store.

    kvcache kv key put greeting hello
    kvcache kv key get greeting --text
    kvcache --store sqlite:////srv/kv.db --namespace CACHE kv key list --prefix user:
    kvcache kv key list --binding CACHE          # from kvcache.toml or wrangler.toml

The target options (`--store`, `--namespace`/`--namespace-id`, `--binding`, ...)
go on the top level or at the end of any kv command. Each command opens the
store, does its work on one event loop and closes the store. One module per
command group: key.py, bulk.py, namespace.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ._errors import one_line_errors
from ._target import target_options
from .bulk import bulk
from .cost import cost
from .key import key
from .namespace import namespace
from .serve import serve
from .shop import shop
from .shopify import shopify
from .webhook import webhook

__all__ = ["cli", "main"]


class _Group(click.Group):
    """The top-level group: whatever a command raises ends as one `Error: ...` line."""

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors(ctx):
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="kvcache")
@target_options
def cli() -> None:
    """Workers-KV stores from the command line (modelled on `wrangler kv`), the webhook
    service (`kvcache serve`, `kvcache webhook trigger|list|replay`), its shops
    (`kvcache shop add|list|remove`), a local Shopify (`kvcache shopify emulate`) and the
    projected bill (`kvcache cost`)."""


@cli.group()
def kv() -> None:
    """Keys, bulk operations and namespaces, as `wrangler kv` does them."""


kv.add_command(key)
kv.add_command(bulk)
kv.add_command(namespace)
cli.add_command(serve)
cli.add_command(webhook)
cli.add_command(shop)
cli.add_command(shopify)
cli.add_command(cost)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; exits with the command's status."""
    # click itself ends quietly when the reader of stdout goes away (`... | head`).
    cli.main(args=list(argv) if argv is not None else None, prog_name="kvcache")


if __name__ == "__main__":
    main()
