"""What the CLI tests share: running `kvcache` in-process or as a child, and reading stores.

`invoke` uses click's CliRunner (fast, for behaviour); `child` runs
`python -m kvcache` as a real process (for streams, exit codes, tracebacks and
argv bytes). `snapshot` reads a whole sqlite store, every namespace, row by row,
so a test can say a command changed nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import kvcache
from kvcache.cli import cli

__all__ = [
    "assert_one_error_line",
    "child",
    "clean_env",
    "files_in",
    "invoke",
    "kv",
    "lib",
    "snapshot",
    "sqlite_url",
]

Outcome = Result | subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KVCACHE_* variable of the machine running the tests leaks into a test."""
    for name in list(os.environ):
        if name.startswith("KVCACHE_"):
            monkeypatch.delenv(name)


def sqlite_url(path: Path) -> str:
    """sqlite:////abs/path for an absolute path."""
    return "sqlite:///" + str(path)


def invoke(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """The CLI in-process; an exception escaping it fails the test."""
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def kv(store: str, *args: str, **kwargs: Any) -> Result:
    return invoke("--store", store, "kv", *args, **kwargs)


def lib(store: str, namespace: str = "default", clock: Any = None) -> Any:
    """Run one library call on the same store, to check what the CLI stored."""

    def call(method: str, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            options = {} if clock is None else {"clock": clock}
            async with kvcache.open_kv(store, namespace=namespace, **options) as store_:
                return await getattr(store_, method)(*args, **kwargs)

        return asyncio.run(go())

    return call


def assert_one_error_line(result: Outcome, text: str) -> None:
    """stderr is exactly one `Error: ...` line holding `text`, and no traceback."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert text in lines[0], stderr


def child(
    *args: str | bytes,
    env: dict[str, str] | None = None,
    text: bool = True,
    **kwargs: Any,
) -> Any:
    """`python -m kvcache ARGS` in a real child process (stdin: /dev/null unless given)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    full_env.update(env or {})
    if kwargs.get("input") is None:
        kwargs.pop("input", None)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [sys.executable, "-m", "kvcache", *args],
        capture_output=True,
        text=text,
        env=full_env,
        timeout=60,
        **kwargs,
    )


def snapshot(path: Path) -> list[tuple[Any, ...]]:
    """Every row of the sqlite store at `path` (all namespaces, expired rows too)."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT * FROM kv ORDER BY 1, 2").fetchall()


def files_in(directory: Path) -> set[str]:
    """The files and folders under `directory`, without SQLite's transient side files."""
    transient = ("-wal", "-shm", "-journal")
    return {
        str(item.relative_to(directory))
        for item in directory.rglob("*")
        if not item.name.endswith(transient)
    }
