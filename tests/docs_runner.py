"""Run every code block of one Markdown file, as a reader would paste it.

    python tests/docs_runner.py README.md [--redis redis://127.0.0.1:PORT/0]

Run by tests/test_docs.py in a fresh working directory, one process per file (the
blocks may register global Prometheus collectors or open the default store).

- ```python: run in order in one namespace, each block as the body of an async
  function (so top-level `await` and `return` work) unless it calls `asyncio.run`
  itself or uses `kvcache.sync` (sync code, run as plain top-level code: on a
  running loop's thread the sync API refuses to block). The names a fragment
  takes for granted (`kv`, `cache`, `admin`, `shop`, `webhook_id`, `handle_order`,
  `Response`, `registry`, `c1`, `c2`) are set first.
- ```console: each `$ command` runs in bash; it must exit 0 (non-zero when the
  output shown starts with `Error:`), and the output shown must be what it prints,
  digits aside (expiry times and ids differ from run to run).
- ```sh / ```bash: each line runs in bash and must exit 0.
- ```json: must parse. ```text, ```toml and ```ini are data or pictures, not code.
  A block with no language is an error: say what it is.

Exit status 0 when every block ran as shown; otherwise each failure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
NOT_CODE = {"text", "toml", "ini", "mermaid", "jsonc", "html", "http"}

PRELUDE = """
import asyncio
import dataclasses
import kvcache
import prometheus_client

kv = await kvcache.open_kv("memory://", namespace="CACHE")
cache = kvcache.Cache(kv, default_ttl=3600)


class _Admin:
    async def find_customer(self, email):
        return {"id": "gid://shopify/Customer/1", "email": email}


@dataclasses.dataclass
class Response:
    status_code: int = 200
    headers: dict = dataclasses.field(default_factory=dict)
    content: object = None


admin = _Admin()
shop, webhook_id = "demo.myshopify.com", "b54557e4-7ab1-4e4e-9b6a-0f5b0f0c0a11"


async def handle_order():
    return {"handled": True}


registry = prometheus_client.CollectorRegistry()
c1 = kvcache.Cache(kv, prefix="c1:")
c2 = kvcache.Cache(kv, prefix="c2:")
"""


@dataclass
class Block:
    lang: str
    body: str
    line: int


@dataclass
class Run:
    path: str
    substitutions: dict[str, str]
    failures: list[str] = field(default_factory=list)

    def fail(self, block: Block, message: str) -> None:
        self.failures.append(f"{self.path}:{block.line}: ```{block.lang} block: {message}")


def blocks(text: str) -> Iterator[Block]:
    for match in FENCE.finditer(text):
        body = textwrap.dedent(match.group("body"))
        yield Block(match.group("lang"), body, text.count("\n", 0, match.start()) + 1)


def substitute(text: str, substitutions: dict[str, str]) -> str:
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return text


def wrap(body: str) -> str:
    """The block as an async function that hands back the names it bound."""
    inner = textwrap.indent(body, "    ")
    return f"async def __block__():\n{inner}\n    return locals()\n"


def run_python(run: Run, block: Block, namespace: dict[str, Any], loop: Any) -> None:
    source = substitute(block.body, run.substitutions)
    try:
        if "asyncio.run(" in source or "kvcache.sync" in source:
            exec(compile(source, f"{run.path}:{block.line}", "exec"), namespace)
            return
        exec(compile(wrap(source), f"{run.path}:{block.line}", "exec"), namespace)
        bound = loop.run_until_complete(namespace.pop("__block__")())
        if isinstance(bound, dict):
            namespace.update(bound)
    except BaseException:
        run.fail(block, traceback.format_exc(limit=-3))


def normalise(text: str) -> list[str]:
    lines = [re.sub(r"\d+", "N", line.rstrip()) for line in text.strip("\n").splitlines()]
    return [line for line in lines if line]


def shell(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def run_console(run: Run, block: Block) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in substitute(block.body, run.substitutions).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            run.fail(block, f"output before any `$ ` command: {line!r}")
            return
    for command, shown in steps:
        done = shell(command)
        expect_error = bool(shown) and shown[0].startswith("Error:")
        if expect_error != (done.returncode != 0):
            run.fail(block, f"`{command}` exited {done.returncode}: {done.stderr.strip()[-500:]}")
            continue
        if shown and normalise("\n".join(shown)) != normalise(done.stdout + done.stderr):
            run.fail(
                block,
                f"`{command}` printed\n{done.stdout}{done.stderr}\nnot what the page shows:\n"
                + "\n".join(shown),
            )


def run_sh(run: Run, block: Block) -> None:
    for command in substitute(block.body, run.substitutions).splitlines():
        if not command.strip() or command.lstrip().startswith("#"):
            continue
        done = shell(command)
        if done.returncode != 0:
            run.fail(block, f"`{command}` exited {done.returncode}: {done.stderr.strip()[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--redis", default=None, help="the URL that stands in for redis://...")
    parser.add_argument("--sub", action="append", default=[], help="OLD=NEW text substitution")
    args = parser.parse_args()
    substitutions = dict(item.split("=", 1) for item in args.sub)
    if args.redis:
        hostport = args.redis.split("://", 1)[1].split("/", 1)[0]
        for name in ("cache.internal:6379", "127.0.0.1:6379", "localhost:6379"):
            substitutions[name] = hostport
    with open(args.path, encoding="utf-8") as file:
        text = file.read()
    run = Run(args.path, substitutions)
    loop = asyncio.new_event_loop()
    module = types.ModuleType("__docs__")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    namespace: dict[str, Any] = module.__dict__
    prelude = Block("python", PRELUDE, 0)
    run_python(run, prelude, namespace, loop)
    for block in blocks(text):
        if block.lang == "python":
            run_python(run, block, namespace, loop)
        elif block.lang == "console":
            run_console(run, block)
        elif block.lang in ("sh", "bash"):
            run_sh(run, block)
        elif block.lang == "json":
            try:
                json.loads(block.body)
            except ValueError as exc:
                run.fail(block, f"not JSON: {exc}")
        elif block.lang not in NOT_CODE:
            run.fail(block, "has no known language; mark pictures and data as ```text")
    loop.close()
    for failure in run.failures:
        print(failure, file=sys.stderr)
    os.environ.pop("KVCACHE_STORE", None)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
