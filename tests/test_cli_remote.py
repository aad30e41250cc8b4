"""`kvcache kv ... --remote`: the Cloudflare namespace of a wrangler binding, over the REST API.

The API root is the Miniflare test Worker (CLOUDFLARE_API_BASE_URL, wrangler's
variable), so the commands really go over HTTP to Workers KV as workerd keeps it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import kvcache
from cli_helpers import assert_one_error_line, invoke
from kvcache.kv._cloudflare_http import Api
from miniflare import NAMESPACES, MiniflareRest

NAMESPACE = NAMESPACES[2]
WRANGLER = f"""
name = "seed"
[[kv_namespaces]]
binding = "CACHE"
id = "{NAMESPACE}"
preview_id = "{NAMESPACES[3]}"
"""


@pytest.fixture
def remote(
    miniflare_rest: MiniflareRest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MiniflareRest:
    miniflare_rest.reset(NAMESPACE)
    miniflare_rest.reset(NAMESPACES[3])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrangler.toml").write_text(WRANGLER)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", miniflare_rest.account)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", miniflare_rest.write_token)
    monkeypatch.setenv("CLOUDFLARE_API_BASE_URL", miniflare_rest.api_url)
    return miniflare_rest


def read(server: MiniflareRest, namespace: str, key: str) -> object:
    """The entry as the REST backend reads it (the CLI runs its own event loop)."""

    async def go() -> object:
        async with kvcache.open_kv(server.url(namespace), api_token=server.read_token) as kv:
            return await kv.get_with_metadata(key)

    return asyncio.run(go())


def test_key_put_and_get_through_the_binding(remote: MiniflareRest) -> None:
    put = invoke(
        "kv",
        "key",
        "put",
        "K",
        "V",
        "--binding",
        "CACHE",
        "--remote",
        "--no-preview",
        "--metadata",
        '{"a": 1}',
        "--ttl",
        "120",
    )
    assert put.exit_code == 0, put.stderr
    got = invoke("kv", "key", "get", "K", "--binding", "CACHE", "--remote")
    assert got.exit_code == 0 and got.stdout == "V"
    assert read(remote, NAMESPACE, "K") == kvcache.KVEntry("V", {"a": 1})
    listed = invoke("kv", "key", "list", "--binding", "CACHE", "--remote")
    [info] = json.loads(listed.stdout)
    assert info["name"] == "K" and info["metadata"] == {"a": 1} and "expiration" in info


def test_preview_and_namespace_id(remote: MiniflareRest) -> None:
    assert (
        invoke(
            "kv", "key", "put", "P", "p", "--binding", "CACHE", "--preview", "--remote"
        ).exit_code
        == 0
    )
    assert read(remote, NAMESPACES[3], "P") == kvcache.KVEntry("p", None)
    got = invoke("kv", "key", "get", "P", "--namespace-id", NAMESPACES[3], "--remote")
    assert got.stdout == "p"


def test_bulk_put_splits_the_file_by_10000(
    remote: MiniflareRest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    call = Api.call

    async def counted(self: Api, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {path}")
        return await call(self, method, path, *args, **kwargs)

    monkeypatch.setattr(Api, "call", counted)
    entries = [{"key": f"k{i:05}", "value": str(i)} for i in range(12_000)]
    (tmp_path / "bulk.json").write_text(json.dumps(entries))
    result = invoke(
        "kv", "bulk", "put", "bulk.json", "--binding", "CACHE", "--no-preview", "--remote"
    )
    assert result.exit_code == 0, result.stderr
    assert sent == ["PUT /bulk", "PUT /bulk"]  # 10,000 + 2,000 pairs
    listed = invoke(
        "kv", "key", "list", "--prefix", "k1199", "--namespace-id", NAMESPACE, "--remote"
    )
    assert [row["name"] for row in json.loads(listed.stdout)] == [
        f"k{i}" for i in range(11990, 12000)
    ]
    got = invoke("kv", "key", "get", "k00000", "--namespace-id", NAMESPACE, "--remote")
    assert got.stdout == "0"


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        ("CLOUDFLARE_ACCOUNT_ID", "--remote: set CLOUDFLARE_ACCOUNT_ID"),
        ("CLOUDFLARE_API_TOKEN", "--remote: set CLOUDFLARE_API_TOKEN"),
    ],
)
def test_missing_account_or_token(
    remote: MiniflareRest, monkeypatch: pytest.MonkeyPatch, unset: str, message: str
) -> None:
    monkeypatch.delenv(unset)
    result = invoke("kv", "key", "get", "K", "--binding", "CACHE", "--remote")
    assert result.exit_code == 1
    assert_one_error_line(result, message)


def test_wrong_token_names_the_permission(
    remote: MiniflareRest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", remote.read_token)  # read-only
    result = invoke("kv", "key", "put", "K", "V", "--namespace-id", NAMESPACE, "--remote")
    assert result.exit_code == 1
    assert_one_error_line(result, "'Workers KV Storage Write' permission")
    assert remote.read_token not in result.stderr


def test_unknown_binding_and_store_flag(remote: MiniflareRest) -> None:
    result = invoke("kv", "key", "get", "K", "--binding", "NOPE", "--remote")
    assert result.exit_code == 1
    assert_one_error_line(result, "no binding 'NOPE'")
    both = invoke("kv", "key", "get", "K", "--store", "memory://", "--remote", "--binding", "CACHE")
    assert both.exit_code == 2 and "--store and --remote exclude each other" in both.stderr


def test_namespace_list_remote_says_it_is_not_supported(remote: MiniflareRest) -> None:
    result = invoke("kv", "namespace", "list", "--remote")
    assert result.exit_code == 1
    assert_one_error_line(result, "kv namespace list --remote: kvcache does not list")
