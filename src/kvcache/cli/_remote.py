"""`--remote`: the namespace on Cloudflare itself, as wrangler finds it.

The namespace id comes from `--namespace-id`, or from the wrangler config's
`[[kv_namespaces]]` entry of `--binding NAME` (its `preview_id` with `--preview`;
kvcache.toml is for local stores and is not read here). The account is
CLOUDFLARE_ACCOUNT_ID and the token CLOUDFLARE_API_TOKEN, as for wrangler;
CLOUDFLARE_API_BASE_URL, wrangler's variable for another API root, is honoured
by the backend itself.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from ._bindings import find_binding, wrangler_file
from ._errors import fail

__all__ = ["remote_url"]

ACCOUNT_ENV = "CLOUDFLARE_ACCOUNT_ID"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"  # as kvcache.kv.cloudflare reads it (not imported: httpx)


def remote_url(
    *,
    namespace_id: str | None,
    binding: str | None,
    preview: bool | None,
    env: str | None,
    config: str | None,
    writes: bool,
) -> tuple[str, str, str]:
    """(cloudflare:// URL, namespace id, what chose them) for a --remote command."""
    if namespace_id is None:
        if binding is None:
            raise fail("--remote needs --binding NAME (from wrangler.toml) or --namespace-id ID")
        found = wrangler_file(config, ".")
        if found is None:
            raise fail(
                f"--binding {binding} --remote: no wrangler.toml, wrangler.json or "
                "wrangler.jsonc here (kvcache.toml bindings are local); give --namespace-id"
            )
        namespace_id = find_binding(
            binding, preview=preview, env=env, config=found, writes=writes
        ).namespace
        source = f"--binding {binding} --remote ({found})"
    else:
        source = f"--namespace-id {namespace_id} --remote"
    account = os.environ.get(ACCOUNT_ENV, "").strip()
    if not account:
        raise fail(f"--remote: set {ACCOUNT_ENV} to the id of the account that owns the namespace")
    if not os.environ.get(TOKEN_ENV):
        raise fail(
            f"--remote: set {TOKEN_ENV} to an API token with the 'Workers KV Storage Read' "
            "and 'Workers KV Storage Write' permissions"
        )
    url = f"cloudflare://{quote(account, safe='')}/{quote(namespace_id, safe='')}"
    return url, namespace_id, source
