"""Sliding window: keep the last W frames (Self Forcing's rolling KV cache).

Shapes: every head of every layer keeps W * tokens_per_frame entries once the rollout is
W frames long. Positions are absolute (pre-rotated keys, as Self Forcing) or repacked.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import METHODS, CacheMethod, LayerStore
from methods.bounded import BoundedConfig, repacked_positions


@dataclass
class SlidingWindowConfig(BoundedConfig):
    name: str = "sliding_window"


@METHODS.register("sliding_window", config=SlidingWindowConfig)
class SlidingWindow(CacheMethod):
    config: SlidingWindowConfig

    def evict(self, layer: int, store: LayerStore) -> None:
        window = self.config.frames(self.geometry)
        store.keep(store.frame >= self.frames_written - window)

    def positions(self, layer, store, chunk_start):
        if self.config.positions == "repacked":
            return repacked_positions(store, self.geometry.frames_per_chunk)
        return super().positions(layer, store, chunk_start)
