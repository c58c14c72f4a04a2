"""LPIPS between frames: to the previous frame and to the first frame (lower is better).

With d(a, b) the LPIPS distance of a model (default lpips-alex; ``distance(a, b) -> [N]``
for frames a, b [N, 3, H, W] in [0, 1]):

- ``lpips_prev[model]``: d(f_{i-1}, f_i), mean over i >= 1;
- ``lpips_first[model]``: d(f_0, f_i), mean over i >= 1.

Each is a scalar for the whole video and a series of per-segment means (segments of
``meta.segment_seconds``). ``lpips(frames, meta, model, name, batch)`` is the functional
form. d is the project's local-weights network (metrics/encoders/perceptual.py), not
torchmetrics' LPIPS, which downloads its trunk (the reason is there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.errors import require
from metrics.base import METRICS, Metric, MetricOutput, VideoMeta, metric_key, segment_series
from metrics.clip import map_pairs

VERSION = "lpips-v1"


def pair_distances(model: Any, a: torch.Tensor, b: torch.Tensor, batch: int = 32) -> np.ndarray:
    """d(a_n, b_n) for frames a, b [N, C, H, W] in [0, 1] -> [N]."""
    return map_pairs(model, "distance", a, b, batch).reshape(len(a)).numpy().astype(float)


@dataclass
class LpipsConfig:
    """The ``lpips`` metric's parameters (the network's own: encoders.perceptual.LpipsNetConfig)."""

    model: str = "lpips-alex"  # or lpips-vgg
    batch: int = 32

    def __post_init__(self) -> None:
        require(self.batch > 0, "lpips.batch", self.batch, "must be > 0")


def lpips(frames: torch.Tensor, meta: VideoMeta, model: Any, name: str = LpipsConfig.model,
          batch: int = LpipsConfig.batch) -> MetricOutput:
    """frames [T, C, H, W] in [0, 1] -> ``lpips_prev[name]`` and ``lpips_first[name]`` (module
    doc), scalars and per-segment series, with ``model.distance``; nothing for T < 2."""
    T, out = len(frames), MetricOutput()
    if T < 2:
        return out
    prev = pair_distances(model, frames[:-1], frames[1:], batch)
    first = pair_distances(model, frames[:1].expand(T - 1, -1, -1, -1), frames[1:], batch)
    for stat, values in (("lpips_prev", prev), ("lpips_first", first)):
        key = metric_key(stat, name)
        out.scalars[key] = float(values.mean())
        out.series[key] = segment_series(values, 1, meta, T)
    return out


@METRICS.register("lpips", config=LpipsConfig)
class Lpips(Metric):
    """LPIPS to the previous and to the first frame, per segment and overall."""

    name = "lpips"
    version = VERSION
    higher_is_better = False

    @classmethod
    def needs(cls, config: LpipsConfig | None) -> tuple[str, ...]:
        return ((config or LpipsConfig()).model,)

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        cfg = self.config or LpipsConfig()
        return lpips(frames, meta, self.models[cfg.model], cfg.model, cfg.batch)
