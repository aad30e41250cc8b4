"""kvcache inside a real Python Worker: workerd (Miniflare) runs the checks on `WorkersKV(env.KV)`.

The Worker's modules are tests/cloudflare/pyworker/entry.py and checks.py, the
Worker example of docs/cloudflare.md (as example.py), plus
kvcache's pure-Python modules under their package paths (no C extension: the
`cloudflare`, `redis`, `sqlite` backends, the CLI and the sync facade stay out).
One Worker starts per session (about 6 s: Pyodide loads) and one request runs
every check; each check is its own pytest test, failing with the traceback the
Worker sent back.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from miniflare import start_worker

HERE = Path(__file__).parent
PYWORKER = HERE / "cloudflare" / "pyworker"
SOURCE = HERE.parent / "src"
#: kvcache modules a Worker cannot or need not import (C extensions, threads, servers).
LEFT_OUT = (
    "kvcache/cli/",
    "kvcache/sync/",
    "kvcache/kv/redis",
    "kvcache/kv/_redis",
    "kvcache/kv/sqlite",
    "kvcache/kv/cloudflare",
    "kvcache/kv/_cloudflare",
    "kvcache/__main__",
)

DOCS = HERE.parent / "docs" / "cloudflare.md"

sys.path.insert(0, str(PYWORKER))
from checks import CHECKS, EXAMPLE_CHECKS  # noqa: E402


def docs_worker_example() -> str:
    """The Python Worker example of docs/cloudflare.md (the block that defines on_fetch)."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), re.M | re.S)
    [example] = [block for block in blocks if "async def on_fetch(request, env)" in block]
    return str(example)


def worker_modules() -> list[dict[str, str]]:
    modules = [{"path": "entry.py", "file": str(PYWORKER / "entry.py")}]
    modules.append({"path": "checks.py", "file": str(PYWORKER / "checks.py")})
    modules.append({"path": "example.py", "contents": docs_worker_example()})
    for file in sorted((SOURCE / "kvcache").rglob("*.py")):
        path = file.relative_to(SOURCE).as_posix()
        if not path.startswith(LEFT_OUT):
            modules.append({"path": path, "file": str(file)})
    return modules


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, str]]:
    process, lines, first = start_worker("serve_python.mjs", {"modules": worker_modules()}, 120)
    try:
        answer = httpx.get(first["url"], timeout=300)
        assert answer.status_code == 200, answer.text[:2000]
        found: dict[str, str] = answer.json()
        yield found
    finally:
        assert process.stdin is not None
        process.stdin.write('{"op": "stop"}\n')
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
            process.wait(timeout=30)
        lines.join(15)
        if process.stdout is not None:
            process.stdout.close()


def test_the_worker_runs_every_check(results: dict[str, str]) -> None:
    assert sorted(results) == sorted([*CHECKS, *EXAMPLE_CHECKS])


@pytest.mark.parametrize("name", [*CHECKS, *EXAMPLE_CHECKS])
def test_check_passes_inside_workerd(results: dict[str, str], name: str) -> None:
    outcome = results.get(name, "not run")
    if outcome != "ok":
        pytest.fail(f"{name} failed inside the Python Worker:\n{outcome}", pytrace=False)


def test_no_compiled_module_is_shipped() -> None:
    assert all(m["path"].endswith(".py") for m in worker_modules())
    assert all(("file" in m) != ("contents" in m) for m in worker_modules())
    assert not any(m["path"].startswith(LEFT_OUT) for m in worker_modules())
