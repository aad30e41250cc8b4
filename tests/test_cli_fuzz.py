"""Fuzzing the CLI: any command, flags and bulk file hypothesis can make.

Whatever the command line, `kvcache` exits 0, 1 or 2 as docs/cli.md says, never
prints a traceback (nor the "bug in kvcache" safety-net line), and a command that
fails, or that only reads, leaves every store and every file as it found them
(compared row by row and file by file before and after). In-process through
click's runner for speed, and a smaller run through real processes, which also
get argv bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from cli_helpers import child, files_in, lib, snapshot, sqlite_url
from cli_helpers import clean_env as clean_env  # noqa: F401 (autouse fixture)
from kvcache.cli import cli

WRANGLER_TOML = """
[[kv_namespaces]]
binding = "CACHE"
id = "cache-id"
preview_id = "cache-preview"

[env.staging]
kv_namespaces = [{ binding = "CACHE", id = "staging" }]
"""

NAMESPACES = st.one_of(
    st.sampled_from(["default", "other", "cache-id", "", "ü", "a" * 300]), st.text(max_size=6)
)
KEYS = st.one_of(
    st.sampled_from(["k0", "k1", "m", "", ".", "..", "x" * 513, "ü" * 200, "a/b", " ", "\ud800"]),
    st.text(max_size=12),
)
NUMBERS = st.one_of(
    st.sampled_from(
        ["60", "3600", "30", "0", "-5", "abc", "", "1e400", "0x3c", "Infinity", "NaN", "9" * 400]
    ),
    st.sampled_from(["99999999999999", " 120 ", "1_000", "2147483648", "-2147483649", "1.5e3"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats().map(str),
    st.text(max_size=6),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
METADATA = st.one_of(
    JSON.map(json.dumps),
    st.sampled_from(["{not json", "[" * 3000, "NaN", '"' + "m" * 2000 + '"', "", "null", "0"]),
    st.text(max_size=8),
)
STORES = st.sampled_from(
    [
        "memory",
        "memory://",
        "redis://[::1",
        "redis://u:pw@[::1",
        "sqlite:///missing/x.db",
        "sqlite:///sub/new.db",
        "sqlite://host/x.db",
        "bogus://x",
        "junk",
        "sqlite:///.",
    ]
)
TARGET_FLAGS: st.SearchStrategy[list[str]] = st.one_of(
    st.just([]),
    st.tuples(st.sampled_from(["--namespace", "--namespace-id"]), NAMESPACES).map(list),
    st.tuples(st.just("--store"), STORES).map(list),
    st.sampled_from(
        [
            ["--binding", "CACHE"],
            ["--binding", "NOPE"],
            ["--binding", "CACHE", "--preview"],
            ["--binding", "CACHE", "--no-preview"],
            ["--binding", "CACHE", "--env", "staging"],
            ["--binding", "CACHE", "--env", "nope"],
            ["--binding", "CACHE", "--config", "missing.toml"],
            ["--local"],
            ["--remote"],
            ["--local", "--remote"],
            ["--persist-to", "state"],
            ["--nope"],
        ]
    ),
)

ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "key": st.one_of(KEYS, JSON),
        "value": st.one_of(st.text(max_size=10), JSON, st.just("aGk="), st.just("@@")),
        "expiration": st.one_of(st.integers(), st.floats(), JSON),
        "expiration_ttl": st.one_of(st.sampled_from([60, 3600, 30, 0, 10**30]), st.floats(), JSON),
        "metadata": JSON,
        "base64": st.one_of(st.booleans(), JSON),
        "extra": JSON,
    },
)
GOOD_ENTRY = st.fixed_dictionaries(
    {"key": st.sampled_from(["k0", "k9", "new"]), "value": st.text(max_size=10)},
    optional={"expiration_ttl": st.just(3600), "metadata": st.just({"a": 1})},
)
PUT_FILES = st.one_of(
    st.lists(st.one_of(ENTRY, GOOD_ENTRY), max_size=6).map(json.dumps).map(str.encode),
    st.lists(GOOD_ENTRY, min_size=1, max_size=4).map(json.dumps).map(str.encode),
    JSON.map(json.dumps).map(str.encode),
    st.sampled_from(
        [
            b"[" * 50_000,
            b"\xff\xfe[]",
            b"",
            b"[NaN]",
            b'[{"key": "k", "value": "\xc3"}]',
            b"[1e999]",
        ]
    ),
    st.binary(max_size=40),
)
KEY_FILES = st.one_of(
    st.lists(st.one_of(KEYS, st.fixed_dictionaries({"name": KEYS}), JSON), max_size=5)
    .map(json.dumps)
    .map(str.encode),
    JSON.map(json.dumps).map(str.encode),
    st.sampled_from([b"[" * 50_000, b"\xff", b""]),
)


@dataclass
class Call:
    """One command line; `reads_only`: it must not change any store even when it succeeds."""

    args: list[Any]  # str in-process; bytes for a real process
    input: bytes | None
    reads_only: bool
    files: dict[str, bytes]


def _put(draw: Callable[..., Any]) -> Call:
    args = ["key", "put", draw(KEYS)]
    files: dict[str, bytes] = {}
    source = draw(st.sampled_from(["value", "value", "value", "path", "both", "neither"]))
    if source in ("value", "both"):
        args.append(draw(st.text(max_size=12) | st.sampled_from(["\ud800", "x" * 100])))
    if source in ("path", "both"):
        files["value.bin"] = draw(st.binary(max_size=30))
        args += ["--path", draw(st.sampled_from(["value.bin", "value.bin", "missing.bin", "."]))]
    for flag in ("--ttl", "--expiration"):
        if draw(st.booleans()):
            args += [flag, draw(st.one_of(st.sampled_from(["120", "3600", "86400.5"]), NUMBERS))]
    if draw(st.booleans()):
        args += ["--metadata", draw(METADATA)]
    return Call(args, None, False, files)


@st.composite
def calls(draw: Callable[..., Any]) -> Call:
    kind = draw(st.sampled_from(["put", "get", "list", "delete", "bulk", "namespaces", "junk"]))
    if kind == "put":
        call = _put(draw)
    elif kind == "get":
        flags = draw(st.sampled_from([[], ["--text"], ["--metadata"]]))
        call = Call(["key", "get", draw(KEYS), *flags], None, True, {})
    elif kind == "list":
        prefix = draw(st.one_of(st.just([]), KEYS.map(lambda p: ["--prefix", p])))
        call = Call(["key", "list", *prefix], None, True, {})
    elif kind == "delete":
        call = Call(["key", "delete", draw(KEYS)], None, False, {})
    elif kind == "bulk":
        command = draw(st.sampled_from(["put", "get", "delete"]))
        content = draw(PUT_FILES if command == "put" else KEY_FILES)
        source = draw(st.sampled_from(["in.json", "-", "missing.json"]))
        force = ["--force"] if command == "delete" and draw(st.booleans()) else []
        stdin = content if source == "-" else None
        call = Call(
            ["bulk", command, source, *force], stdin, command == "get", {"in.json": content}
        )
    elif kind == "namespaces":
        call = Call(["namespace", "list"], None, True, {})
    else:
        junk = draw(st.lists(st.text(max_size=8) | st.sampled_from(["-", "--", "-h"]), max_size=4))
        call = Call(junk, None, True, {})
    flags = draw(TARGET_FLAGS)  # wrangler style at the end, or before `kv`
    call.args = ["kv", *call.args, *flags] if draw(st.booleans()) else [*flags, "kv", *call.args]
    return call


def _state(sandbox: Path) -> tuple[set[str], dict[str, list[tuple[Any, ...]]]]:
    """Every file under the sandbox, and the rows of every store file in it."""
    names = files_in(sandbox)
    stores = {
        name: snapshot(sandbox / name)
        for name in names
        if name.endswith((".db", ".sqlite3")) and (sandbox / name).is_file()
    }
    return names, stores


def _check_output(code: int, stdout: str, stderr: str) -> None:
    assert code in (0, 1, 2), (code, stderr)
    for stream in (stdout, stderr):
        assert "Traceback" not in stream
        assert "a bug in kvcache" not in stream
    lines = stderr.strip().splitlines()
    if code == 1:
        # One error line, after at most wrangler's warning about ignored bulk properties.
        assert lines and (lines[-1].startswith("Error: ") or lines[-1] == "Value not found"), stderr
        assert all(line.startswith("Warning: ") for line in lines[:-1]), stderr
    if code == 2:  # a usage error, or a group without its command (click prints the help)
        assert "Error:" in stderr or stderr.startswith("Usage:"), stderr


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a seeded store, a wrangler.toml and nothing else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrangler.toml").write_text(WRANGLER_TOML)
    store = sqlite_url(tmp_path / "kv.sqlite3")
    lib(store)("put_many", [{"key": f"k{i}", "value": f"v{i}"} for i in range(5)])
    lib(store, "other")("put", "m", "v", metadata={"deep": [[1, 2], {"x": None}]})
    lib(store, "cache-id")("put", "k0", "cached", expiration_ttl=3600)
    return tmp_path


def _run(sandbox: Path, call: Call, invoke: Callable[[Call], tuple[int, str, str]]) -> None:
    for name, content in call.files.items():
        (sandbox / name).write_bytes(content)
    before = _state(sandbox)
    code, stdout, stderr = invoke(call)
    event(f"exit {code}")  # shown by pytest --hypothesis-show-statistics
    _check_output(code, stdout, stderr)
    if code != 0 or call.reads_only:
        assert _state(sandbox) == before, (call.args, code, stderr)


def test_cli_fuzz_in_process(sandbox: Path) -> None:
    store = sqlite_url(sandbox / "kv.sqlite3")

    def invoke(call: Call) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["--store", store, *call.args], input=call.input)
        assert result.exception is None or isinstance(result.exception, SystemExit), call.args
        return result.exit_code, result.stdout, result.stderr

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(call=calls())
    def check(call: Call) -> None:
        _run(sandbox, call, invoke)

    check()


ARGV_BYTES = st.binary(max_size=8).filter(lambda b: b"\x00" not in b)


@st.composite
def process_calls(draw: Callable[..., Any]) -> Call:
    """A command line for a real process; some carry argv bytes that are not UTF-8."""
    if draw(st.booleans()):
        call: Call = draw(calls())
        call.args = [arg.encode("utf-8", "surrogatepass") for arg in call.args]
        assume(all(b"\x00" not in arg for arg in call.args))  # argv cannot hold NUL
        return call
    command = draw(st.sampled_from([b"put", b"get", b"delete"]))
    args = [b"kv", b"key", command, draw(ARGV_BYTES)]
    if command == b"put":
        args.append(draw(ARGV_BYTES))
    return Call(args, None, command == b"get", {})


def test_cli_fuzz_real_processes(sandbox: Path) -> None:
    store = sqlite_url(sandbox / "kv.sqlite3")

    def invoke(call: Call) -> tuple[int, str, str]:
        result = child(b"--store", store.encode(), *call.args, input=call.input, text=False)
        out, err = (stream.decode("utf-8", "replace") for stream in (result.stdout, result.stderr))
        return result.returncode, out, err

    # No shrinking: each example is a process start; the failing example is shown as found.
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    slow = [HealthCheck.too_slow]

    @settings(max_examples=12, deadline=None, phases=phases, suppress_health_check=slow)
    @given(call=process_calls())
    def check(call: Call) -> None:
        _run(sandbox, call, invoke)

    check()
