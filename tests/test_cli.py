"""The `kvcache` command against real SQLite files: in-process through click's runner,
and as a real child process (`python -m kvcache.cli`), with and without a terminal."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import kvcache
from cli_helpers import assert_one_error_line, child, invoke, kv, lib, sqlite_url
from cli_helpers import clean_env as clean_env  # noqa: F401 (autouse fixture)

NOW = time.time


@pytest.fixture
def store(tmp_path: Path) -> str:
    """An empty store at an absolute sqlite URL in this test's directory (sqlite:////abs/path).

    It exists already: a command that only reads refuses a store file that does not.
    """
    url = sqlite_url(tmp_path / "kv.sqlite3")
    lib(url)("list")
    return url


def all_keys(store: str, namespace: str = "default") -> list[str]:
    result = kv(store, "key", "list", "--namespace", namespace)
    assert result.exit_code == 0, result.stderr
    return [item["name"] for item in json.loads(result.stdout)]


def write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


# -- key put / get / list / delete ------------------------------------------------------------


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kvcache, version {kvcache.__version__}"


def test_put_get_text_round_trip(store: str) -> None:
    assert kv(store, "key", "put", "greeting", "héllo wörld").exit_code == 0
    raw = kv(store, "key", "get", "greeting")
    assert raw.exit_code == 0
    assert raw.stdout_bytes == "héllo wörld".encode()  # raw bytes, no newline
    text = kv(store, "key", "get", "greeting", "--text")
    assert text.stdout == "héllo wörld\n"
    assert lib(store)("get", "greeting") == "héllo wörld"


def test_put_path_stores_binary_bytes(store: str, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    (tmp_path / "blob.bin").write_bytes(blob)
    assert kv(store, "key", "put", "blob", "--path", str(tmp_path / "blob.bin")).exit_code == 0
    assert kv(store, "key", "get", "blob").stdout_bytes == blob
    assert lib(store)("get", "blob", type="bytes") == blob
    # --metadata output is JSON; bytes that are not UTF-8 come out as base64, as bulk put reads it
    shown = json.loads(kv(store, "key", "get", "blob", "--metadata").stdout)
    assert shown == {"value": base64.b64encode(blob).decode(), "base64": True, "metadata": None}


def test_put_ttl_and_expiration(store: str) -> None:
    before = int(NOW())
    assert kv(store, "key", "put", "short", "v", "--ttl", "120").exit_code == 0
    at = before + 3600
    assert kv(store, "key", "put", "fixed", "v", "--expiration", str(at)).exit_code == 0
    listed = {item["name"]: item for item in json.loads(kv(store, "key", "list").stdout)}
    assert before + 120 <= listed["short"]["expiration"] <= int(NOW()) + 120
    assert listed["fixed"]["expiration"] == at
    # The stored expiry is real: a reader whose clock is 121 s ahead no longer sees the key.
    assert lib(store, clock=lambda: NOW() + 121)("get", "short") is None
    assert lib(store, clock=lambda: NOW() + 121)("get", "fixed") == "v"


def test_put_metadata_round_trip(store: str) -> None:
    meta = {"tag": "x", "n": [1, 2], "ü": None}
    assert kv(store, "key", "put", "k", "v", "--metadata", json.dumps(meta)).exit_code == 0
    result = kv(store, "key", "get", "k", "--metadata")
    assert json.loads(result.stdout) == {"value": "v", "metadata": meta}
    assert json.loads(kv(store, "key", "list").stdout) == [{"name": "k", "metadata": meta}]
    assert lib(store)("get_with_metadata", "k").metadata == meta


def test_put_bad_metadata_is_one_error_line(store: str) -> None:
    for metadata in ("{not json", "NaN", "[1, 2"):
        result = kv(store, "key", "put", "k", "v", "--metadata", metadata)
        assert result.exit_code == 1
        assert_one_error_line(result, "--metadata is not valid JSON")
        assert lib(store)("get", "k") is None


@pytest.mark.parametrize("metadata", [[1, 2], "text", 5, {"a": [None, True]}])
def test_put_metadata_may_be_any_json_value(store: str, metadata: Any) -> None:
    # As wrangler and the binding: metadata is any JSON value, not only an object.
    result = kv(store, "key", "put", "k", "v", "--metadata", json.dumps(metadata))
    assert result.exit_code == 0, result.stderr
    compact = json.dumps(metadata, separators=(",", ":"))
    assert result.stdout == (
        f'Writing the value "v" to key "k" on namespace default with metadata "{compact}".\n'
    )
    assert lib(store)("get_with_metadata", "k").metadata == metadata


def test_put_refused_by_store_writes_nothing(store: str) -> None:
    result = kv(store, "key", "put", "k", "v", "--ttl", "30")
    assert result.exit_code == 1
    assert_one_error_line(
        result, "Invalid expiration_ttl of 30. Expiration TTL must be at least 60."
    )
    assert lib(store)("get", "k") is None
    assert_one_error_line(kv(store, "key", "put", "", "v"), "Key name cannot be empty.")
    too_long = kv(store, "key", "get", "x" * 513)
    assert_one_error_line(too_long, "exceeds key length limit of 512")


@pytest.mark.parametrize("extra", [[], ["v", "--path", "f"]], ids=["neither", "both"])
def test_put_needs_exactly_one_of_value_and_path(store: str, extra: list[str]) -> None:
    result = kv(store, "key", "put", "k", *extra)
    assert result.exit_code == 2
    assert "give exactly one of VALUE or --path FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_put_path_missing_file(store: str, tmp_path: Path) -> None:
    result = kv(store, "key", "put", "k", "--path", str(tmp_path / "nope.bin"))
    assert result.exit_code == 1
    assert_one_error_line(result, "No such file or directory")


def test_get_missing_key_says_value_not_found(store: str) -> None:
    for flags in ([], ["--text"], ["--metadata"]):
        result = kv(store, "key", "get", "absent", *flags)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr == "Value not found\n"


def test_delete(store: str) -> None:
    kv(store, "key", "put", "a", "1")
    kv(store, "key", "put", "b", "2")
    assert kv(store, "key", "delete", "a").exit_code == 0
    assert kv(store, "key", "delete", "never-there").exit_code == 0
    assert all_keys(store) == ["b"]


def test_list_follows_every_page(store: str) -> None:
    entries = [{"key": f"item:{i:05d}", "value": str(i)} for i in range(2345)]
    entries += [{"key": f"other:{i}", "value": "x"} for i in range(10)]
    lib(store)("put_many", entries)
    everything = all_keys(store)
    assert len(everything) == 2355  # more than two pages of 1000
    assert everything == sorted(everything)
    prefixed = json.loads(kv(store, "key", "list", "--prefix", "item:").stdout)
    assert [item["name"] for item in prefixed] == [f"item:{i:05d}" for i in range(2345)]
    assert json.loads(kv(store, "key", "list", "--prefix", "zzz").stdout) == []


# -- store and namespace selection --------------------------------------------------------------


def test_namespace_and_store_flags_on_group_and_leaf(store: str, tmp_path: Path) -> None:
    other = "sqlite:///" + str(tmp_path / "other.sqlite3")
    assert invoke("--store", store, "--namespace", "A", "kv", "key", "put", "k", "a").exit_code == 0
    # Flags at the end (wrangler style) override the group's.
    assert invoke("kv", "key", "put", "k", "b", "--store", store, "--namespace", "B").exit_code == 0
    assert invoke("--store", other, "kv", "key", "put", "k", "c", "--store", store).exit_code == 0
    get = invoke("--namespace", "A", "kv", "key", "get", "k", "--store", store)
    assert get.stdout == "a"
    assert lib(store, "B")("get", "k") == "b"
    assert lib(store, "default")("get", "k") == "c"
    assert not Path(other.removeprefix("sqlite:///")).exists()


def test_env_vars_select_store_and_namespace(store: str) -> None:
    env = {"KVCACHE_STORE": store, "KVCACHE_NAMESPACE": "ENV"}
    assert invoke("kv", "key", "put", "k", "v", env=env).exit_code == 0
    assert lib(store, "ENV")("get", "k") == "v"
    # A flag beats the variable.
    assert invoke("--namespace", "FLAG", "kv", "key", "get", "k", env=env).exit_code == 1


def test_default_store_is_embedded_sqlite_in_cwd(tmp_path: Path) -> None:
    put = child("kv", "key", "put", "greeting", "hello", cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    assert (tmp_path / ".kvcache" / "kv.sqlite3").is_file()
    get = child("kv", "key", "get", "greeting", "--text", cwd=tmp_path)
    assert (get.returncode, get.stdout) == (0, "hello\n")


def test_child_process_with_env_store_and_errors(store: str, tmp_path: Path) -> None:
    env = {"KVCACHE_STORE": store}
    put = child("kv", "key", "put", "k", "v", "--metadata", '{"a": 1}', env=env)
    assert put.returncode == 0, put.stderr
    listed = child("kv", "key", "list", env=env)
    assert json.loads(listed.stdout) == [{"name": "k", "metadata": {"a": 1}}]
    version = child("--version")
    assert version.stdout.strip() == f"kvcache, version {kvcache.__version__}"
    missing = child("kv", "key", "get", "nope", env=env)
    assert (missing.returncode, missing.stderr) == (1, "Value not found\n")
    bad_scheme = child("--store", "bogus://x", "kv", "key", "list")
    assert bad_scheme.returncode == 1
    assert_one_error_line(bad_scheme, "unknown store URL")
    (tmp_path / "a-dir").mkdir()
    not_a_db = child("--store", "sqlite:///" + str(tmp_path / "a-dir"), "kv", "key", "list")
    assert not_a_db.returncode == 1
    assert_one_error_line(not_a_db, "sqlite:")
    refused = child("kv", "key", "put", "k", "v", "--ttl", "5", env=env)
    assert refused.returncode == 1
    assert_one_error_line(refused, "Expiration TTL must be at least 60.")


# -- bulk put ----------------------------------------------------------------------------------


def test_bulk_put_all_fields(store: str, tmp_path: Path) -> None:
    at = int(NOW()) + 7200
    path = write_json(
        tmp_path / "put.json",
        [
            {"key": "plain", "value": "text value"},
            {"key": "b64", "value": base64.b64encode(b"\x00\xffbin").decode(), "base64": True},
            {"key": "ttl", "value": '{"a":1}', "expiration_ttl": 3600, "metadata": {"tag": "x"}},
            {"key": "abs", "value": "v", "expiration": at},
            {"key": "both", "value": "v", "expiration": at, "expiration_ttl": 600},
        ],
    )
    result = kv(store, "bulk", "put", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Success!\n"
    assert result.stderr == ""  # no progress bar without a terminal, no warnings
    call = lib(store)
    assert call("get", "plain") == "text value"
    assert call("get", "b64", type="bytes") == b"\x00\xffbin"
    assert call("get_with_metadata", "ttl", type="json").metadata == {"tag": "x"}
    listed = {item["name"]: item for item in json.loads(kv(store, "key", "list").stdout)}
    assert listed["abs"]["expiration"] == at
    assert listed["both"]["expiration"] <= int(NOW()) + 600  # expiration_ttl wins
    assert lib(store, clock=lambda: NOW() + 3601)("get", "ttl") is None


def test_bulk_put_warns_about_unknown_properties(store: str, tmp_path: Path) -> None:
    path = write_json(tmp_path / "put.json", [{"key": "k", "value": "v", "colour": "red"}])
    result = kv(store, "bulk", "put", path)
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: unexpected properties")
    assert """entry 0 ('k'): ["colour"]""" in result.stderr
    assert lib(store)("get", "k") == "v"


def test_bulk_put_bad_entry_writes_nothing_and_names_it(store: str, tmp_path: Path) -> None:
    entries: list[Any] = [{"key": f"k{i}", "value": "v"} for i in range(20)]
    entries[7]["expiration_ttl"] = 30
    entries[12] = {"value": "no key"}
    entries[15] = "just a string"
    entries[16]["metadata"] = {"big": "x" * 2000}
    result = kv(store, "bulk", "put", write_json(tmp_path / "bad.json", entries))
    assert result.exit_code == 1
    assert_one_error_line(result, "4 of 20 entries in")
    line = result.stderr
    assert "nothing was written" in line
    assert "entry 7 ('k7'): KV PUT failed: 400 Invalid expiration_ttl of 30." in line
    assert 'entry 12: needs a "key" string' in line
    assert "entry 15 ('just a string'): must be an object, not string" in line
    assert "entry 16 ('k16'): KV PUT failed: 413 Metadata length of 2010" in line
    assert all_keys(store) == []


def test_bulk_put_names_only_the_first_twelve(store: str, tmp_path: Path) -> None:
    entries = [{"key": f"k{i:02d}", "value": i} for i in range(20)]
    result = kv(store, "bulk", "put", write_json(tmp_path / "bad.json", entries))
    assert_one_error_line(result, "20 of 20 entries")
    assert "entry 11 ('k11')" in result.stderr
    assert "entry 12 (" not in result.stderr
    assert result.stderr.rstrip().endswith("; and 8 more")


def test_bulk_put_batches_and_validates_the_whole_file_first(store: str, tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = [{"key": f"k{i:05d}", "value": "v"} for i in range(10_001)]
    bad = [*entries[:-1], {"key": ".", "value": "v"}]  # invalid only in the second batch
    result = kv(store, "bulk", "put", write_json(tmp_path / "bad.json", bad))
    assert result.exit_code == 1
    assert_one_error_line(result, "entry 10000 ('.'): ")
    assert lib(store)("list", limit=1).keys == []
    good = kv(store, "bulk", "put", write_json(tmp_path / "good.json", entries))
    assert good.exit_code == 0, good.stderr
    assert len(all_keys(store)) == 10_001


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[{'key': 'k'}]", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "is not valid JSON"),
        (b'{"key": "k", "value": "v"}', "must hold a JSON array of entry objects, not object"),
    ],
)
def test_bulk_put_unreadable_file(store: str, tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "in.json").write_bytes(content)
    result = kv(store, "bulk", "put", str(tmp_path / "in.json"))
    assert result.exit_code == 1
    assert_one_error_line(result, message)


def test_bulk_missing_file(store: str, tmp_path: Path) -> None:
    for command in ("put", "get", "delete"):
        result = kv(store, "bulk", command, str(tmp_path / "missing.json"))
        assert result.exit_code == 1
        assert_one_error_line(result, "cannot read")


def test_bulk_put_from_stdin(store: str) -> None:
    result = kv(store, "bulk", "put", "-", input=json.dumps([{"key": "k", "value": "v"}]))
    assert result.exit_code == 0
    assert lib(store)("get", "k") == "v"


# -- bulk get / delete -------------------------------------------------------------------------


def test_bulk_get(store: str, tmp_path: Path) -> None:
    lib(store)("put_many", [{"key": f"k{i:03d}", "value": f"v{i}"} for i in range(250)])
    wanted: list[Any] = [f"k{i:03d}" for i in range(0, 250, 2)] + ["absent", {"name": "k001"}]
    wanted.append("k000")  # duplicates collapse
    result = kv(store, "bulk", "get", write_json(tmp_path / "keys.json", wanted))
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) == 127  # more than one batch of 100
    assert found["k000"] == {"value": "v0"}
    assert found["k248"] == {"value": "v248"}
    assert found["k001"] == {"value": "v1"}
    assert found["absent"] == {"value": None}
    assert list(found)[:2] == ["k000", "k002"]  # file order


def test_list_output_feeds_bulk_get_and_delete(store: str, tmp_path: Path) -> None:
    lib(store)(
        "put_many", [{"key": f"n{i:04d}", "value": "v", "metadata": {"i": i}} for i in range(1500)]
    )
    lib(store)("put", "keep", "v")
    listing = kv(store, "key", "list", "--prefix", "n")
    (tmp_path / "list.json").write_text(listing.stdout, encoding="utf-8")
    got = kv(store, "bulk", "get", str(tmp_path / "list.json"))
    assert len(json.loads(got.stdout)) == 1500
    result = kv(store, "bulk", "delete", "--force", str(tmp_path / "list.json"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Success!\n"
    assert all_keys(store) == ["keep"]


def test_bulk_delete_plain_strings_with_short_force(store: str, tmp_path: Path) -> None:
    lib(store)("put_many", [{"key": k, "value": "v"} for k in ("a", "b", "c")])
    result = kv(store, "bulk", "delete", write_json(tmp_path / "k.json", ["a", "c", "zz"]), "-f")
    assert result.exit_code == 0
    assert all_keys(store) == ["b"]


def test_bulk_delete_refuses_without_terminal_or_force(store: str, tmp_path: Path) -> None:
    lib(store)("put", "a", "v")
    path = write_json(tmp_path / "k.json", ["a"])
    result = kv(store, "bulk", "delete", path, input="y\n")  # piped input is not a terminal
    assert result.exit_code == 1
    assert_one_error_line(result, "pass --force")
    assert all_keys(store) == ["a"]
    from_child = child("--store", store, "kv", "bulk", "delete", path)  # stdin: /dev/null
    assert from_child.returncode == 1
    assert_one_error_line(from_child, "stdin is not a terminal")
    assert all_keys(store) == ["a"]


def test_bulk_delete_bad_items_delete_nothing(store: str, tmp_path: Path) -> None:
    lib(store)("put_many", [{"key": k, "value": "v"} for k in ("a", "b")])
    items = ["a", {"nom": "b"}, 5]
    result = kv(store, "bulk", "delete", "-f", write_json(tmp_path / "k.json", items))
    assert_one_error_line(result, "2 of 3 entries")
    assert 'entry 1: must be a key string or an object with a "name" string' in result.stderr
    too_long = kv(store, "bulk", "delete", "-f", write_json(tmp_path / "l.json", ["a", "x" * 600]))
    assert_one_error_line(too_long, "exceeds key length limit of 512")
    assert all_keys(store) == ["a", "b"]


# -- with a terminal ---------------------------------------------------------------------------


def _run_on_pty(args: list[str], answer: bytes | None, on: str) -> tuple[int, str, str]:
    """Run the CLI with stdin ("stdin") or stderr ("stderr") on a pseudo-terminal.

    Returns (exit status, stdout, what the terminal received).
    """
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    env["TERM"] = "xterm"
    streams: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    streams[on] = slave
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvcache", *args],
        stdout=subprocess.PIPE,
        env=env,
        **streams,
    )
    os.close(slave)
    if answer is not None:
        os.write(master, answer)
    seen = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(), seen.decode(errors="replace")


def test_bulk_delete_asks_on_a_terminal(store: str, tmp_path: Path) -> None:
    lib(store)("put_many", [{"key": k, "value": "v"} for k in ("a", "b")])
    path = write_json(tmp_path / "k.json", ["a"])
    status, out, _ = _run_on_pty(["--store", store, "kv", "bulk", "delete", path], b"n\n", "stdin")
    assert (status, out) == (0, f'Not deleting keys read from "{path}".\n')
    assert all_keys(store) == ["a", "b"]
    status, out, _ = _run_on_pty(["--store", store, "kv", "bulk", "delete", path], b"y\n", "stdin")
    assert (status, out) == (0, "Success!\n")
    assert all_keys(store) == ["b"]


def test_bulk_put_shows_progress_on_a_terminal(store: str, tmp_path: Path) -> None:
    path = write_json(tmp_path / "put.json", [{"key": f"k{i}", "value": "v"} for i in range(50)])
    status, out, terminal = _run_on_pty(
        ["--store", store, "kv", "bulk", "put", path], None, "stderr"
    )
    assert (status, out) == (0, "Success!\n")
    assert "Writing" in terminal
    assert "50/50" in terminal
