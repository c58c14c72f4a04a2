"""core/timing.py: sections add up, wrapped calls are logged, latency summaries and the noise flag."""

import time

import pytest
import torch

from core.registry import MISSING
from core.timing import NOISY_SPREAD, Latency, Stopwatch, timed


def test_stopwatch_sums_each_section_over_its_runs():
    watch = Stopwatch("cpu")
    for _ in range(3):
        with watch.section("a"):
            time.sleep(0.01)
    with watch.section("b"):
        pass
    assert 0.03 <= watch.seconds["a"] < 0.5
    assert 0 <= watch.seconds["b"] < watch.seconds["a"]
    watch.reset()
    assert dict(watch.seconds) == {}


def test_timed_logs_every_call_and_returns_the_result():
    log: list[float] = []
    double = timed(lambda x: 2 * x, torch.device("cpu"), log)
    assert [double(1), double(2)] == [2, 4]
    assert len(log) == 2 and all(s >= 0 for s in log)


def test_latency_summary_values_and_noise_flag():
    steady = Latency.of([1.0] * 19 + [1.2])
    assert steady.p50_s == 1.0 and steady.n == 20 and steady.mean_s == pytest.approx(1.01)
    assert steady.p95_s == pytest.approx(1.01) and not steady.noisy
    loaded = Latency.of([1.0] * 10 + [3.0] * 10)
    assert loaded.p50_s == 2.0 and loaded.p95_s == 3.0 and loaded.spread == pytest.approx(0.5)
    assert not loaded.noisy and Latency.of([1.0] * 9 + [5.0] * 3).spread > NOISY_SPREAD
    assert Latency.of([1.0] * 9 + [5.0] * 3).noisy
    assert Latency.of([2.0]).as_dict() == {"n": 1, "p50_s": 2.0, "p95_s": 2.0, "mean_s": 2.0, "spread": 0.0,
                                           "noisy": False}
    with pytest.raises(ValueError):
        Latency.of([])


def test_missing_marker_is_omegaconfs():
    omegaconf = pytest.importorskip("omegaconf")
    assert MISSING == omegaconf.MISSING
