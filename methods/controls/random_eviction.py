"""Negative control: keep a uniformly random subset of the past frames, at true positions.

Broken: what stays in the cache has nothing to do with what the next chunk needs. After
every write the cache holds W = ``frames(geometry)`` frames drawn uniformly at random from
*every* frame written so far (reservoir sampling, Algorithm R, so only W + one chunk are
ever stored): at 60 s the previous chunk is in the cache with probability W / 240 only.
Every layer and head keeps the same frames; positions are the frames' true (absolute)
indices, as ``sliding_window`` with ``positions=absolute``.

Why a useful control: same KV bytes as ``sliding_window`` at the same budget and the same
positions, only the choice of frames differs. A primary score that cannot tell this from a
sound method does not measure whether the cache kept what the video needs.

Deterministic: the draws after a write come from a torch.Generator seeded by (``seed``,
frames written so far). Shapes: each head of each layer keeps W * tokens_per_frame entries
once W frames are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import require
from methods.base import METHODS, CacheMethod, LayerStore
from methods.bounded import BoundedConfig
from methods.controls._seeding import seeded_generator


@dataclass
class RandomEvictionConfig(BoundedConfig):
    name: str = "control_random_eviction"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seed >= 0, "method.seed", self.seed, "allowed: >= 0")
        require(self.positions == "absolute", "method.positions", self.positions,
                "control_random_eviction keeps true positions; allowed: absolute")


def reservoir_update(kept: list[int], new: range, size: int, gen: torch.Generator) -> list[int]:
    """Algorithm R: ``kept`` is a uniform random ``size``-subset of the frames before
    ``new``; returns a uniform random ``size``-subset of those frames and ``new`` (sorted)."""
    kept = list(kept)
    for frame in new:  # frame + 1 frames seen so far
        if len(kept) < size:
            kept.append(frame)
            continue
        slot = int(torch.randint(frame + 1, (1,), generator=gen))
        if slot < size:
            kept[slot] = frame
    return sorted(kept)


@METHODS.register("control_random_eviction", config=RandomEvictionConfig)
class RandomEviction(CacheMethod):
    config: RandomEvictionConfig

    def reset(self) -> None:
        super().reset()
        self.kept: list[int] = []  # the frames every head of every layer holds

    def write(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        F = self.geometry.frames_per_chunk
        gen = seeded_generator(self.config.seed, chunk_start + F)
        self.kept = reservoir_update(self.kept, range(chunk_start, chunk_start + F),
                                     self.config.frames(self.geometry), gen)
        super().write(kv, chunk_start)

    def evict(self, layer: int, store: LayerStore) -> None:
        store.keep(torch.isin(store.frame, torch.tensor(self.kept, dtype=torch.long, device=store.frame.device)))
