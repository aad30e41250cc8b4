"""Metering through the real service: /api/cost, `kvcache cost`, restarts and two workers.

Each `/healthz` reads key "healthz" once in each namespace (CACHE and WEBHOOKS),
so N health checks are 2N billed reads of family "-" (the key has no segments).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from kvcache.cli import cli
from service import SECRET, running, serving, settings_for

FLUSH_WAIT = 20.0


async def health_checks(url: str, count: int) -> None:
    for _ in range(count):  # a fresh connection each: with workers, any of them answers
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"{url}/healthz", headers={"Connection": "close"})
            assert answer.status_code == 200


async def cost(url: str, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/api/cost", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def health_reads(report: dict[str, Any]) -> int:
    return sum(
        row["monthly"]
        for row in report["drivers"]["families"]
        if row["family"] == "-" and row["operation"] == "reads"
    )


async def test_api_cost_counts_survive_a_restart_and_match_the_cli(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with running(settings) as server:
        await health_checks(server.url, 5)
        report = await cost(server.url)
        assert report["observed"]["reads"] == 10
        assert set(report) >= {
            "window_seconds",
            "observed",
            "monthly",
            "workers_kv",
            "d1",
            "warnings",
        }
        assert 0 < report["window_seconds"] <= 120
        assert report["workers_kv"]["paid"]["total_usd"] == (
            report["workers_kv"]["paid"]["usage_usd"] + 5.0
        )
        assert isinstance(report["observed"]["stored_bytes"], int)
    with running(settings) as server:  # a new process's meter; the history kept the counts
        await health_checks(server.url, 3)
        report = await cost(server.url, window="1h")
        assert report["observed"]["reads"] == 16
    runner = CliRunner()
    environ = {
        "KVCACHE_DATABASE_URL": settings.database_url,
        "SHOPIFY_API_SECRET": SECRET,
    }
    result = await asyncio.to_thread(runner.invoke, cli, ["cost", "--json"], env=environ)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["observed"] == report["observed"]
    table = await asyncio.to_thread(runner.invoke, cli, ["cost", "--window", "2h"], env=environ)
    assert table.exit_code == 0, table.output
    # The month is scaled from the seconds observed (as few as 1 at a minute's start), so
    # the bill itself varies from run to run; its shape and its sum do not.
    paid = re.search(
        r"Workers KV Paid: \$([\d,.]+) a month \(\$([\d,.]+) usage \+ the \$5 minimum\)",
        table.output,
    )
    assert paid is not None, table.output
    total, usage = (float(figure.replace(",", "")) for figure in paid.groups())
    assert total == pytest.approx(usage + 5.0, abs=0.01)
    assert "reads" in table.output and "16" in table.output
    bad = await asyncio.to_thread(runner.invoke, cli, ["cost", "--window", "soon"], env=environ)
    assert bad.exit_code == 2
    assert "window must look like" in bad.output


async def test_api_cost_follows_the_admin_rule_and_refuses_bad_windows(tmp_path: Path) -> None:
    with running(settings_for(tmp_path, admin_token="s3cret")) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.url}/api/cost")).status_code == 401
            auth = {"Authorization": "Bearer s3cret"}
            answer = await client.get(f"{server.url}/api/cost?window=-3h", headers=auth)
            assert answer.status_code == 400
            assert "window must" in answer.json()["detail"]
            fine = await client.get(f"{server.url}/api/cost?window=7d", headers=auth)
            assert fine.status_code == 200


def test_cli_without_a_database_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/none/app.db"
    result = CliRunner().invoke(cli, ["cost"], env={"KVCACHE_DATABASE_URL": url})
    assert result.exit_code == 1
    assert "no app database" in result.output
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
async def test_two_workers_add_up(tmp_path: Path) -> None:
    environ = {
        "SHOPIFY_API_SECRET": SECRET,
        "KVCACHE_STORE": f"sqlite:///{tmp_path}/kv.sqlite3",
        "KVCACHE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/app.db",
    }
    with serving(tmp_path, environ, workers=2) as server:
        assert len(server.worker_pids()) >= 2  # the workers (and multiprocessing helpers)
        before = await settled(server.url)
        await health_checks(server.url, 40)
        # Each worker writes its counts every few seconds: wait for both to land.
        deadline = time.monotonic() + FLUSH_WAIT
        while (now := (await cost(server.url))["observed"]["reads"]) < before + 80:
            assert time.monotonic() < deadline, f"reads {now}, expected {before + 80}"
            await asyncio.sleep(0.5)
        assert now == before + 80
    assert server.returncode is not None


async def settled(url: str) -> int:
    """The read count once both workers have written what they hold (it stops moving)."""
    last, since = -1, time.monotonic()
    while True:
        reads = int((await cost(url))["observed"]["reads"])
        if reads != last:
            last, since = reads, time.monotonic()
        elif time.monotonic() - since > 6.0:  # longer than History's 5 s flush
            return reads
        await asyncio.sleep(0.5)
