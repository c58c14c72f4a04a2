"""Prompt schedules in time: when each prompt of a multi-prompt run takes effect (the chunk that starts at or after its time)."""

from __future__ import annotations

import numpy as np


def prompt_starts(timeline: list[tuple[float, str]], fps: float, frames_per_chunk: int) -> list[int]:
    """First chunk index of every prompt of a schedule (a switch takes effect at the first
    chunk that starts at or after its time)."""
    starts = []
    for at, _ in timeline:
        frame = at * fps
        starts.append(int(np.ceil(frame / frames_per_chunk - 1e-9)))
    return starts


def frame_timeline(timeline: list[tuple[float, str]], fps: float, frames_per_chunk: int) -> list[tuple[int, str]]:
    """[(start second, prompt)] -> [(first frame, prompt)] at the chunk where each prompt takes effect."""
    starts = prompt_starts(timeline, fps, frames_per_chunk)
    return [(s * frames_per_chunk, prompt) for s, (_, prompt) in zip(starts, timeline)]
