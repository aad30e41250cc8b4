"""The `kvcache` command: `wrangler kv key|bulk ...` against any kvcache store.

    kvcache kv key put greeting hello
    kvcache kv key get greeting --text
    kvcache --store sqlite:////srv/kv.db --namespace CACHE kv key list --prefix user:

`--store` and `--namespace` go on the top level (or in KVCACHE_STORE and
KVCACHE_NAMESPACE) and may be repeated at the end of any kv command. Each command
opens the store, does its work on one event loop and closes the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .. import __version__
from ._common import target_options
from .bulk import bulk
from .key import key
from .serve import serve
from .shop import shop
from .shopify import shopify
from .webhook import webhook

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="kvcache")
@target_options(envvars=True)
def cli() -> None:
    """Workers-KV stores from the command line (modelled on `wrangler kv`), the webhook
    service (`kvcache serve`, `kvcache webhook trigger|list|replay`), its shops
    (`kvcache shop add|list|remove`) and a local Shopify (`kvcache shopify emulate`)."""


@cli.group()
def kv() -> None:
    """Keys and bulk operations on one namespace, as `wrangler kv` does them."""


kv.add_command(key)
kv.add_command(bulk)
cli.add_command(serve)
cli.add_command(webhook)
cli.add_command(shop)
cli.add_command(shopify)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; exits with the command's status."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="kvcache")


if __name__ == "__main__":
    main()
