"""Two-tier head-wise cache (DuoAttention / RLKV style).

Heads are ranked by a criticality score from the profile (the attention mass they put
beyond the last ``local_frames`` frames, i.e. 1 - local mass); the top
``critical_fraction`` keep a long window, every other head a small constant cache of
``small_sink_frames`` sink frames plus ``small_recent_frames`` recent frames. The long
window takes what the budget (mean ``budget_frames`` per head) leaves; with repacked
positions it is capped so that positions stay inside the trained horizon, and then the
next heads by score are promoted to the long window until the budget is spent (so the
method compares with the others at equal KV bytes; ``critical_fraction`` is a minimum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import ConfigError, require
from core.geometry import Geometry
from methods.base import KIND_SINK, METHODS, LayerStore
from methods.bounded import BoundedConfig, BoundedMethod
from methods.roles import TOY_ROLE_MAP, existing_role_map, load_role_map, role_map_stat


@dataclass
class TwoTierConfig(BoundedConfig):
    name: str = "two_tier"
    role_map: str = TOY_ROLE_MAP
    critical_fraction: float = 0.25
    small_sink_frames: int = 1
    small_recent_frames: int = 3
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.critical_fraction <= 1, "method.critical_fraction", self.critical_fraction,
                "allowed: 0..1")

    def scores(self, geometry: Geometry) -> np.ndarray:
        """[L, H] criticality: the profiled attention mass beyond the last ``local_frames``."""
        file = existing_role_map(self.role_map)
        score = 1 - role_map_stat(load_role_map(file), "local_mass", self.role_map)
        if score.shape != (geometry.layers, geometry.heads):
            raise ConfigError(f"method.role_map={self.role_map!r} has {score.shape} heads; the model has "
                              f"{(geometry.layers, geometry.heads)}")
        return score

    def long_window(self, geometry: Geometry, n_critical: int, capped: bool = True) -> int:
        heads = geometry.layers * geometry.heads
        small = self.small_sink_frames + self.small_recent_frames
        window = (self.frames(geometry) * heads - (heads - n_critical) * small) // max(n_critical, 1)
        if window < 0:
            raise ConfigError(f"method.budget_frames={self.budget_frames}: too small for the small caches")
        if capped and self.positions == "repacked":
            window = min(window, geometry.horizon_frames - geometry.frames_per_chunk)
        return window

    def layout(self, geometry: Geometry) -> tuple[np.ndarray, int]:
        """([L, H] bool critical heads, long window in frames): at least ``critical_fraction``
        of the heads, more while the horizon caps the long window below what the budget pays for."""
        score = self.scores(geometry)
        n = int(round(self.critical_fraction * score.size))
        if n:
            while n < score.size and self.long_window(geometry, n, capped=False) > self.long_window(geometry, n):
                n += 1
        chosen = np.zeros(score.size, bool)
        chosen[np.argsort(-score.flatten(), kind="stable")[:n]] = True
        return chosen.reshape(score.shape), self.long_window(geometry, n)

    def check(self, geometry: Geometry, max_frames: int) -> None:
        if self.positions == "absolute":
            super().check(geometry, max_frames)
        self.layout(geometry)


@METHODS.register("two_tier", config=TwoTierConfig)
class TwoTier(BoundedMethod):
    config: TwoTierConfig

    def reset(self) -> None:
        super().reset()
        self.is_critical, self.window = self.config.layout(self.geometry)

    def evict(self, layer: int, store: LayerStore) -> None:
        c, now = self.config, self.frames_written
        critical = torch.from_numpy(self.is_critical[layer][store.head.cpu().numpy()])
        sink = ~critical & (store.frame < c.small_sink_frames)
        store.kind[sink] = KIND_SINK
        keep = critical & (store.frame >= now - self.window)
        keep |= ~critical & (sink | (store.frame >= now - c.small_recent_frames))
        store.keep(keep)
