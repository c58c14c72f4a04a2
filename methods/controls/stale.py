"""Negative control: a cache frozen at the start (the first W frames, never replaced).

Broken: after the first W = ``frames(geometry)`` frames nothing new enters the cache, so
every later chunk is conditioned on the opening seconds and on nothing of what it just
generated. Positions are repacked (the W frames at 0..W-1, the chunk right after), so they
stay inside the trained horizon and the model is never pushed off its positional range: the
only thing wrong is the staleness.

Why a useful control: same KV bytes as ``sliding_window`` at the same budget. A stale cache
keeps the video close to its first frames, which scores well on consistency-to-the-start
metrics (an audit found a leaderboard that ranked a stale cache first); a primary score
that measures whether the cache kept what the video needs must rank it below the sound
methods. Shapes: each head of each layer keeps min(W, frames written) * tokens_per_frame
entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import require
from methods.base import METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod


@dataclass
class StaleConfig(BoundedConfig):
    name: str = "control_stale"
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions == "repacked", "method.positions", self.positions,
                "control_stale keeps its frames inside the trained horizon; allowed: repacked")


@METHODS.register("control_stale", config=StaleConfig)
class Stale(BoundedMethod):
    config: StaleConfig

    def evict(self, layer: int, store: LayerStore) -> None:
        store.keep(store.frame < self.config.frames(self.geometry))
