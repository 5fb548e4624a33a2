"""When ``memweb`` sends a request again: the retry policy, run by tenacity.

:class:`RetryPolicy` says how often and how long to wait; tenacity runs the loop.
A request is tried again only when the failure may pass (:func:`memo.web.wire.transient`:
no answer, a timeout, ``408``, ``429``, ``5xx``); any other refusal is final at
once. The wait before retry *n* is drawn uniformly from ``[0, backoff * 2**(n-1)]``
("full jitter", so that many workers that failed together do not come back
together), at least what the server's ``Retry-After`` asks for, and never more than
``max_delay`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._util import missing
from .errors import DeliveryError
from .wire import transient

__all__ = ["RetryPolicy"]

T = TypeVar("T")


def _tenacity() -> Any:
    try:
        import tenacity
    except ImportError:
        raise missing("memweb", "tenacity", "web") from None
    return tenacity


class _WaitAtLeastRetryAfter:
    """Full-jitter exponential backoff, raised to the server's ``Retry-After``, capped."""

    def __init__(self, backoff: float, max_delay: float) -> None:
        self.jitter = _tenacity().wait_random_exponential(multiplier=backoff, max=max_delay)
        self.max_delay = max_delay

    def __call__(self, retry_state: Any) -> float:
        delay = self.jitter(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        asked = getattr(error, "retry_after", 0.0) or 0.0
        return float(min(max(delay, asked), self.max_delay))


def _retryable(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and transient(error.status)


class RetryPolicy:
    """How ``memweb`` retries a request that failed in a way that may pass.

    `retries` more attempts after the first; before retry *n*, a wait drawn from
    ``[0, backoff * 2**(n-1)]`` seconds (`backoff`), at least what the server's
    ``Retry-After`` asks for, at most `max_delay` seconds. Retried: no answer, a
    timeout, ``408``, ``429`` and ``5xx``; any other answer is final at once.

    For example ``memo.memweb(url, retry=RetryPolicy(retries=5, backoff=0.2, max_delay=30))``.
    """

    def __init__(self, retries: int = 3, backoff: float = 0.5, max_delay: float = 60.0) -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"RetryPolicy: retries must be a whole number >= 0, got {retries!r}")
        if backoff < 0 or max_delay < 0:
            raise ValueError(f"RetryPolicy: backoff and max_delay must be >= 0, got "
                             f"backoff={backoff!r}, max_delay={max_delay!r}")
        self.retries = retries
        self.backoff = backoff
        self.max_delay = max_delay
        self._retrying: Any = None  # tenacity is imported on first use, with memweb's httpx

    def __repr__(self) -> str:
        return (f"RetryPolicy(retries={self.retries}, backoff={self.backoff}, "
                f"max_delay={self.max_delay})")

    def __reduce__(self) -> tuple[Any, tuple[int, float, float]]:
        return (RetryPolicy, (self.retries, self.backoff, self.max_delay))

    @property
    def retrying(self) -> Any:
        """The ``tenacity.Retrying`` that runs the policy (tenacity is imported here)."""
        retrying = self._retrying
        if retrying is None:
            tenacity = _tenacity()
            # one Retrying for every call and thread: tenacity keeps its state per thread
            retrying = self._retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.retries + 1),
                wait=_WaitAtLeastRetryAfter(self.backoff, self.max_delay),
                retry=tenacity.retry_if_exception(_retryable),
                reraise=True,  # the last DeliveryError itself, not tenacity's RetryError
            )
        return retrying

    def call(self, attempt: Callable[..., T], *args: Any) -> T:
        """``attempt(*args)``, again as the policy says while it raises a transient error."""
        # The first attempt runs outside tenacity: a tenacity loop costs about 80 us,
        # a quarter of a whole one-record request, and most requests succeed at once.
        try:
            return attempt(*args)
        except DeliveryError as exc:
            if not self.retries or not _retryable(exc):
                raise
            replay: list[BaseException] = [exc]

        def again(*args: Any) -> T:
            if replay:  # tenacity's attempt 1 is the failure that already happened
                raise replay.pop()
            return attempt(*args)

        return self.retrying(again, *args)  # type: ignore[no-any-return]
