"""Negative control: no history at all; every chunk sees only itself.

Broken: the cache keeps nothing, so each chunk is generated from the prompt and its own
tokens only (block-causal self-attention within the chunk): no continuity between chunks.

Not at equal bytes: this control holds no K/V, so its allocated KV bytes are 0 and are
reported as 0 (``budget_frames`` / ``budget_tokens`` are accepted, so a sweep can set them
for every method, and ignored). It is the floor every method that uses its cache must beat:
a primary score on which a cache method does not beat "no cache" cannot see the cache.

Positions are repacked: the chunk sits at 0..F-1, as the first chunk of a training clip
(with nothing cached and relative RoPE, the positions do not change the attention anyway).
Shapes: every head of every layer holds 0 entries after every chunk; q_pos [H, F] = 0..F-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import require
from core.geometry import Geometry
from methods.base import METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod


@dataclass
class NoHistoryConfig(BoundedConfig):
    name: str = "control_no_history"
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions == "repacked", "method.positions", self.positions,
                "control_no_history places the chunk at 0..F-1; allowed: repacked")

    def check(self, geometry: Geometry, max_frames: int) -> None:
        """Nothing is cached and the chunk sits at 0..F-1: no budget or position limit applies."""


@METHODS.register("control_no_history", config=NoHistoryConfig)
class NoHistory(BoundedMethod):
    config: NoHistoryConfig

    def evict(self, layer: int, store: LayerStore) -> None:
        store.keep(torch.zeros_like(store.frame, dtype=torch.bool))
