"""Infinity-RoPE: a one-frame sink plus a short window, keys cached without temporal
rotation and re-rotated to 0..W-1 at every attention call, queries right after them; at a
prompt switch the cache is flushed to the sink plus the last ``flush_keep_frames`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import require
from methods.base import KIND_SINK, METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod


@dataclass
class InfinityRopeConfig(BoundedConfig):
    name: str = "infinity_rope"
    budget_frames: int = 7
    sink_frames: int = 1
    flush_keep_frames: int = 2
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions == "repacked", "method.positions", self.positions,
                "infinity_rope re-rotates every key; allowed: repacked")
        require(self.flush_keep_frames >= 0, "method.flush_keep_frames", self.flush_keep_frames, "allowed: >= 0")
        if self.budget_tokens is None:
            require(0 <= self.sink_frames <= self.budget_frames, "method.sink_frames", self.sink_frames,
                    f"allowed: 0 <= sink_frames <= method.budget_frames={self.budget_frames}")


@METHODS.register("infinity_rope", config=InfinityRopeConfig)
class InfinityRope(BoundedMethod):
    config: InfinityRopeConfig

    def _keep_recent(self, store: LayerStore, recent: int) -> None:
        sink = store.frame < self.config.sink_frames
        store.kind[sink] = KIND_SINK
        store.keep(sink | (store.frame >= max(self.config.sink_frames, self.frames_written - recent)))

    def evict(self, layer: int, store: LayerStore) -> None:
        self._keep_recent(store, self.config.frames(self.geometry) - self.config.sink_frames)

    def on_prompt_switch(self, chunk_start: int, prompt: str) -> None:
        for store in self.layers:
            self._keep_recent(store, self.config.flush_keep_frames)
