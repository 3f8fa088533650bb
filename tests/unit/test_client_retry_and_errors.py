"""The Python client's retry loop and error classes, without a server (pure logic)."""

from __future__ import annotations

import itertools

import grpc
import pytest
from kato_client.errors import KatoClientError, error_class
from kato_client.retry import exponential_sleep_generator, retry_target


class _Clock:
    """Time that moves only when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _retry_failing_call(predicate, delays, deadline: float | None) -> tuple[int, _Clock]:
    """Retries a call that always fails; returns how often it ran and the clock."""
    clock, attempts = _Clock(), []

    def target() -> None:
        attempts.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retry_target(target, predicate, delays, deadline, clock=lambda: clock.now, sleep=clock.sleep)
    return len(attempts), clock


def test_retry_gives_up_before_an_attempt_would_start_after_the_deadline() -> None:
    attempts, clock = _retry_failing_call(lambda e: True, itertools.repeat(1.0), deadline=3.5)
    assert clock.slept == [1.0, 1.0, 1.0] and attempts == 4


def test_retry_raises_an_error_the_predicate_rejects_at_once() -> None:
    attempts, clock = _retry_failing_call(lambda e: False, itertools.repeat(1.0), deadline=None)
    assert attempts == 1 and clock.slept == []


def test_retry_stops_when_the_delays_run_out() -> None:
    attempts, _ = _retry_failing_call(lambda e: True, [0.5, 0.5], deadline=None)
    assert attempts == 3


def test_backoff_grows_to_its_cap_with_jitter_below_the_bound() -> None:
    delays = list(itertools.islice(exponential_sleep_generator(1.0, 5.0, 2.0), 6))
    bounds = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert all(0.0 <= delay <= bound for delay, bound in zip(delays, bounds, strict=True))


@pytest.mark.parametrize("code", [code for code in grpc.StatusCode if code != grpc.StatusCode.OK], ids=str)
def test_every_error_code_has_its_own_class(code: grpc.StatusCode) -> None:
    cls = error_class(code)
    assert cls is not KatoClientError and issubclass(cls, KatoClientError) and cls.code == code


def test_retry_waits_at_least_the_delay_the_server_asked_for() -> None:
    clock, attempts = _Clock(), []

    class Shed(Exception):
        retry_delay = 2.5

    def target() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Shed()
        return "served"

    result = retry_target(
        target,
        lambda e: isinstance(e, Shed),
        itertools.repeat(0.1),
        deadline=None,
        clock=lambda: clock.now,
        sleep=clock.sleep,
        at_least=lambda e: e.retry_delay,
    )
    assert result == "served" and clock.slept == [2.5, 2.5]
