"""Attention sink: the first S frames plus the last W frames (StreamingLLM; LongLive S=3, W=9).

The budget is S + W cached frames per head. Sink entries are marked ``sink`` and never
evicted. Positions: absolute (LongLive v1) or repacked so that sink, window and the
current chunk sit at 0..S+W+F-1, inside the trained horizon (StreamingLLM's cache indices).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError, require
from core.geometry import Geometry
from methods.base import KIND_SINK, METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod


@dataclass
class SinkConfig(BoundedConfig):
    name: str = "sink"
    sink_frames: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.sink_frames >= 0, "method.sink_frames", self.sink_frames, "allowed: >= 0")
        if self.budget_tokens is None:
            require(self.sink_frames <= self.budget_frames, "method.sink_frames", self.sink_frames,
                    f"the sink must fit the budget; allowed: <= method.budget_frames={self.budget_frames}")

    def check(self, geometry: Geometry, max_frames: int) -> None:
        super().check(geometry, max_frames)
        if self.sink_frames > self.frames(geometry):
            raise ConfigError(
                f"method.sink_frames={self.sink_frames} is larger than the budget of "
                f"{self.frames(geometry)} frames (method.budget_tokens={self.budget_tokens}); "
                f"allowed: <= {self.frames(geometry)}"
            )


@METHODS.register("sink", config=SinkConfig)
class Sink(BoundedMethod):
    config: SinkConfig
    tags = ("headline",)

    def evict(self, layer: int, store: LayerStore) -> None:
        sink = self.config.sink_frames
        window = self.config.frames(self.geometry) - sink
        is_sink = store.frame < sink
        store.kind[is_sink] = KIND_SINK
        store.keep(is_sink | (store.frame >= max(sink, self.frames_written - window)))
