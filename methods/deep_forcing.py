"""Deep Forcing (training-free): a deep sink of S frames, the C older frames that recent
queries attend to most, and the R most recent frames; kept keys are re-rotated so that
the kept frames sit at consecutive positions ending just before the current chunk.

Defaults are the published ones for Wan (S=10, budget N=S+C+R=16, R=4) unchanged: the
toy horizon is 21 frames in chunks of 3, the same as Wan's 21 latent frames, so no
scaling is needed. ``decay`` halves older attention every chunk ("recent queries").
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import require
from core.geometry import Geometry
from methods.base import KIND_SINK, METHODS, LayerStore
from methods.bounded import BoundedConfig
from methods.scored import ScoredMethod, top_frames_per_head


@dataclass
class DeepForcingConfig(BoundedConfig):
    name: str = "deep_forcing"
    budget_frames: int = 16
    sink_frames: int = 10
    recent_frames: int = 4
    decay: float = 0.5
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions == "repacked", "method.positions", self.positions,
                "deep_forcing re-rotates kept keys; allowed: repacked")
        require(0 <= self.decay <= 1, "method.decay", self.decay, "allowed: 0 <= decay <= 1")
        if self.budget_tokens is None:
            require(self.sink_frames + self.recent_frames <= self.budget_frames, "method.sink_frames",
                    self.sink_frames, f"sink + recent frames must fit method.budget_frames={self.budget_frames}")

    def check(self, geometry: Geometry, max_frames: int) -> None:
        super().check(geometry, max_frames)
        require(self.sink_frames + self.recent_frames <= self.frames(geometry), "method.budget_tokens",
                self.budget_tokens, "too small for sink_frames + recent_frames")


@METHODS.register("deep_forcing", config=DeepForcingConfig)
class DeepForcing(ScoredMethod):
    config: DeepForcingConfig

    @property
    def decay(self) -> float:  # type: ignore[override]
        return self.config.decay

    def evict(self, layer: int, store: LayerStore) -> None:
        c = self.config
        sink = store.frame < c.sink_frames
        store.kind[sink] = KIND_SINK
        recent = store.frame >= self.frames_written - c.recent_frames
        middle = c.frames(self.geometry) - c.sink_frames - c.recent_frames
        chosen = top_frames_per_head(store, ~(sink | recent), middle)
        store.keep(sink | recent | chosen)
