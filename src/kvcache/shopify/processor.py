"""One delivery from raw request to answer: verify, parse, claim once, run, log.

    bad or missing HMAC          401 rejected   (not logged: nothing is trusted yet)
    missing header, not JSON     400 rejected
    no handler for the topic     200 ignored
    completed earlier            200 duplicate  (200 conflict when the body differs)
    held by another worker       409 in_progress, Retry-After = the lease left
    the handler raised           500 failed     (claim released: the retry runs it)
    the claim store is down      503            (never a 200 that processed nothing)
    the handler completed        200 processed

Claims are `Idempotency` records keyed `{shop}:{webhook id}`; the stored result
keeps the handler's return value, the event id and the body's SHA-256.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import AlreadyInProgress, ClaimLost, Idempotency, KVBackendError
from .context import HandlerContext
from .deliveries import DeliveryLog
from .webhooks import Delivery, DeliveryError, Webhooks, hmac_header, parse_delivery, verify_hmac

__all__ = ["Answer", "WebhookProcessor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer the sender, and the outcome to count under `topic`."""

    status: int
    outcome: str
    topic: str
    detail: str = ""
    retry_after: int | None = None
    delivery: Delivery | None = None
    seconds: float = 0.0
    result: Any = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"outcome": self.outcome}
        if self.delivery is not None:
            body["webhookId"] = self.delivery.webhook_id
        if self.detail:
            body["detail"] = self.detail
        return body

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class _HandlerFailed(Exception):
    """Carries the handler's own exception out of the claim block (which releases it)."""


@dataclass
class WebhookProcessor:
    """The webhook flow over an `Idempotency` (namespace WEBHOOKS) and the delivery log."""

    secrets: tuple[str, ...]
    webhooks: Webhooks
    idempotency: Idempotency
    context: HandlerContext
    log: DeliveryLog
    timer: Callable[[], float] = field(default=time.perf_counter)

    def __post_init__(self) -> None:
        if not self.secrets or not all(self.secrets):
            raise ValueError("at least one non-empty Shopify API secret is needed")

    async def process(
        self, headers: Mapping[str, str], body: bytes, *, path_topic: str | None = None
    ) -> Answer:
        """Answer one POST to /webhooks (or /webhooks/{path_topic})."""
        if not verify_hmac(body, hmac_header(headers), self.secrets):
            return Answer(401, "rejected", "", "HMAC signature missing or invalid")
        try:
            delivery = parse_delivery(headers, body)
        except DeliveryError as exc:
            return Answer(400, "rejected", "", str(exc))
        if path_topic is not None and path_topic != delivery.topic:
            detail = f"X-Shopify-Topic {delivery.topic!r} was sent to the path of {path_topic!r}"
            return await self._logged(
                Answer(400, "rejected", delivery.topic, detail, delivery=delivery)
            )
        return await self._logged(await self.run(delivery))

    async def run(self, delivery: Delivery) -> Answer:
        """Claim the delivery once and run its handlers (also `replay`'s path)."""
        topic = delivery.topic
        handlers = self.webhooks.handlers(topic)
        if not handlers:
            return Answer(200, "ignored", topic, "no handler for this topic", delivery=delivery)
        key = f"{delivery.shop}:{delivery.webhook_id}"
        started = self.timer()
        try:
            async with self.idempotency.claim(key) as claim:
                if claim.duplicate:
                    return self._duplicate(delivery, claim.result)
                try:
                    results = [await handler(delivery, self.context) for handler in handlers]
                    result = results[0] if len(results) == 1 else results
                    await claim.complete(
                        {
                            "result": result,
                            "event": delivery.event_id,
                            "sha256": delivery.body_sha256,
                        }
                    )
                except (KVBackendError, ClaimLost):
                    raise
                except Exception as exc:
                    raise _HandlerFailed() from exc
        except AlreadyInProgress as busy:
            return Answer(
                409,
                "in_progress",
                topic,
                "this delivery is being processed",
                busy.retry_after,
                delivery,
            )
        except ClaimLost:
            return Answer(
                409, "in_progress", topic, "another worker took this delivery over", 1, delivery
            )
        except KVBackendError as exc:
            logger.warning("webhook claim store failed for %s: %s", key, exc)
            return Answer(
                503,
                "failed",
                topic,
                "the claim store is unavailable",
                5,
                delivery,
                self.timer() - started,
            )
        except _HandlerFailed as failed:
            cause = failed.__cause__
            if isinstance(cause, DeliveryError):
                return Answer(400, "rejected", topic, str(cause), delivery=delivery)
            logger.exception("webhook handler for %s %s failed", topic, key, exc_info=cause)
            detail = f"{type(cause).__name__}: {cause}"[:1000]
            return Answer(
                500, "failed", topic, detail, delivery=delivery, seconds=self.timer() - started
            )
        return Answer(
            200,
            "processed",
            topic,
            delivery=delivery,
            seconds=self.timer() - started,
            result=result,
        )

    def _duplicate(self, delivery: Delivery, stored: Any) -> Answer:
        digest = stored.get("sha256") if isinstance(stored, dict) else None
        if digest is not None and digest != delivery.body_sha256:
            logger.warning(
                "webhook %s of %s reused with another body (event %s)",
                delivery.webhook_id,
                delivery.shop,
                delivery.event_id,
            )
            return Answer(
                200,
                "conflict",
                delivery.topic,
                "this webhook id was processed earlier with a different body",
                delivery=delivery,
            )
        result = stored.get("result") if isinstance(stored, dict) else stored
        return Answer(200, "duplicate", delivery.topic, delivery=delivery, result=result)

    async def _logged(self, answer: Answer) -> Answer:
        """Write the attempt to the delivery log; a database failure only logs a warning."""
        if answer.delivery is None:
            return answer
        error = answer.detail if answer.status >= 400 or answer.outcome == "conflict" else None
        try:
            await self.log.record(
                answer.delivery, answer.outcome, duration=answer.seconds or None, error=error
            )
        except Exception as exc:
            logger.warning("could not log webhook %s: %s", answer.delivery.webhook_id, exc)
        return answer

    async def replay(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """Run a logged delivery's handlers again from its stored body (its HMAC passed once)."""
        return await self._logged(await self.run(parse_delivery(headers, body)))
