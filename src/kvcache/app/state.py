"""What the running app keeps between requests: settings, the open service, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .metrics import Metrics
from .service import CACHE_NAMESPACE, Service
from .settings import Settings

__all__ = ["State", "state_of"]


@dataclass
class State:
    settings: Settings
    service: Service
    metrics: Metrics

    def push_cache(self) -> None:
        """Move this worker's cache counters into the (summed) Prometheus counters."""
        self.metrics.push_cache(CACHE_NAMESPACE, self.service.cache.stats())


def state_of(request: Request) -> State:
    state: State = request.app.state.kvcache
    return state
