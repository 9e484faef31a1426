import statistics
import time

import pytest

from bench.measure.timing import Timing, rotation_count, time_cpu


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_cpu_timer_agrees_with_an_independent_clock():
    """A 2 ms busy loop, timed by the harness and call by call with time.monotonic_ns."""
    timing = time_cpu(lambda _: spin(0.002), [None], budget_s=0.5, flusher=None)
    independent = []
    for _ in range(20):
        t0 = time.monotonic_ns()
        spin(0.002)
        independent.append((time.monotonic_ns() - t0) / 1e9)
    assert timing.p50 == pytest.approx(statistics.median(independent), rel=0.1)
    assert timing.p50 == pytest.approx(0.002, rel=0.1)
    assert timing.p10 <= timing.p50 <= timing.p90
    assert len(timing.samples) >= 10


def test_short_calls_are_batched_within_a_sample():
    timing = time_cpu(lambda _: spin(10e-6), [None], budget_s=0.3, flusher=None)
    assert timing.inner > 1
    assert timing.p50 == pytest.approx(10e-6, rel=0.5)


def test_noise_and_flag():
    t = Timing(samples=[1.0] * 8 + [2.0] * 2, warmup_s=0.0, flushed=False)
    assert t.noise == pytest.approx(0.0)
    assert not t.noisy
    t2 = Timing(samples=[1.0, 1.2, 0.8, 1.5, 0.5, 1.0], warmup_s=0.0, flushed=False)
    assert t2.noisy


def test_rotation_count_exceeds_twice_the_cache():
    assert rotation_count(10 << 20, 32 << 20, 64, 1 << 40) == 8  # ceil(64/10) + 1
    assert rotation_count(1 << 30, 32 << 20, 64, 1 << 40) == 2
    assert rotation_count(1 << 10, 32 << 20, 16, 1 << 40) == 16  # capped
    assert rotation_count(1 << 20, 32 << 20, 64, 3 << 20) == 3  # memory-bound
