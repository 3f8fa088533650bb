"""The pauses between a server-held session's compare-and-set attempts."""

from __future__ import annotations

from itertools import islice

from kato_grpc.sessions.runner import conflict_backoff


def test_each_pause_is_jittered_below_a_bound_that_doubles_up_to_its_ceiling():
    pauses = list(islice(conflict_backoff(first=0.001, ceiling=0.008), 200))
    bounds = [min(0.001 * 2**i, 0.008) for i in range(200)]
    assert all(0.0 <= pause <= bound for pause, bound in zip(pauses, bounds, strict=True))
    assert max(pauses[10:]) > 0.004  # past the doubling, pauses spread up to the ceiling
