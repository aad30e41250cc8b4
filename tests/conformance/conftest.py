"""The conformance suite runs on every local backend twice (async, and through
`kvcache.sync`) and on the remote ones (Workers KV over REST, in Miniflare)."""

from __future__ import annotations

import pytest

from backends import BACKENDS, REMOTE_BACKENDS, SYNC_BACKENDS, Backend, FakeClock

ALL = BACKENDS + SYNC_BACKENDS + REMOTE_BACKENDS


@pytest.fixture(params=ALL, ids=[backend.id for backend in ALL])
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture
def clock(backend: Backend, request: pytest.FixtureRequest) -> FakeClock:
    """The backend's clock: for a server that expires keys itself, it moves the server too."""
    return backend.clock(request)
