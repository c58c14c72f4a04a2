"""System metrics of a rollout prefix: latency, throughput, cache size.

What the latency includes: per chunk, the denoising forwards, the clean forward that
writes K/V, and the cache method's update. Prompt encoding and decoding are excluded
(prompt encoding is reported separately in the run's meta.json). Peak memory: CUDA max
allocated on a GPU; the process's peak resident memory on a CPU (which includes the
model and everything else the process holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from metrics.base import METRICS, Metric, MetricOutput, Series, VideoMeta

VERSION = "system-v1"
LATENCY_INCLUDES = "denoising steps + clean K/V pass + cache update; excludes prompt encoding and decoding"


class ChunkLike(Protocol):
    frame_end: int
    wall_s: float
    kv_bytes: int
    tokens: np.ndarray  # [L, H]


def system_summary(chunks: Sequence[ChunkLike], frames: int, fps: float) -> dict:
    """Numbers for the prefix of ``frames`` frames (chunks ending at or before it)."""
    prefix = [c for c in chunks if c.frame_end <= frames]
    if not prefix:
        raise ValueError(f"no chunk ends within {frames} frames")
    wall = np.array([c.wall_s for c in prefix])
    last = prefix[-1]
    tokens = np.asarray(last.tokens)
    return {
        "frames": int(last.frame_end),
        "seconds": last.frame_end / fps,
        "chunks": len(prefix),
        "latency_mean_s": float(wall.mean()),
        "latency_p50_s": float(np.median(wall)),
        "latency_p95_s": float(np.percentile(wall, 95)),
        "first_chunk_latency_s": float(wall[0]),
        "fps": float(last.frame_end / wall.sum()),
        "kv_bytes": int(last.kv_bytes),
        "kv_mib": last.kv_bytes / 2**20,
        "tokens_per_head_mean": float(tokens.mean()),
        "tokens_per_head_max": int(tokens.max()),
        "tokens_total": int(tokens.sum()),
        "peak_memory_bytes": int(getattr(last, "peak_memory_bytes", 0)),
    }


@METRICS.register("system")
class SystemMetric(Metric):
    """system_summary on the metric interface (from ``meta.chunks``), plus series per chunk:
    latency, allocated KV bytes and mean tokens kept per head over time."""

    name = "system"
    version = VERSION
    higher_is_better = {"fps": True, "*": False}
    SCALARS = ("latency_mean_s", "latency_p50_s", "latency_p95_s", "first_chunk_latency_s", "fps", "kv_bytes",
               "tokens_per_head_mean", "tokens_per_head_max", "peak_memory_bytes")

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        if not meta.chunks:
            raise ValueError("the system metric needs the rollout's chunk records (meta.chunks)")
        summary = system_summary(meta.chunks, len(frames), meta.fps)
        chunks = [c for c in meta.chunks if c.frame_end <= len(frames)]
        starts = np.array([c.frame_end - meta.frames_per_chunk for c in chunks])
        ends = np.array([c.frame_end for c in chunks])

        def series(values) -> Series:
            return Series(starts, ends, np.array(values, float), meta.fps)

        return MetricOutput(
            {k: float(summary[k]) for k in self.SCALARS if k in summary},
            {"latency_s": series([c.wall_s for c in chunks]), "kv_bytes": series([c.kv_bytes for c in chunks]),
             "tokens_per_head_mean": series([np.asarray(c.tokens).mean() for c in chunks])})
