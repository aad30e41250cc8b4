"""`kvcache shop add|list|remove` and `kvcache shopify emulate` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from redis_server import free_port

TOKEN = "shpat_do_not_print_me_0123456789"
BOB = '{ customerByIdentifier(identifier: {emailAddress: "BOB@example.com"}) { firstName } }'


def run(
    tmp_path: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KVCACHE_", "SHOPIFY_"))}
    environ["KVCACHE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/app.db"
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "kvcache", *args],
        cwd=tmp_path,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_remove_without_ever_printing_the_token(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    added = run(tmp_path, "shop", "add", "a.myshopify.com", "--token-stdin", stdin=TOKEN + "\n",
                KVCACHE_SECRET_KEY=key)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added a.myshopify.com (API 2025-01, token: stored (encrypted))\n"
    url = "http://127.0.0.1:9/graphql.json"
    added = run(tmp_path, "shop", "add", "b.myshopify.com", "--token-env", "B_TOKEN",
                "--api-version", "2024-10", "--admin-url", url)  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = run(tmp_path, "shop", "add", "b.myshopify.com", "--token-env", "B2")
    assert again.stdout.startswith("updated b.myshopify.com")
    listed = run(tmp_path, "shop", "list", KVCACHE_SECRET_KEY=key)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        "a.myshopify.com  installed  API 2025-01  token: stored (encrypted)",
        "b.myshopify.com  installed  API 2025-01  token: env:B2",
    ]
    as_json = run(tmp_path, "shop", "list", "--json")
    everything = added.stdout + listed.stdout + as_json.stdout + as_json.stderr
    assert TOKEN not in everything and '"token": "env:B2"' in as_json.stdout
    assert TOKEN.encode() not in (tmp_path / "app.db").read_bytes()
    removed = run(tmp_path, "shop", "remove", "a.myshopify.com")
    assert (removed.returncode, removed.stdout) == (0, "removed a.myshopify.com\n")
    assert run(tmp_path, "shop", "list").stdout.startswith("b.myshopify.com")


@pytest.mark.parametrize(
    ("args", "stdin", "env", "message"),
    [
        (["--token-stdin"], TOKEN, {}, "KVCACHE_SECRET_KEY is not set"),
        (["--token-stdin"], TOKEN, {"KVCACHE_SECRET_KEY": "nope"}, "not a Fernet key"),
        (
            ["--token-stdin"],
            "\n",
            {"KVCACHE_SECRET_KEY": Fernet.generate_key().decode()},
            "no token",
        ),
        ([], None, {}, "exactly one of --token-env VAR and --token-stdin"),
        (["--token-env", "T", "--token-stdin"], TOKEN, {}, "exactly one"),
        (["--token-env", "T", "--api-version", "latest"], None, {}, "api_version"),
    ],
)
def test_add_refusals_are_one_line(
    tmp_path: Path, args: list[str], stdin: str | None, env: dict[str, str], message: str
) -> None:
    done = run(tmp_path, "shop", "add", "a.myshopify.com", *args, stdin=stdin, **env)
    assert done.returncode == 1 and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert TOKEN not in done.stderr


def test_remove_an_unknown_shop_fails(tmp_path: Path) -> None:
    done = run(tmp_path, "shop", "remove", "nope.myshopify.com")
    assert done.returncode == 1 and "no shop 'nope.myshopify.com'" in done.stderr


def test_emulate_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kvcache", "shopify", "emulate", "--port", str(port)]
    command += ["--latency", "0", "--customer", "bob@example.com"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/admin/api/2025-01/graphql.json"
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.post(
                    url,
                    json={"query": BOB},
                    headers={"X-Shopify-Access-Token": "shpat_emulator"},
                )
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.json()["data"] == {"customerByIdentifier": {"firstName": "Bob"}}
        assert answer.json()["extensions"]["cost"]["throttleStatus"]["restoreRate"] == 100.0
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"127.0.0.1:{port}/admin/api/2025-01/graphql.json" in err and "'requests': 1" in err
