"""System metrics of a rollout prefix: latency, throughput, cache size.

What the latency includes: per chunk, the denoising forwards, the clean forward that
writes K/V, and the cache method's update. Prompt encoding and decoding are excluded
(prompt encoding is reported separately in the run's meta.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

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
    }
