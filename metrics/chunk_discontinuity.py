"""Chunk-boundary discontinuity: do frames change differently where a new chunk starts?

The generator writes ``meta.frames_per_chunk`` (F) frames per autoregressive step, so
frame t starts a chunk when t % F == 0. With frames f_t ([T, C, H, W] in [0, 1]) and
d_t = mean over channels and pixels of |f_t - f_{t-1}| (t >= 1):

- ``chunk_boundary_diff``: B = mean of d_t over boundary pairs (t % F == 0);
- ``chunk_inside_diff``: I = mean of d_t over pairs inside a chunk (t % F != 0);
- ``chunk_discontinuity`` = |ln((B + e) / (I + e))|, e = 1/255 (one uint8 grey level, so
  changes too small to see cannot make a large ratio; a static video scores 0).

0 is seamless. The log ratio is folded because both signs are chunk-locked artefacts: a
ratio above 1 is a visible seam (the picture jumps where a chunk starts); a ratio below
1 is a periodic hitch (motion stalls at every boundary, e.g. a chunk that starts by
repeating the last frame of the one before). For a video without such artefacts the
change between frames does not depend on where the chunks start, so either way lower is
better; B and I are diagnostics without a direction (they grow with ordinary motion).

Why pixel differences and not optical flow: a seam is as often a jump in colour or
brightness as in position, which flow (and the whole-pixel toy stand-in above all) does
not see, and the ratio already divides out how much the video moves; it is also cheap
(no encoder). The series ``chunk_discontinuity`` is the same statistic per segment of
``meta.segment_seconds`` (pair (t-1, t) counted in the segment of frame t).

Not applicable (ValueError, recorded by the suite as ``not applicable: ...``) when F < 2
(no pairs inside a chunk) or the video has no chunk boundary (T <= F).
``chunk_discontinuity(frames, meta)`` is the functional form.
"""

from __future__ import annotations

import numpy as np
import torch

from metrics.base import METRICS, Metric, MetricOutput, Series, VideoMeta, segment_bounds

VERSION = "chunk-discontinuity-v1"
FLOOR = 1 / 255  # e above: one uint8 grey level


def frame_differences(frames: torch.Tensor, batch: int = 32) -> np.ndarray:
    """frames [T, C, H, W] -> [T - 1]: d_t = mean |f_t - f_{t-1}| for t = 1..T-1, in batches
    of frame pairs so that no more than ``batch`` frames of differences are held at once."""
    T, out = len(frames), []
    for i in range(0, T - 1, batch):
        j = min(i + batch, T - 1)
        out.append((frames[i + 1:j + 1].float() - frames[i:j].float()).abs().flatten(1).mean(1))
    return torch.cat(out).cpu().numpy().astype(float) if out else np.zeros(0)


def discontinuity(boundary: float, inside: float) -> float:
    """|ln((B + e) / (I + e))| for the mean boundary and inside differences B, I."""
    return abs(float(np.log((boundary + FLOOR) / (inside + FLOOR))))


def chunk_discontinuity(frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
    """frames [T, C, H, W] in [0, 1] -> the three scalars and the per-segment series (module
    doc), with F = meta.frames_per_chunk; ValueError when F < 2 or T <= F."""
    F, T = int(meta.frames_per_chunk), len(frames)
    if F < 2:
        raise ValueError(f"frames_per_chunk={F}: chunks of one frame have no frame pairs inside a chunk")
    if T <= F:
        raise ValueError(f"a {T}-frame video has no chunk boundary (chunks of {F} frames)")
    t = np.arange(1, T)  # pair (t - 1, t)
    diffs, at_boundary = frame_differences(frames), t % F == 0
    boundary, inside = float(diffs[at_boundary].mean()), float(diffs[~at_boundary].mean())
    out = MetricOutput({"chunk_discontinuity": discontinuity(boundary, inside),
                        "chunk_boundary_diff": boundary, "chunk_inside_diff": inside})
    rows = []
    for a, b in segment_bounds(T, meta.fps, meta.segment_seconds):
        pairs = (t >= a) & (t < b)
        if (pairs & at_boundary).any() and (pairs & ~at_boundary).any():
            rows.append((a, b, discontinuity(diffs[pairs & at_boundary].mean(), diffs[pairs & ~at_boundary].mean())))
    if rows:
        out.series["chunk_discontinuity"] = Series.from_rows(rows, meta.fps)
    return out


@METRICS.register("chunk_discontinuity")
class ChunkDiscontinuity(Metric):
    """Frame change across chunk boundaries against inside chunks (module doc)."""

    name = "chunk_discontinuity"
    version = VERSION
    higher_is_better = {"chunk_discontinuity": False, "*": None}

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return chunk_discontinuity(frames, meta)
