"""Shared budget and position options of the bounded (frame-window) methods.

A budget is the number of cached frames per head and layer, not counting the chunk being
generated. It can be given as frames (``budget_frames``) or as a total token count over
all layers and heads (``budget_tokens``, which wins when set), so that methods that keep
different numbers of entries per head can be compared at equal KV bytes.

Positions: ``absolute`` keeps each entry at its source frame (Self Forcing's rolling
cache; breaks at the RoPE table end); ``repacked`` gives each head's kept frames the
positions 0..n-1 in time order and puts the chunk right after them, so positions stay
inside the trained horizon at any duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import ConfigError, require
from core.geometry import Geometry
from methods.base import CacheMethod, LayerStore, MethodConfig

POSITION_MODES = ("absolute", "repacked")


def check_absolute_fits(geometry: Geometry, max_frames: int, method: str) -> None:
    if max_frames > geometry.rope_max_positions:
        raise ConfigError(
            f"durations: {max_frames} frames exceed the RoPE table of {geometry.rope_max_positions} "
            f"positions for method {method!r} with absolute positions; allowed: at most "
            f"{geometry.rope_max_positions / geometry.fps:g} s, or positions=repacked"
        )


@dataclass
class BudgetConfig(MethodConfig):
    """A cache budget, in cached frames per head and layer (``budget_frames``) or as a total
    token count over all layers and heads (``budget_tokens``, wins when set): the one place the
    budget is turned into frames, per head or over all heads."""

    budget_frames: int = 12
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.budget_frames >= 0, "method.budget_frames", self.budget_frames, "allowed: >= 0")
        if self.budget_tokens is not None:
            require(self.budget_tokens >= 0, "method.budget_tokens", self.budget_tokens,
                    "allowed: >= 0 or null")

    def frames(self, geometry: Geometry) -> int:
        """Cached frames per head and layer, from budget_tokens when it is set."""
        if self.budget_tokens is None:
            return self.budget_frames
        return self.budget_tokens // geometry.kv_entries_per_frame

    def total_frames(self, geometry: Geometry) -> int:
        """Cached frames summed over every layer and head (what a per-head allocation splits)."""
        if self.budget_tokens is None:
            return self.budget_frames * geometry.layers * geometry.heads
        return self.budget_tokens // geometry.tokens_per_frame


@dataclass
class BoundedConfig(BudgetConfig):
    """A budget plus where kept frames sit in time (``positions``)."""

    positions: str = "absolute"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions in POSITION_MODES, "method.positions", self.positions,
                f"allowed: {', '.join(POSITION_MODES)}")

    def check(self, geometry: Geometry, max_frames: int) -> None:
        frames = self.frames(geometry)
        if self.positions == "absolute":
            check_absolute_fits(geometry, max_frames, self.name)
        elif frames + geometry.frames_per_chunk > geometry.horizon_frames:
            raise ConfigError(
                f"method.budget_frames={frames}: with positions=repacked the cache plus one chunk "
                f"({geometry.frames_per_chunk} frames) must fit the trained horizon of "
                f"{geometry.horizon_frames} frames; allowed: <= "
                f"{geometry.horizon_frames - geometry.frames_per_chunk}"
            )


def repacked_positions(store: LayerStore, frames_per_chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense per-head positions: a head's kept frames get 0..n_h-1 in time order.

    Returns (pos [N], q_pos [H, F]) with the chunk at n_h..n_h+F-1 for head h.
    """
    H = store.heads
    span = int(store.frame.max()) + 1 if len(store) else 1
    key = store.head * span + store.frame
    uniq, inverse = torch.unique(key, return_inverse=True)
    distinct = torch.bincount(uniq // span, minlength=H)  # [H] frames kept per head
    first = distinct.cumsum(0) - distinct
    pos = inverse - first[store.head]
    q_pos = distinct[:, None] + torch.arange(frames_per_chunk, device=distinct.device)
    return pos, q_pos


class BoundedMethod(CacheMethod):
    """A method configured by a ``BoundedConfig``: its entries sit at their source frames
    (``absolute``) or repacked per head (``repacked``), as ``config.positions`` says."""

    config: BoundedConfig

    def positions(self, layer: int, store: LayerStore, chunk_start: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.positions == "repacked":
            return repacked_positions(store, self.geometry.frames_per_chunk)
        return super().positions(layer, store, chunk_start)
