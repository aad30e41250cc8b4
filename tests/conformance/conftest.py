"""The conformance suite runs on every backend twice: async, and through `kvcache.sync`."""

from __future__ import annotations

import pytest

from backends import BACKENDS, SYNC_BACKENDS, Backend

ALL = BACKENDS + SYNC_BACKENDS


@pytest.fixture(params=ALL, ids=[backend.id for backend in ALL])
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param
