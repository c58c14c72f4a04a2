"""Shapes and time base of a backbone: what cache methods, metrics and kernels plan with."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Shapes and time base of a backbone (what a cache method may plan with).

    frame_shape: (C, H, W) of one generated frame in model space (pixels or latents).
    tokens_per_frame: patches per frame; frames_per_chunk: frames generated per AR step.
    rope_split: (temporal, height, width) dims of head_dim for 3-D RoPE.
    horizon_frames: length of the training clips, in frames.
    fps: frames of model-space time per second of video (4 for the toy and for Wan latents).
    rope_max_positions: size of the RoPE position table; positions must stay below it.
    """

    frame_shape: tuple[int, int, int]
    tokens_per_frame: int
    frames_per_chunk: int
    layers: int
    heads: int
    head_dim: int
    rope_split: tuple[int, int, int]
    horizon_frames: int
    fps: float
    rope_max_positions: int

    def frames_for_seconds(self, seconds: float) -> int:
        """Frames needed for ``seconds`` of video, rounded up to whole chunks."""
        chunks = math.ceil(seconds * self.fps / self.frames_per_chunk - 1e-9)
        return max(1, chunks) * self.frames_per_chunk

    @property
    def kv_entries_per_frame(self) -> int:
        """Cache entries one frame adds across all layers and heads."""
        return self.tokens_per_frame * self.layers * self.heads
