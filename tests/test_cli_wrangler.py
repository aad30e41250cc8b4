"""The CLI as a wrangler user meets it: bindings, wrangler's flags and numbers, its output
lines, `kv namespace list` (sqlite, redis, memory). In-process through click's runner."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import assert_one_error_line, invoke, kv, lib, sqlite_url
from cli_helpers import clean_env as clean_env  # noqa: F401 (autouse fixture)
from kvcache.cli._bindings import strip_jsonc
from kvcache.kv.namespaces import list_namespaces

EMBEDDED = "sqlite:///.kvcache/kv.sqlite3"

WRANGLER_TOML = """
name = "shop-app"

[[kv_namespaces]]
binding = "CACHE"
id = "0f2ac74b498b48028cb68387c421e279"
preview_id = "6a1ddb03f3ec4f7bb4b5a3c4a1f3f6a2"

[[kv_namespaces]]
binding = "WEBHOOKS"
id = "e29b263ab50e42ce9b637fa8370175e8"

[env.staging]
kv_namespaces = [{ binding = "CACHE", id = "staging-cache" }]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with an existing (empty) embedded store."""
    monkeypatch.chdir(tmp_path)
    lib(EMBEDDED)("list")
    return tmp_path


def embedded(namespace: str) -> Any:
    return lib(EMBEDDED, namespace)


# -- --binding ----------------------------------------------------------------------------------


def test_binding_from_wrangler_toml(project: Path) -> None:
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    result = invoke("kv", "key", "put", "k", "v", "--binding", "WEBHOOKS")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        'Writing the value "v" to key "k" on namespace e29b263ab50e42ce9b637fa8370175e8.\n'
    )
    assert embedded("e29b263ab50e42ce9b637fa8370175e8")("get", "k") == "v"
    # --binding before `kv` works too, and a read finds the same namespace.
    get = invoke("--binding", "WEBHOOKS", "kv", "key", "get", "k")
    assert (get.exit_code, get.stdout) == (0, "v")


def test_binding_with_preview_id_needs_a_choice_for_writes(project: Path) -> None:
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    ambiguous = invoke("kv", "key", "put", "k", "v", "--binding", "CACHE")
    assert ambiguous.exit_code == 1
    assert_one_error_line(ambiguous, "pass --preview or --no-preview")
    assert embedded("0f2ac74b498b48028cb68387c421e279")("list").keys == []
    assert invoke("kv", "key", "put", "k", "p", "--binding", "CACHE", "--preview").exit_code == 0
    assert invoke("kv", "key", "put", "k", "m", "--binding", "CACHE", "--no-preview").exit_code == 0
    assert embedded("6a1ddb03f3ec4f7bb4b5a3c4a1f3f6a2")("get", "k") == "p"
    assert embedded("0f2ac74b498b48028cb68387c421e279")("get", "k") == "m"
    # A read without the choice uses the id, as wrangler's `kv key get` does.
    assert invoke("kv", "key", "get", "k", "--binding", "CACHE").stdout == "m"
    no_preview = invoke("kv", "key", "get", "k", "--binding", "WEBHOOKS", "--preview")
    assert_one_error_line(no_preview, "--binding WEBHOOKS --preview")


def test_binding_from_a_wrangler_environment(project: Path) -> None:
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    assert (
        invoke("kv", "key", "put", "k", "v", "--binding", "CACHE", "-e", "staging").exit_code == 0
    )
    assert embedded("staging-cache")("get", "k") == "v"
    missing = invoke("kv", "key", "put", "k", "v", "--binding", "CACHE", "--env", "prod")
    assert missing.exit_code == 1
    assert_one_error_line(missing, "--env prod: wrangler.toml has no [env.prod] section")


def test_binding_from_wrangler_jsonc_with_comments(project: Path) -> None:
    (project / "wrangler.jsonc").write_text(
        """{
          // the cache
          "kv_namespaces": [
            { "binding": "CACHE", "id": "jsonc-id", }, /* trailing comma above */
          ],
          "vars": { "URL": "https://example.com/a,}//not-a-comment" },
        }"""
    )
    assert invoke("kv", "key", "put", "k", "v", "--binding", "CACHE").exit_code == 0
    assert embedded("jsonc-id")("get", "k") == "v"


def test_wrangler_json_is_read_before_toml_and_config_names_the_file(project: Path) -> None:
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    (project / "wrangler.json").write_text(
        json.dumps({"kv_namespaces": [{"binding": "WEBHOOKS", "id": "from-json"}]})
    )
    assert invoke("kv", "key", "put", "k", "v", "--binding", "WEBHOOKS").exit_code == 0
    assert embedded("from-json")("get", "k") == "v"
    (project / "other.toml").write_text(WRANGLER_TOML)
    flags = ["--binding", "WEBHOOKS", "--config", "other.toml"]
    assert invoke("kv", "key", "put", "k", "w", *flags).exit_code == 0
    assert embedded("e29b263ab50e42ce9b637fa8370175e8")("get", "k") == "w"


def test_kvcache_toml_binding_names_store_and_namespace(project: Path) -> None:
    other = project / "other.sqlite3"
    (project / "kvcache.toml").write_text(
        f"""
        [kv.bindings.CACHE]
        store = "{sqlite_url(other)}"
        namespace = "CACHE"

        [kv.bindings.PLAIN]
        """
    )
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    result = invoke("kv", "key", "put", "k", "v", "--binding", "CACHE")
    assert result.exit_code == 0, result.stderr
    assert lib(sqlite_url(other), "CACHE")("get", "k") == "v"  # kvcache.toml wins over wrangler
    assert invoke("kv", "key", "put", "k", "p", "--binding", "PLAIN").exit_code == 0
    assert embedded("PLAIN")("get", "k") == "p"  # no namespace given: the binding's name
    # A binding only wrangler.toml has is still found there.
    assert invoke("kv", "key", "put", "k", "w", "--binding", "WEBHOOKS").exit_code == 0
    assert embedded("e29b263ab50e42ce9b637fa8370175e8")("get", "k") == "w"


def test_kvcache_toml_top_level_store_is_the_default(project: Path) -> None:
    other = project / "service.sqlite3"
    (project / "kvcache.toml").write_text(f'store = "{sqlite_url(other)}"\n')
    assert invoke("kv", "key", "put", "k", "v").exit_code == 0
    assert lib(sqlite_url(other))("get", "k") == "v"
    # KVCACHE_STORE and --store come first.
    env_store = sqlite_url(project / "env.sqlite3")
    assert invoke("kv", "key", "put", "k", "e", env={"KVCACHE_STORE": env_store}).exit_code == 0
    assert lib(env_store)("get", "k") == "e"


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["--binding", "CACHE"], "--binding CACHE: none of kvcache.toml, wrangler.json"),
        ({"wrangler.toml": WRANGLER_TOML}, ["--binding", "NOPE"], "no binding 'NOPE' in"),
        ({"wrangler.toml": "[[kv_namespaces]\n"}, ["--binding", "X"], "is not valid TOML"),
        ({"wrangler.json": "{oops"}, ["--binding", "X"], "wrangler.json is not valid JSON"),
        ({"wrangler.toml": "kv_namespaces = 5"}, ["--binding", "X"], "must be an array"),
        ({"kvcache.toml": "[kv.bindings.X]\nnamspace = 'n'"}, ["--binding", "X"], "namspace"),
        ({"kvcache.toml": "[kv.bindings.X]\nstore = 5"}, ["--binding", "X"], "store must be"),
        ({"kvcache.toml": "store = ["}, [], "kvcache.toml is not valid TOML"),
        ({}, ["--binding", "X", "--config", "missing.toml"], "--config missing.toml"),
    ],
)
def test_bad_or_missing_binding_is_one_error_line(
    project: Path, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, text in files.items():
        (project / name).write_text(text)
    result = invoke("kv", "key", "put", "k", "v", *args)
    assert result.exit_code == 1
    assert_one_error_line(result, message)
    assert embedded("X")("list").keys == []


def test_binding_and_namespace_id_exclude_each_other(project: Path) -> None:
    (project / "wrangler.toml").write_text(WRANGLER_TOML)
    result = invoke("kv", "key", "put", "k", "v", "--binding", "CACHE", "--namespace-id", "x")
    assert result.exit_code == 2
    assert "--binding and --namespace-id" in result.stderr


def test_strip_jsonc_keeps_strings() -> None:
    text = '{"a": "//x", "b": "/*y*/", "c": "\\"//\\"", /* c */ "d": [1, 2,], // e\n}'
    assert json.loads(strip_jsonc(text)) == {"a": "//x", "b": "/*y*/", "c": '"//"', "d": [1, 2]}
    # Line numbers survive, so an error still points at the right line.
    assert strip_jsonc("/* a\nb */ 1").count("\n") == 1


# -- --namespace-id, --local, --remote ----------------------------------------------------------


def test_namespace_id_is_the_namespace(project: Path) -> None:
    assert invoke("kv", "key", "put", "k", "v", "--namespace-id", "abc").exit_code == 0
    assert embedded("abc")("get", "k") == "v"
    assert invoke("kv", "key", "put", "k", "v", "--namespace-id", "abc", "--local").exit_code == 0


def test_remote_without_a_namespace_is_a_clear_error(project: Path) -> None:
    result = invoke("kv", "key", "put", "k", "v", "--remote")
    assert result.exit_code == 1
    assert_one_error_line(result, "--remote needs --binding NAME")
    both = invoke("kv", "key", "get", "k", "--remote", "--local")
    assert both.exit_code == 2
    assert "--local and --remote exclude each other" in both.stderr
    assert embedded("default")("list").keys == []


def test_persist_to_points_at_store(project: Path) -> None:
    result = invoke("kv", "key", "list", "--persist-to", "state")
    assert result.exit_code == 2
    assert "--store sqlite:///state/kv.sqlite3" in result.stderr


# -- numbers as wrangler reads them -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120", 120), ("120.9", 120), ("1.2e2", 120), ("0x78", 120), (" 120 ", 120), ("+120", 120)],
)
def test_ttl_accepts_any_number(project: Path, text: str, seconds: int) -> None:
    before = int(time.time())
    assert invoke("kv", "key", "put", "k", "v", "--ttl", text).exit_code == 0
    (info,) = embedded("default")("list").keys
    assert before + seconds <= info.expiration <= int(time.time()) + seconds


def test_expiration_accepts_a_float(project: Path) -> None:
    at = int(time.time()) + 3600
    assert invoke("kv", "key", "put", "k", "v", "--expiration", f"{at}.75").exit_code == 0
    assert embedded("default")("list").keys[0].expiration == at


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        ("--expiration", "99999999999999", "--expiration 99999999999999: Value out of range"),
        ("--ttl", "99999999999999", "--ttl 99999999999999: Value out of range"),
        ("--ttl", "9" * 400, "99...: KV PUT failed: 400 Invalid expiration_ttl of 0."),
        ("--ttl", "1e400", "--ttl 1e400: KV PUT failed: 400 Invalid expiration_ttl of 0."),
        ("--ttl", "Infinity", "Invalid expiration_ttl of 0."),
        ("--ttl", "0x" + "f" * 300, "Invalid expiration_ttl of 0."),
        ("--ttl", "30", "--ttl 30: KV PUT failed: 400 Invalid expiration_ttl of 30."),
        ("--ttl", "-5", "Invalid expiration_ttl of -5"),
        ("--expiration", "1", "--expiration 1: KV PUT failed: 400 Invalid expiration of 1."),
    ],
)
def test_numbers_the_store_refuses_name_the_flag(
    project: Path, flag: str, text: str, message: str
) -> None:
    result = invoke("kv", "key", "put", "k", "v", flag, text)
    assert result.exit_code == 1
    assert_one_error_line(result, message)
    assert embedded("default")("list").keys == []


@pytest.mark.parametrize("text", ["abc", "", "NaN", "1_000", "12px", "0x", "inf"])
def test_a_ttl_that_is_not_a_number_is_a_usage_error(project: Path, text: str) -> None:
    result = invoke("kv", "key", "put", "k", "v", "--ttl", text)
    assert result.exit_code == 2
    assert "Invalid value for '--ttl'" in result.stderr
    assert "is not a number" in result.stderr


# -- output lines -------------------------------------------------------------------------------


def test_put_and_delete_print_wranglers_lines_on_stdout(project: Path) -> None:
    (project / "logo.bin").write_bytes(b"\x89PNG")
    put = invoke("kv", "key", "put", "k", "hello", "--metadata", '{"a": 1}', "--namespace", "N")
    assert (
        put.stdout
        == 'Writing the value "hello" to key "k" on namespace N with metadata "{"a":1}".\n'
    )
    assert put.stderr == ""
    path_put = invoke("kv", "key", "put", "logo", "--path", "logo.bin")
    assert (
        path_put.stdout
        == 'Writing the contents of logo.bin to the key "logo" on namespace default.\n'
    )
    deleted = invoke("kv", "key", "delete", "k", "--namespace", "N")
    assert deleted.stdout == 'Deleting the key "k" on namespace N.\n'
    assert deleted.stderr == ""
    # Falsy metadata is not mentioned, as in JavaScript.
    zero = invoke("kv", "key", "put", "z", "v", "--metadata", "0")
    assert zero.stdout == 'Writing the value "v" to key "z" on namespace default.\n'
    assert embedded("default")("get_with_metadata", "z").metadata == 0


def test_a_refused_put_prints_no_confirmation(project: Path) -> None:
    result = invoke("kv", "key", "put", "k", "v", "--ttl", "30")
    assert (result.exit_code, result.stdout) == (1, "")


def test_get_of_a_missing_key(project: Path) -> None:
    # A conscious difference (docs/cli.md): wrangler prints "Value not found" on stdout and
    # exits 0; kvcache says it on stderr and exits 1, so a script cannot take it for a value.
    result = invoke("kv", "key", "get", "absent")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "Value not found\n")


# -- kv namespace list --------------------------------------------------------------------------


def test_namespace_list_on_sqlite(project: Path) -> None:
    empty = invoke("kv", "namespace", "list")
    assert (empty.exit_code, json.loads(empty.stdout)) == (0, [])
    for namespace in ("b", "a", "ü", "C"):
        embedded(namespace)("put", "k", "v")
    embedded("expired")("put", "k", "v", expiration_ttl=60)
    embedded("emptied")("put", "k", "v")
    embedded("emptied")("delete", "k")
    listed = json.loads(invoke("kv", "namespace", "list").stdout)
    assert listed == [{"id": ns, "title": ns} for ns in ("C", "a", "b", "expired", "ü")]
    assert sorted(os.listdir(project / ".kvcache")) == ["kv.sqlite3"]  # no -wal/-shm left
    # 61 s later the namespace whose only key expired is gone.
    later = asyncio.run(list_namespaces(EMBEDDED, clock=lambda: time.time() + 61))
    assert later == ["C", "a", "b", "ü"]


def test_namespace_list_on_redis(redis_url: str) -> None:
    prefix = uuid.uuid4().hex
    live, expiring, odd = f"{prefix}-live", f"{prefix}-expiring", f"{prefix}}}:odd%7D"
    lib(redis_url, live)("put", "k", "v")
    lib(redis_url, odd)("put", "k", "v")
    lib(redis_url, expiring)("put", "k", "v", expiration_ttl=60)
    lib(redis_url, f"{prefix}-value")("put", "x}:idx", "v")  # a key whose name ends like an index
    result = kv(redis_url, "namespace", "list")
    assert result.exit_code == 0, result.stderr
    mine = [item["id"] for item in json.loads(result.stdout) if item["id"].startswith(prefix)]
    assert mine == sorted([live, expiring, odd, f"{prefix}-value"])


def test_namespace_list_on_redis_cluster(redis_cluster_url: str) -> None:
    names = sorted(f"{uuid.uuid4().hex}-{i}" for i in range(6))  # spread over the nodes
    for name in names:
        lib(redis_cluster_url, name)("put", "k", "v")
    result = kv(redis_cluster_url, "namespace", "list")
    assert result.exit_code == 0, result.stderr
    listed = {item["id"] for item in json.loads(result.stdout)}
    assert set(names) <= listed


def test_namespace_list_on_memory_is_empty() -> None:
    result = kv("memory://", "namespace", "list")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
