"""Sliding window: keep the last W frames (Self Forcing's rolling KV cache).

Shapes: every head of every layer keeps W * tokens_per_frame entries once the rollout is
W frames long. Positions are absolute (pre-rotated keys, as Self Forcing) or repacked.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod


@dataclass
class SlidingWindowConfig(BoundedConfig):
    name: str = "sliding_window"


@METHODS.register("sliding_window", config=SlidingWindowConfig)
class SlidingWindow(BoundedMethod):
    config: SlidingWindowConfig
    tags = ("headline",)

    def evict(self, layer: int, store: LayerStore) -> None:
        window = self.config.frames(self.geometry)
        store.keep(store.frame >= self.frames_written - window)
