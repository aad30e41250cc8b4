"""Every code block in README.md and docs/*.md runs as shown (see docs_runner.py).

A documented example that stops working fails here, so the pages cannot rot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from miniflare import NAMESPACES, MiniflareRest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"

# Files the pages' commands read, made in the working directory first.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)
ENTRIES: list[dict[str, object]] = [
    {"key": "k1", "value": "text value"},
    {"key": "k2", "value": "aGVsbG8=", "base64": True},
    {"key": "k3", "value": '{"a":1}', "expiration_ttl": 3600, "metadata": {"tag": "x"}},
]

# The binding docs/cli.md shows.
WRANGLER_TOML = """
[[kv_namespaces]]
binding = "CACHE"
id = "0f2ac74b498b48028cb68387c421e279"
preview_id = "6a1ddb03f3ec4f7bb4b5a3c4a1f3f6a2"
"""


def make_files(directory: Path) -> None:
    (directory / "logo.png").write_bytes(PNG)
    (directory / "entries.json").write_text(json.dumps(ENTRIES))
    bad: list[dict[str, object]] = [{"key": f"k{i}", "value": "v"} for i in range(1, 21)]
    bad[6]["expiration_ttl"] = 30
    bad[11] = {"value": "v"}
    (directory / "bad.json").write_text(json.dumps(bad))
    (directory / "wrangler.toml").write_text(WRANGLER_TOML)


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_code_block_runs_as_shown(
    page: Path, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> None:
    make_files(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    if "cloudflare://" in page.read_text():  # Cloudflare's API is the Miniflare test Worker
        server: MiniflareRest = request.getfixturevalue("miniflare_rest")
        for namespace in NAMESPACES[-2:]:
            server.reset(namespace)
        env["CLOUDFLARE_ACCOUNT_ID"] = server.account
        env["CLOUDFLARE_API_TOKEN"] = server.write_token
        env["CLOUDFLARE_API_BASE_URL"] = server.api_url
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "tests")
    done = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            str(page),
            "--redis",
            redis_url,
            "--sub",
            f"sqlite:////srv/={'sqlite:///' + str(tmp_path / 'srv')}/",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr


def test_readme_links_only_to_files_in_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).resolve().is_relative_to(ROOT), target
        assert (ROOT / target).exists(), target
