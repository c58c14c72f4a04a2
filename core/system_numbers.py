"""The system numbers of a rollout prefix by forcebench's one timing protocol: latency, FPS,
the cache method's share, cache size, peak memory (README.md, "Timing"). A shared contract:
the runner writes them into summary.json, the reports read them, the GPU check and the
backbone timing script compute them the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from core.timing import Latency

# The one timing protocol of forcebench: what every latency and FPS number in a summary means.
TIMING_PROTOCOL = "forcebench-timing-v1"
TIMING_DEFINITION = (
    "latency_*: per-chunk DiT latency (denoising forwards + the clean K/V pass + re-cache passes + the "
    "cache method's update), steady state: p50 / p95 / mean over the chunks after the first (warm-up); "
    "latency_spread = p95 / p50 - 1. first_chunk_latency_s: the first chunk's DiT latency; "
    "first_chunk_latency_e2e_s: with its prompt encoding and decoding. fps: output video frames a second, "
    "DiT only, over every chunk of the prefix; fps_latent: the same in model (latent) frames; fps_e2e: video "
    "frames a second with prompt encoding and decoding. method_share: the cache method's share of the DiT "
    "time. Synchronised on CUDA; device, dtype and threads in the summary's timing block.")

# The system numbers of a summary and their directions (higher is better); a value of one that is
# not a number is rejected by the report schema (bench/report/schema.py).
SYSTEM_DIRECTIONS = {"fps": True, "fps_latent": True, "fps_e2e": True, "latency_mean_s": False,
                     "latency_p50_s": False, "latency_p95_s": False, "latency_spread": False,
                     "first_chunk_latency_s": False, "first_chunk_latency_e2e_s": False, "method_share": False,
                     "kv_bytes": False, "kv_mib": False, "tokens_per_head_mean": False, "tokens_per_head_max": False,
                     "tokens_total": False, "peak_memory_bytes": False}


class ChunkLike(Protocol):
    frame_end: int
    wall_s: float
    kv_bytes: int
    tokens: np.ndarray  # [L, H]


def system_summary(chunks: Sequence[ChunkLike], frames: int, fps: float, video_frames: int | None = None) -> dict:
    """Numbers for the prefix of ``frames`` model frames (chunks ending at or before it), by the
    timing protocol above; ``video_frames``: the output video frames they decode to (default: as many)."""
    prefix = [c for c in chunks if c.frame_end <= frames]
    if not prefix:
        raise ValueError(f"no chunk ends within {frames} frames")
    wall = np.array([c.wall_s for c in prefix])
    extra = {k: np.array([getattr(c, k, 0.0) for c in prefix]) for k in ("method_s", "decode_s", "encode_s")}
    latency = Latency.of(wall[1:] if len(wall) > 1 else wall)
    last = prefix[-1]
    tokens = np.asarray(last.tokens)
    video = last.frame_end if video_frames is None else video_frames
    dit_s = float(wall.sum())
    return {
        "frames": int(last.frame_end),
        "seconds": last.frame_end / fps,
        "chunks": len(prefix),
        "latency_mean_s": latency.mean_s,
        "latency_p50_s": latency.p50_s,
        "latency_p95_s": latency.p95_s,
        "latency_spread": latency.spread,
        "first_chunk_latency_s": float(wall[0]),
        "first_chunk_latency_e2e_s": float(wall[0] + extra["decode_s"][0] + extra["encode_s"][0]),
        "fps": video / dit_s,
        "fps_latent": last.frame_end / dit_s,
        "fps_e2e": video / (dit_s + float(extra["decode_s"].sum() + extra["encode_s"].sum())),
        "method_share": float(extra["method_s"].sum()) / dit_s,
        "kv_bytes": int(last.kv_bytes),
        "kv_mib": last.kv_bytes / 2**20,
        "tokens_per_head_mean": float(tokens.mean()),
        "tokens_per_head_max": int(tokens.max()),
        "tokens_total": int(tokens.sum()),
        "peak_memory_bytes": int(getattr(last, "peak_memory_bytes", 0)),
    }
