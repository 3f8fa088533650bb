"""Retries of calls that are safe to repeat, in the shape of python-api-core's `retry_target`.

A retry policy is data: which status codes are worth another attempt, how long to wait
between attempts (exponential back-off with full jitter) and the deadline of the whole
logical call. `retry_target` is the plain loop that applies it::

    >>> attempts = []
    >>> def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise ConnectionError("try again")
    ...     return "done"
    >>> retry_target(flaky, lambda error: isinstance(error, ConnectionError), iter([0.0] * 5), deadline=None)
    'done'
    >>> len(attempts)
    3

Which calls the client retries at all is decided in `kato_client.client` (AIP-194): reads
and other idempotent RPCs, and server-held Observe / ObserveSequence / Learn, which carry
a `request_id` the server uses to answer a repeated call with the first response.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

__all__ = ["RETRYABLE_CODES", "Retry", "exponential_sleep_generator", "retry_target"]

T = TypeVar("T")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
"""UNAVAILABLE: this attempt did not get through; ABORTED: the server's read-modify-write
lost its race too often (code.proto: retry the whole call). RESOURCE_EXHAUSTED is retried
too, but only when the server says when (a `RetryInfo`: it shed the call, changing
nothing); without one it is a limit the request itself exceeds."""


def exponential_sleep_generator(initial: float, maximum: float, multiplier: float = 2.0) -> Iterator[float]:
    """Delays for successive retries: uniform in [0, d], d = initial · multiplier^k, capped at maximum.

    The jitter keeps clients that failed together from retrying together.

    >>> delays = exponential_sleep_generator(0.0, 1.0)
    >>> [next(delays) for _ in range(3)]
    [0.0, 0.0, 0.0]
    """
    bound = min(initial, maximum)
    while True:
        yield random.uniform(0.0, bound)
        bound = min(bound * multiplier, maximum)


def retry_target(
    target: Callable[[], T],
    predicate: Callable[[Exception], bool],
    sleep_generator: Iterable[float],
    deadline: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    at_least: Callable[[Exception], float] = lambda error: 0.0,
) -> T:
    """Calls `target` until it returns, retrying the errors `predicate` accepts.

    Waits the next delay of `sleep_generator` between attempts and gives up, raising the
    last error, when the generator is exhausted or when the next attempt would start after
    `deadline` seconds from now (None: no deadline). An error the predicate rejects is
    raised at once. A delay is never shorter than ``at_least(error)`` (the server's RetryInfo).
    """
    give_up_at = None if deadline is None else clock() + deadline
    delays = iter(sleep_generator)
    while True:
        try:
            return target()
        except Exception as error:
            if not predicate(error):
                raise
            delay = next(delays, None)
            if delay is not None:
                delay = max(delay, at_least(error))
            if delay is None or (give_up_at is not None and clock() + delay > give_up_at):
                raise
        sleep(delay)


@dataclass(frozen=True)
class Retry:
    """A retry policy: retry `codes` with back-off from `initial` to `maximum` seconds for
    at most `deadline` seconds in all (each attempt's own timeout is cut to what is left)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    deadline: float = 30.0
    codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES

    def delays(self) -> Iterator[float]:
        return exponential_sleep_generator(self.initial, self.maximum, self.multiplier)
