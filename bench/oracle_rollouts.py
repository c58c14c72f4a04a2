"""Rollouts on the toy world with their ground truth: the loop shared by the toy reports.

For every prompt entry and seed, the ground-truth world video is simulated once and every
method configuration rolls out from the same seed; each rollout comes with the per-frame
oracle analysis, which serves any frame range of it (metrics/oracle.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from bench.config import PromptEntry
from bench.models.base import Backbone
from bench.rollout import Rollout, frame_timeline, generate
from bench.sampler import FlowSampler
from bench.world import WorldVideo, simulate
from methods import build_method
from methods.base import MethodConfig
from metrics.oracle import frame_analysis


@dataclass
class OracleRollout:
    """One method's rollout of one prompt entry and seed, next to the world's ground truth."""

    entry: PromptEntry
    seed: int
    method: str  # the key of the configuration in the mapping passed in
    rollout: Rollout
    video: np.ndarray  # [T, 3, H, W] float32 in [0, 1]
    truth: WorldVideo
    analysis: tuple  # frame_analysis(video, truth)


def oracle_rollouts(model: Backbone, entries: Iterable[PromptEntry], seeds: list[int],
                    configs: Mapping[str, MethodConfig], frames: int,
                    sampler: FlowSampler) -> Iterator[OracleRollout]:
    """Roll out every (entry, seed, configuration) to ``frames`` frames, in that loop order."""
    g = model.geometry
    for entry in entries:
        timeline = entry.timeline()
        for seed in seeds:
            truth = simulate(frame_timeline(timeline, g.fps, g.frames_per_chunk), frames, seed)
            for name, cfg in configs.items():
                rollout = generate(model, build_method(cfg, g), timeline, frames, seed, sampler)
                video = rollout.frames.numpy()
                yield OracleRollout(entry, seed, name, rollout, video, truth, frame_analysis(video, truth))
