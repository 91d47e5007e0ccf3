"""Reconnect delays: exponential, capped, jittered, and reset after a healthy stream."""

from __future__ import annotations

from exporter.runtime.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    """With the jitter at its top, the ceilings are initial * 2^(n-1), capped at the maximum."""
    backoff = Backoff(0.5, 4.0, uniform=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_scales_each_ceiling() -> None:
    """Full jitter: the delay is a random fraction of the ceiling, never more."""
    backoff = Backoff(1.0, 30.0, uniform=lambda: 0.25)
    assert [backoff.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_reset_starts_from_the_initial_delay() -> None:
    """After a healthy stream the next failure waits as little as the first one did."""
    backoff = Backoff(0.5, 30.0, uniform=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert backoff.attempt == 1
