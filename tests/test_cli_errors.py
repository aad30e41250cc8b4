"""Hostile input to the CLI: one `Error:` line naming the flag or argument at fault, the
documented exit status, no traceback (unless --debug), and nothing created or changed.

Behaviour through click's runner; streams, argv bytes, tracebacks and broken pipes
through real child processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_helpers import (
    assert_one_error_line,
    child,
    files_in,
    invoke,
    kv,
    lib,
    snapshot,
    sqlite_url,
)
from cli_helpers import clean_env as clean_env  # noqa: F401 (autouse fixture)
from kvcache.cli import cli

READS = [
    ["kv", "key", "get", "k"],
    ["kv", "key", "list"],
    ["kv", "key", "delete", "k"],
    ["kv", "bulk", "get", "keys.json"],
    ["kv", "bulk", "delete", "-f", "keys.json"],
    ["kv", "namespace", "list"],
]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory; a kv command must not create anything in it by mistake."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def seeded(sandbox: Path) -> Path:
    """A store file with a few keys in two namespaces."""
    path = sandbox / "kv.sqlite3"
    lib(sqlite_url(path))("put_many", [{"key": f"k{i}", "value": f"v{i}"} for i in range(5)])
    lib(sqlite_url(path), "other")("put", "m", "v", metadata={"a": 1})
    return path


def assert_refused(store: Path, args: list[str], message: str) -> None:
    """`kvcache kv ARGS` on the store exits 1 with one line holding `message`, changing nothing."""
    before = snapshot(store)
    result = kv(sqlite_url(store), *args)
    assert result.exit_code == 1
    assert_one_error_line(result, message)
    assert result.stdout == ""
    assert snapshot(store) == before


# -- a store that does not exist ----------------------------------------------------------------


@pytest.mark.parametrize("command", READS, ids=lambda c: " ".join(c[1:3]))
@pytest.mark.parametrize("store", ["sqlite:///typo/x.db", "default"])
def test_a_read_of_a_missing_store_says_so_and_creates_nothing(
    sandbox: Path, command: list[str], store: str
) -> None:
    (sandbox / "keys.json").write_text('["k"]')
    before = files_in(sandbox)
    args = command if store == "default" else ["--store", store, *command]
    result = invoke(*args)
    assert result.exit_code == 1
    path = "typo/x.db" if store != "default" else ".kvcache/kv.sqlite3"
    assert_one_error_line(result, f"no store at {path} (no such file); nothing was created")
    assert ("--store sqlite:///typo/x.db" if store != "default" else "the default store") in (
        result.stderr
    )
    assert files_in(sandbox) == before  # no .kvcache/, no typo/, no file


def test_a_write_creates_the_store(sandbox: Path) -> None:
    assert invoke("--store", "sqlite:///new/x.db", "kv", "key", "put", "k", "v").exit_code == 0
    assert (sandbox / "new" / "x.db").is_file()
    assert invoke("--store", "sqlite:///new/x.db", "kv", "key", "list").exit_code == 0


def test_a_refused_write_creates_no_store(sandbox: Path) -> None:
    for args in (["k", "v", "--ttl", "5"], ["", "v"], ["k", "v", "--metadata", "[" * 2000]):
        result = invoke("--store", "sqlite:///new/x.db", "kv", "key", "put", *args)
        assert result.exit_code == 1, result.stderr
    (sandbox / "bad.json").write_text('[{"key": "k", "value": 1}]')
    assert invoke("--store", "sqlite:///new/x.db", "kv", "bulk", "put", "bad.json").exit_code == 1
    assert files_in(sandbox) == {"bad.json"}


# -- store URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("memory", "--store 'memory' is not a store URL; did you mean memory://?"),
        ("redis", "did you mean redis://127.0.0.1:6379/0?"),
        ("sqlite", "did you mean sqlite:///path/to/kv.sqlite3?"),
        ("data/kv.db", "did you mean sqlite:///data/kv.db?"),
        ("/srv/kv.sqlite3", "did you mean sqlite:////srv/kv.sqlite3?"),
        ("junk", "a store URL looks like memory://"),
        ("bogus://x", "--store bogus://x: unknown store URL"),
        ("redis://[::1", "--store redis://[::1: malformed store URL 'redis://[::1': Invalid IPv6"),
        ("sqlite://host/x.db", "has a host"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout='soon'"),
        ("redis://127.0.0.1:1/0", "--store redis://127.0.0.1:1/0: redis: cannot connect"),
        ("redis://127.0.0.1:6379/x", "the path must be a database number"),
    ],
)
def test_bad_store_urls_name_the_flag(sandbox: Path, store: str, message: str) -> None:
    result = invoke("--store", store, "kv", "key", "put", "k", "v")
    assert result.exit_code == 1
    assert_one_error_line(result, message)
    assert files_in(sandbox) == set()


def test_a_password_in_a_malformed_url_is_hidden(sandbox: Path) -> None:
    result = invoke("--store", "redis://user:s3cret@[::1", "kv", "key", "list")
    assert_one_error_line(result, "redis://user:***@[::1")
    assert "s3cret" not in result.stderr


def test_the_environment_variable_is_named(sandbox: Path) -> None:
    result = invoke("kv", "key", "list", env={"KVCACHE_STORE": "memory"})
    assert_one_error_line(result, "KVCACHE_STORE 'memory' is not a store URL")


def test_empty_namespace_names_the_flag(seeded: Path) -> None:
    result = kv(sqlite_url(seeded), "key", "list", "--namespace", "")
    assert_one_error_line(result, "--namespace: the namespace name must not be empty")


# -- arguments and flags ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["key", "put", "", "v"], "KEY: Key name cannot be empty."),
        (["key", "put", "..", "v"], 'KEY: ".." is not allowed as a key name.'),
        (["key", "put", "x" * 513, "v"], "KEY: KV PUT failed: 414 UTF-8 encoded length of 513"),
        (["key", "get", "x" * 600], "KEY: KV GET failed: 414"),
        (["key", "delete", ""], "KEY: Key name cannot be empty."),
        (["key", "put", "k", "\ud800"], "VALUE is not valid text"),
        (["key", "put", "k", "v", "--metadata", "[" * 5000], "--metadata is not valid JSON"),
        (["key", "put", "k", "v", "--metadata", '"' + "m" * 2000 + '"'], "--metadata: KV PUT "),
        (["key", "put", "k", "v", "--metadata", "Infinity"], "--metadata is not valid JSON"),
        (["key", "put", "k", "--path", "missing.bin"], "cannot read missing.bin"),
        (["key", "put", "k", "--path", "."], "cannot read .: Is a directory"),
        (["key", "list", "--prefix", "p" * 513], "--prefix: KV GET failed: 414"),
    ],
)
def test_bad_arguments_name_the_argument(seeded: Path, args: list[str], message: str) -> None:
    assert_refused(seeded, args, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"key": "k", "value": "v"}', "must hold a JSON array of entry objects, not object"),
        (b'"text"', "not string"),
        (b"null", "not null"),
        (b"12", "not number"),
        (b"[" * 100_000, "is not valid JSON: maximum recursion depth"),
        (b"\xff\xfe[]", "is not valid JSON"),
        (b'[{"key": "k", "value": "\xff"}]', "is not valid JSON"),
        (b"[NaN]", "is not valid JSON: NaN is not JSON"),
        (b"", "is not valid JSON"),
        (b"[[1, 2], [3]]", "entry 0: must be an object, not array"),
        (b'[{"key": "k", "value": {"nested": [1]}}]', 'needs a "value" string'),
        (b'[{"key": "k", "value": "v", "expiration_ttl": "60"}]', "must be a number, not string"),
        (b'[{"key": "k", "value": "v", "expiration_ttl": 1e999}]', "Invalid expiration_ttl of 0"),
        (b'[{"key": "k", "value": "v", "expiration": ' + b"9" * 500 + b"}]", "out of range"),
        (b'[{"key": "k", "value": "v", "base64": "yes"}]', '"base64" must be true or false'),
        (b'[{"key": "k", "value": "@@", "base64": true}]', "Value is not valid base64."),
        (b'[{"key": "k", "value": "v", "metadata": ' + b"[" * 600 + b"]" * 600 + b"}]", "413"),
        (b'[{"key": "\\ud800", "value": "v"}]', "Key name is not valid Unicode."),
    ],
)
def test_bad_bulk_put_files_write_nothing(seeded: Path, content: bytes, message: str) -> None:
    (seeded.parent / "in.json").write_bytes(content)
    assert_refused(seeded, ["bulk", "put", "in.json"], message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"name": "k"}', "must hold a JSON array of key strings"),
        (b'[1, {"nom": "k"}, ["k"]]', "3 of 3 entries in keys.json are invalid, nothing was done"),
        (b'["k0", ""]', "entry 1 (''): KV "),
        (b"[" * 100_000, "is not valid JSON"),
    ],
)
@pytest.mark.parametrize("command", [["get"], ["delete", "-f"]])
def test_bad_bulk_key_files_do_nothing(
    seeded: Path, content: bytes, message: str, command: list[str]
) -> None:
    (seeded.parent / "keys.json").write_bytes(content)
    assert_refused(seeded, ["bulk", *command, "keys.json"], message)


def test_a_byte_order_mark_is_allowed(seeded: Path) -> None:
    (seeded.parent / "in.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps([{"key": "b", "value": "o"}]).encode()
    )
    assert kv(sqlite_url(seeded), "bulk", "put", "in.json").exit_code == 0
    assert lib(sqlite_url(seeded))("get", "b") == "o"


def test_a_bug_is_still_one_line_that_points_at_debug(
    seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net under every command: an unexpected exception is one line, not a trace."""

    def broken(text: str) -> str:
        raise RuntimeError("something broke")

    monkeypatch.setattr(sys.modules["kvcache.cli.key"], "printable", broken)
    before = snapshot(seeded)
    result = CliRunner().invoke(cli, ["--store", sqlite_url(seeded), "kv", "key", "put", "k", "v"])
    assert result.exit_code == 1
    assert_one_error_line(
        result, "unexpected RuntimeError: something broke (a bug in kvcache; --debug shows"
    )
    assert snapshot(seeded) == before
    debug = CliRunner().invoke(
        cli, ["--store", sqlite_url(seeded), "kv", "key", "put", "k", "v", "--debug"]
    )
    assert "Traceback" in debug.stderr and "RuntimeError: something broke" in debug.stderr


# -- real processes: streams, argv bytes, tracebacks --------------------------------------------


HOSTILE: list[list[str | bytes]] = [
    ["kv", "key", "put", "k", "v", "--ttl", "99999999999999"],
    ["kv", "key", "put", "k", "v", "--expiration", "1" + "0" * 500],
    ["kv", "key", "put", "k", "v", "--metadata", "[" * 100_000],
    ["--store", "redis://[::1", "kv", "key", "list"],
    ["--store", "memory", "kv", "key", "list"],
    ["--store", "sqlite:///typo/x.db", "kv", "key", "list"],
    ["kv", "key", "get", b"\xff\xfe"],
    ["kv", "key", "put", "k", "v", "--remote"],
    ["kv", "bulk", "put", "deep.json"],
    ["kv", "bulk", "put", "notlist.json"],
    ["kv", "bulk", "put", "badutf8.json"],
    ["kv", "bulk", "delete", "deep.json", "--force"],
    ["kv", "key", "put", "k", "v", "--binding", "NOPE"],
]


@pytest.fixture
def files(sandbox: Path) -> Path:
    (sandbox / "deep.json").write_bytes(b"[" * 200_000)
    (sandbox / "notlist.json").write_bytes(b'{"a": 1}')
    (sandbox / "badutf8.json").write_bytes(b'[{"key": "\xc3", "value": "v"}]')
    lib(sqlite_url(sandbox / "kv.sqlite3"))("put", "keep", "v")
    return sandbox


@pytest.mark.parametrize("args", HOSTILE, ids=lambda a: " ".join(map(str, a))[:40])
def test_hostile_input_in_a_real_process_is_one_line(files: Path, args: list[str | bytes]) -> None:
    store = sqlite_url(files / "kv.sqlite3")
    before = snapshot(files / "kv.sqlite3")
    result = child(*args, env={"KVCACHE_STORE": store}, cwd=files, text=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, stderr
    assert_one_error_line(result, "")
    assert result.stdout == b""
    assert snapshot(files / "kv.sqlite3") == before
    assert not (files / "typo").exists() and not (files / ".kvcache").exists()


def test_value_bytes_from_argv_are_stored_as_they_came(sandbox: Path) -> None:
    store = sqlite_url(sandbox / "kv.sqlite3")
    result = child("--store", store, "kv", "key", "put", "k", b"\xff\xfeok\xc3", text=False)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == 'Writing the value "\ufffd\ufffdok\ufffd" to key "k" on namespace default.\n'.encode()
    )
    assert lib(store)("get", "k", type="bytes") == b"\xff\xfeok\xc3"
    raw = child("--store", store, "kv", "key", "get", "k", text=False)
    assert raw.stdout == b"\xff\xfeok\xc3"


def test_debug_shows_the_traceback(sandbox: Path) -> None:
    args = [
        "--store",
        sqlite_url(sandbox / "kv.sqlite3"),
        "kv",
        "key",
        "put",
        "k",
        "v",
        "--ttl",
        "5",
    ]
    plain = child(*args)
    assert_one_error_line(plain, "--ttl 5: KV PUT failed: 400 Invalid expiration_ttl of 5.")
    for debug in (
        child(*args, "--debug"),
        child("--debug", *args),
        child(*args, env={"KVCACHE_DEBUG": "1"}),
    ):
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr
        assert (
            "kvcache.KVValidationError: KV PUT failed: 400 Invalid expiration_ttl" in debug.stderr
        )
        assert debug.stderr.rstrip().splitlines()[-1].startswith("Error: --ttl 5: ")
    assert "Traceback" not in child(*args, env={"KVCACHE_DEBUG": "0"}).stderr


def test_usage_errors_exit_2_without_traceback(sandbox: Path) -> None:
    for args in (["kv", "key", "put"], ["kv", "key", "put", "k", "v", "--nope"], ["kv", "nope"]):
        result = child(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "Error:" in result.stderr


def test_a_closed_pipe_ends_quietly(sandbox: Path) -> None:
    store = sqlite_url(sandbox / "kv.sqlite3")
    lib(store)("put_many", [{"key": f"key-{i:05d}", "value": "v"} for i in range(5000)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvcache", "--store", store, "kv", "key", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"[\n  {\n    "
    proc.stdout.close()  # like `| head`
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0  # click's choice for a reader that went away
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
