"""System metrics of a rollout prefix: latency, throughput, cache size.

What the latency includes: per chunk, the denoising forwards, the clean forward that
writes K/V, and the cache method's update. Prompt encoding and decoding are excluded
(prompt encoding is reported separately in the run's meta.json). Peak memory: CUDA max
allocated on a GPU; the process's peak resident memory on a CPU (which includes the
model and everything else the process holds). ``system(num_frames, meta)`` is the
functional form; nothing here is an image metric, so torchmetrics has nothing to add but
the state.
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


SCALARS = ("latency_mean_s", "latency_p50_s", "latency_p95_s", "first_chunk_latency_s", "fps", "kv_bytes",
           "tokens_per_head_mean", "tokens_per_head_max", "peak_memory_bytes")


def system(num_frames: int, meta: VideoMeta) -> MetricOutput:
    """system_summary of the first ``num_frames`` frames (from ``meta.chunks``) as scalars, plus
    series per chunk: latency, allocated KV bytes and mean tokens kept per head."""
    if not meta.chunks:
        raise ValueError("the system metric needs the rollout's chunk records (meta.chunks)")
    summary = system_summary(meta.chunks, num_frames, meta.fps)
    chunks = [c for c in meta.chunks if c.frame_end <= num_frames]

    def series(values) -> Series:
        return Series.from_rows(((c.frame_end - meta.frames_per_chunk, c.frame_end, float(v))
                                 for c, v in zip(chunks, values)), meta.fps)

    return MetricOutput(
        {k: float(summary[k]) for k in SCALARS if k in summary},
        {"latency_s": series([c.wall_s for c in chunks]), "kv_bytes": series([c.kv_bytes for c in chunks]),
         "tokens_per_head_mean": series([np.asarray(c.tokens).mean() for c in chunks])})


@METRICS.register("system")
class SystemMetric(Metric):
    """``system`` on the metric interface (the frames count, their pixels do not)."""

    name = "system"
    version = VERSION
    higher_is_better = {"fps": True, "*": False}
    SCALARS = SCALARS

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return system(len(frames), meta)
