"""Negative control: the sliding window's frames at scrambled temporal positions.

Broken: the cache holds exactly what ``sliding_window`` holds (the last W frames), but at
every chunk each head's kept frames get a random permutation of their repacked positions
0..n_h-1, so the model sees the right content in the wrong temporal order; the chunk's
queries sit right after them (n_h..n_h+F-1), as ``repacked_positions`` places them.

Why a useful control: same frames and the same KV bytes as ``sliding_window`` at the same
budget; only the positions are wrong. A primary score that does not drop here does not see
whether the model uses the order of its context.

Deterministic: the permutation of head h in layer l at a chunk comes from a torch.Generator
seeded by (``seed``, chunk_start, layer), the same for every denoising step of the chunk.
Shapes: pos [N] is a per-head permutation of the repacked positions; q_pos [H, F].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import require
from methods.base import METHODS, LayerStore
from methods.bounded import BoundedConfig, repacked_positions
from methods.controls._seeding import seeded_generator
from methods.sliding_window import SlidingWindow


@dataclass
class ScrambledPositionsConfig(BoundedConfig):
    name: str = "control_scrambled_positions"
    positions: str = "repacked"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seed >= 0, "method.seed", self.seed, "allowed: >= 0")
        require(self.positions == "repacked", "method.positions", self.positions,
                "control_scrambled_positions permutes repacked positions; allowed: repacked")


def scramble(store: LayerStore, frames_per_chunk: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Repacked positions with each head's frame ranks permuted: (pos [N], q_pos [H, F])."""
    pos, q_pos = repacked_positions(store, frames_per_chunk)
    kept = q_pos[:, 0].cpu()  # [H] frames each head holds
    perms = torch.cat([torch.randperm(int(n), generator=gen) for n in kept]).to(pos.device)  # [sum_h n_h]
    first = (kept.cumsum(0) - kept).to(pos.device)  # [H] where head h's permutation starts
    return perms[first[store.head] + pos], q_pos


@METHODS.register("control_scrambled_positions", config=ScrambledPositionsConfig)
class ScrambledPositions(SlidingWindow):
    """``SlidingWindow.evict`` (the last W frames), scrambled positions."""

    config: ScrambledPositionsConfig

    def positions(self, layer, store, chunk_start):
        gen = seeded_generator(self.config.seed, chunk_start, layer)
        return scramble(store, self.geometry.frames_per_chunk, gen)
