"""Protection for calls to other services (Part II, resilience lab): a timeout, retries with
backoff and jitter, a circuit breaker and a bulkhead, around every call to one peer.

Off by default (SHOP_RESILIENCE=false), so the labs can show the cascade without it first.
Libraries: httpx's timeouts, tenacity (retries) and circuitbreaker (circuit breaker), both
maintained. (pybreaker, the other common choice, holds one lock for the whole call, so a
breaker around a slow peer would let only one call through at a time.) The bulkhead is a
bounded semaphore, which is all a semaphore bulkhead is (Resilience4j's is the same idea).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from circuitbreaker import CircuitBreaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .errors import ShopError

log = logging.getLogger("shop.resilience")
T = TypeVar("T")


def _is_transient(err: BaseException) -> bool:
    """Worth another try: a quick 5xx from the peer. Not a timeout (the peer is slow: a retry
    would wait again and add load) and not an open circuit or a full bulkhead (by design)."""
    return (isinstance(err, ShopError) and err.status >= 500
            and not err.details.get("timeout") and not err.details.get("protection"))


class Guard:
    """Everything one caller does around its calls to one peer."""

    def __init__(self, peer: str, max_concurrent: int, retries: int, breaker_failures: int,
                 breaker_reset_s: float) -> None:
        self.peer = peer
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._retries = retries
        # Only the peer failing counts: a 4xx is the caller's mistake.
        self.breaker = CircuitBreaker(
            failure_threshold=breaker_failures, recovery_timeout=breaker_reset_s, name=f"{peer}-breaker",
            expected_exception=lambda kind, err: not (isinstance(err, ShopError) and err.status < 500))

    def call(self, operation: Callable[[], T]) -> T:
        # Bulkhead: never more than max_concurrent threads waiting on this peer; the rest of
        # the service's threads stay free for work that does not need it.
        if not self._slots.acquire(blocking=False):
            raise ShopError(503, f"{self.peer}: bulkhead full ({self.max_concurrent} calls in flight)",
                            module=self.peer, protection="bulkhead")
        try:
            # The breaker sees whole calls, retries included: failures that a retry hid do not
            # count, so a flaky peer does not open the circuit; a hung one (timeouts are not
            # retried) opens it after breaker_failures calls.
            return self._through_breaker(lambda: self._retrying()(operation))
        finally:
            self._slots.release()

    def _retrying(self) -> Retrying:
        return Retrying(stop=stop_after_attempt(self._retries + 1), reraise=True,
                        wait=wait_random_exponential(multiplier=0.05, max=0.5),  # backoff with full jitter
                        retry=retry_if_exception(_is_transient))

    def _through_breaker(self, operation: Callable[[], T]) -> T:
        # Open: fail at once, without waiting on a peer that keeps failing. After the
        # recovery time the breaker is half-open and lets calls try again.
        if self.breaker.opened:
            raise ShopError(503, f"{self.peer}: circuit open, failing fast", module=self.peer,
                            protection="circuit-breaker")
        return self.breaker.call(operation)

    def state(self) -> dict:
        return {"peer": self.peer, "circuit": self.breaker.state, "failures": self.breaker.failure_count}
