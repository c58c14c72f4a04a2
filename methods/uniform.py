"""Uniform per-head budget (H2O / SnapKV style): every head keeps the same number of
tokens, the most recent ``recent_frames`` frames plus the older tokens with the highest
accumulated attention.

Per head and layer: budget_frames * tokens_per_frame entries (or the share of
``budget_tokens``). Entries are kept token by token, so heads end up with different
frames. Positions: absolute (as H2O keeps original positions) or repacked.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import require
from methods.base import METHODS, LayerStore
from methods.bounded import BoundedConfig
from methods.scored import ScoredMethod, top_entries_per_head


@dataclass
class UniformConfig(BoundedConfig):
    name: str = "uniform"
    recent_frames: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.recent_frames >= 0, "method.recent_frames", self.recent_frames, "allowed: >= 0")
        if self.budget_tokens is None:
            require(self.recent_frames <= self.budget_frames, "method.recent_frames", self.recent_frames,
                    f"allowed: <= method.budget_frames={self.budget_frames}")


@METHODS.register("uniform", config=UniformConfig)
class Uniform(ScoredMethod):
    config: UniformConfig

    def evict(self, layer: int, store: LayerStore) -> None:
        g = self.geometry
        budget = self.config.frames(g) * g.tokens_per_frame
        recent = store.frame >= self.frames_written - self.config.recent_frames
        older = top_entries_per_head(store, ~recent, budget - self.config.recent_frames * g.tokens_per_frame)
        store.keep(recent | older)
