"""The ``system`` metric family: per-chunk series of a rollout (DiT latency, the method's share,
KV bytes, tokens kept) in metrics.csv. The prefix's scalar system numbers (the timing protocol)
are core/system_numbers.py's, written once, in the run's summary.json. Nothing here is an image
metric, so torchmetrics has nothing to add but the state.
"""

from __future__ import annotations

import numpy as np
import torch

from metrics.base import METRICS, Metric, MetricOutput, Series, VideoMeta

VERSION = "system-v2"


def system(num_frames: int, meta: VideoMeta) -> MetricOutput:
    """Per-chunk series of the first ``num_frames`` frames (from ``meta.chunks``): DiT latency, the
    method's share of it, allocated KV bytes and mean tokens kept per head. The prefix's scalar system
    numbers are the run summary's (``system_summary``), written there once."""
    if not meta.chunks:
        raise ValueError("the system metric needs the rollout's chunk records (meta.chunks)")
    chunks = [c for c in meta.chunks if c.frame_end <= num_frames]
    if not chunks:
        raise ValueError(f"no chunk ends within {num_frames} frames")

    def series(values) -> Series:
        return Series.from_rows(((c.frame_end - meta.frames_per_chunk, c.frame_end, float(v))
                                 for c, v in zip(chunks, values)), meta.fps)

    return MetricOutput(
        {},
        {"latency_s": series([c.wall_s for c in chunks]),
         "method_s": series([getattr(c, "method_s", 0.0) for c in chunks]),
         "kv_bytes": series([c.kv_bytes for c in chunks]),
         "tokens_per_head_mean": series([np.asarray(c.tokens).mean() for c in chunks])})


@METRICS.register("system")
class SystemMetric(Metric):
    """``system`` on the metric interface (the frames count, their pixels do not)."""

    name = "system"
    version = VERSION
    higher_is_better = {"*": False}

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return system(len(frames), meta)
