"""`kvcache serve` and `kvcache webhook trigger|list|replay` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import SECRET, TESTS, serving
from webhook_handlers import DIR_ENV, read_runs

SHOP = "demo.myshopify.com"


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KVCACHE_", "SHOPIFY_", "PROMETHEUS_"))
    }
    env.update(
        {
            "SHOPIFY_API_SECRET": SECRET,
            "KVCACHE_STORE": f"sqlite:///{tmp_path}/kv.sqlite3",
            "KVCACHE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
            "KVCACHE_HANDLERS": "webhook_handlers",
            DIR_ENV: str(tmp_path),
            "PYTHONPATH": TESTS,
        }
    )
    env.update(extra)
    return env


def kvcache(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvcache", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SHOPIFY_API_SECRET": ""}, "SHOPIFY_API_SECRET is not set"),
        ({"KVCACHE_HANDLERS": "no_such_module"}, "handlers module 'no_such_module' cannot"),
        ({"KVCACHE_WEBHOOK_LEASE_TTL": "soon"}, "KVCACHE_WEBHOOK_LEASE_TTL must be a whole"),
        ({"KVCACHE_DATABASE_URL": "mysql://x/y"}, "use sqlite+aiosqlite:/// or postgresql"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    done = kvcache(environ(tmp_path, **change), "serve", "--port", "0", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_settings_from_kvcache_toml(tmp_path: Path) -> None:
    env = environ(tmp_path, SHOPIFY_API_SECRET="")
    (tmp_path / "kvcache.toml").write_text('shopify_api_secret = ["a", "b"]\nwebhook_lease = 3\n')
    done = kvcache(env, "serve", cwd=tmp_path)
    assert done.returncode == 1 and "unknown setting(s) webhook_lease" in done.stderr


def test_trigger_list_replay_over_two_workers(tmp_path: Path) -> None:
    env = environ(tmp_path)
    temp = tmp_path / "tmp"  # where serve makes its Prometheus multiprocess directory
    temp.mkdir()
    serve_env = {k: v for k, v in env.items() if k != "PYTHONPATH"} | {"TMPDIR": str(temp)}
    with serving(tmp_path, serve_env, workers=2) as server:
        assert [path.name[:16] for path in temp.iterdir()] == ["kvcache-metrics-"]
        address = f"{server.url}/webhooks"
        copies = kvcache(
            env,
            "webhook",
            "trigger",
            "--topic",
            "customers/update",
            "--shop",
            SHOP,
            "--address",
            address,
            "--repeat",
            "30",
            "--concurrency",
            "10",
            "--json",
            cwd=tmp_path,
        )
        assert copies.returncode == 0, copies.stderr
        summary = json.loads(copies.stdout)
        counted = {a["outcome"]: a["count"] for a in summary["answers"]}
        assert counted["processed"] == 1 and sum(counted.values()) == 30
        assert set(counted) <= {"processed", "duplicate", "in_progress"}

        forged = kvcache(
            env,
            "webhook",
            "trigger",
            "--topic",
            "shop/update",
            "--shop",
            SHOP,
            "--address",
            address,
            "--forged",
            cwd=tmp_path,
        )
        assert forged.returncode == 0 and re.search(r"401 rejected\s+x1", forged.stdout)

        payload = tmp_path / "order.json"
        payload.write_text(json.dumps({"id": 1, "fail_first": True}))
        failing = kvcache(
            env,
            "webhook",
            "trigger",
            "--topic",
            "orders/create",
            "--shop",
            SHOP,
            "--address",
            address,
            "--file",
            str(payload),
            "--webhook-id",
            "order-1",
            cwd=tmp_path,
        )
        assert re.search(r"500 failed\s+x1", failing.stdout), failing.stdout

        listed = kvcache(env, "webhook", "list", "--outcome", "failed", "--json", cwd=tmp_path)
        [row] = json.loads(listed.stdout)
        assert (row["webhookId"], row["topic"]) == ("order-1", "orders/create")

        replayed = kvcache(env, "webhook", "replay", "order-1", cwd=tmp_path)
        assert replayed.returncode == 0 and "order-1: processed" in replayed.stdout
        again = kvcache(env, "webhook", "replay", "order-1", cwd=tmp_path)
        assert again.returncode == 1 and "only a failed delivery's body is kept" in again.stderr
        assert [kind for kind, *_ in read_runs(tmp_path)] == ["start", "fail", "start", "done"]

        no_secret = environ(tmp_path, SHOPIFY_API_SECRET="")  # reading the log signs nothing
        plain = kvcache(no_secret, "webhook", "list", cwd=tmp_path).stdout.splitlines()
        assert len(plain) == 2 and "order-1" in plain[0] and re.search(r"processed +x2 ", plain[0])

        # Both workers' counters, summed: 30 copies + 1 forged + 1 failed, whichever worker.
        text = httpx.get(f"{server.url}/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kvcache_webhooks_total{")
        )
        assert total == 32
        stats = httpx.get(f"{server.url}/api/cache/stats").json()
        assert stats["by_family"]["customer:id"]["deletes"] == 1
    # SIGTERM: a graceful stop, exit status 0, the metrics directory removed.
    assert server.returncode == 0 and list(temp.iterdir()) == []
