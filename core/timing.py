"""Wall-clock timing, the one way forcebench times work on a CPU or a GPU.

A CUDA call returns before the device has finished, so every timed region is bracketed by
``synchronize`` on CUDA devices (a no-op on the CPU). ``Stopwatch`` accumulates named
sections (``with watch.section("method"): ...``); ``timed`` wraps a function so each call's
time lands in a list. ``Latency`` summarises repeated measurements of one thing: median,
95th percentile and the spread (p95 / p50 - 1) that says whether the samples agree.
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued work on a CUDA device; nothing on other devices."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Seconds per named section, summed over every time a section ran (synchronised on CUDA)."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def reset(self) -> None:
        self.seconds.clear()


def timed(fn: Callable, device: torch.device | str | None, log: list[float]) -> Callable:
    """``fn`` wrapped to append each call's wall time (synchronised on CUDA) to ``log``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        synchronize(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        synchronize(device)
        log.append(time.perf_counter() - start)
        return out

    return call


def median_seconds(fn: Callable, device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` calls: CUDA events on a GPU
    (the device's own clock around each call), perf_counter elsewhere."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# A measurement whose p95 exceeds its median by more than this fraction is flagged as noisy:
# the samples disagree (background load, frequency changes), so its median may not rank it.
NOISY_SPREAD = 0.5


@dataclass(frozen=True)
class Latency:
    """Summary of repeated timings of one thing (seconds): p50, p95, spread = p95 / p50 - 1."""

    n: int
    p50_s: float
    p95_s: float
    mean_s: float

    @property
    def spread(self) -> float:
        return self.p95_s / self.p50_s - 1 if self.p50_s > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        if len(samples) == 0:
            raise ValueError("a latency summary needs at least one sample")
        x = np.asarray(samples, dtype=float)
        return cls(len(x), float(np.median(x)), float(np.percentile(x, 95)), float(x.mean()))

    def as_dict(self) -> dict:
        return {"n": self.n, "p50_s": self.p50_s, "p95_s": self.p95_s, "mean_s": self.mean_s,
                "spread": self.spread, "noisy": self.noisy}


def device_name(device: torch.device | str) -> str:
    """What a timing ran on: the GPU's name, or the CPU's model name with the threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model} ({threads} thread{'' if threads == 1 else 's'})"
