"""A user handlers module for the tests (`--handlers webhook_handlers`).

`orders/create` does what its payload asks: `sleep` seconds, `fail_first` (the
first run of each webhook id raises), `fail_rate` (that share of first runs
raise, chosen by the id's hash, so every process agrees), `hang_first` (the
first run never returns). Each run appends one line to
$KVCACHE_TEST_DIR/runs.log ("start|hang|done|fail <webhook id> <pid> <run>")
with O_APPEND, so the log is the ground truth of what ran, in every process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from kvcache.shopify import Delivery, HandlerContext, Webhooks

DIR_ENV = "KVCACHE_TEST_DIR"


def _directory() -> Path:
    return Path(os.environ[DIR_ENV])


def log_line(kind: str, webhook_id: str, run: str) -> None:
    fd = os.open(_directory() / "runs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {webhook_id} {os.getpid()} {run}\n".encode())
    finally:
        os.close(fd)


def first_run(webhook_id: str) -> bool:
    marks = _directory() / "first"
    marks.mkdir(exist_ok=True)
    name = hashlib.sha256(webhook_id.encode()).hexdigest()
    try:
        os.close(os.open(marks / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def fails(webhook_id: str, rate: float) -> bool:
    bucket = int(hashlib.sha256(webhook_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < rate


def read_runs(directory: Path) -> list[tuple[str, str, int, str]]:
    path = directory / "runs.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        kind, webhook_id, pid, run = line.split()
        rows.append((kind, webhook_id, int(pid), run))
    return rows


def register(webhooks: Webhooks) -> None:
    @webhooks.on("orders/create")
    async def order_created(delivery: Delivery, ctx: HandlerContext) -> dict[str, Any]:
        run = uuid.uuid4().hex
        payload = delivery.payload
        log_line("start", delivery.webhook_id, run)
        if payload.get("hang_first") and first_run("hang:" + delivery.webhook_id):
            log_line("hang", delivery.webhook_id, run)
            await asyncio.sleep(3600)  # until the test kills this worker
        await asyncio.sleep(float(payload.get("sleep", 0)))
        failing = payload.get("fail_first") or fails(
            delivery.webhook_id, float(payload.get("fail_rate", 0))
        )
        if failing and first_run(delivery.webhook_id):
            log_line("fail", delivery.webhook_id, run)
            raise RuntimeError("the first delivery of this order fails")
        log_line("done", delivery.webhook_id, run)
        return {"pid": os.getpid(), "run": run}
