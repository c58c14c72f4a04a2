"""Hierarchical episodic memory of a memory head.

Frames evicted from the head's recent window are compressed into the current *episode*:
one entry per spatial position, the weighted mean of the keys and values of every frame
merged into it, with a weight that counts the raw entries it stands for (attention gives
it log(weight) extra logit, so it receives the mass its frames would). An episode
closes when an incoming frame's mean key differs from the episode's by more than
``threshold`` (cosine distance) or when it holds ``max_frames`` frames. When more than
``capacity`` episodes exist, the most similar adjacent pair merges (the hierarchy), so
memory stays bounded at any duration while total weight is preserved.

Tensors: k, v [B, P, D] (P = tokens per frame, ordered by spatial index); weight [P].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Episode:
    first_frame: int  # identifies the episode; also its place in time order
    k: torch.Tensor
    v: torch.Tensor
    weight: torch.Tensor
    frames: int = 1
    open: bool = True

    def summary(self) -> torch.Tensor:
        """Weighted mean key over positions, flattened: [B * D]."""
        w = self.weight[None, :, None]
        return ((self.k.float() * w).sum(1) / w.sum(1)).flatten()


def merge(a: Episode, b: Episode) -> Episode:
    """Weighted means of keys and values per spatial position; weights add."""
    wa, wb = a.weight[None, :, None], b.weight[None, :, None]
    total = wa + wb
    k = (a.k.float() * wa + b.k.float() * wb) / total
    v = (a.v.float() * wa + b.v.float() * wb) / total
    return Episode(min(a.first_frame, b.first_frame), k.to(a.k.dtype), v.to(a.v.dtype), a.weight + b.weight,
                   a.frames + b.frames, a.open or b.open)


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


@dataclass
class EpisodicMemory:
    capacity: int
    threshold: float = 0.25
    max_frames: int = 12

    def add_frame(self, episodes: list[Episode], frame: int, k: torch.Tensor, v: torch.Tensor) -> list[Episode]:
        """Compress one evicted frame (k, v [B, P, D]) into ``episodes``; returns the new list."""
        new = Episode(frame, k, v, torch.ones(k.shape[1], device=k.device))
        current = episodes[-1] if episodes else None
        if (current is not None and current.open and current.frames < self.max_frames
                and 1 - similarity(current.summary(), new.summary()) <= self.threshold):
            episodes = [*episodes[:-1], merge(current, new)]
        else:
            if current is not None:
                current.open = False
            episodes = [*episodes, new]
        return self.bound(episodes)

    def bound(self, episodes: list[Episode]) -> list[Episode]:
        """Merge the most similar adjacent episodes until at most ``capacity`` remain."""
        if self.capacity <= 0:
            return []
        while len(episodes) > self.capacity:
            sims = [similarity(a.summary(), b.summary()) for a, b in zip(episodes, episodes[1:])]
            i = max(range(len(sims)), key=sims.__getitem__)
            episodes = [*episodes[:i], merge(episodes[i], episodes[i + 1]), *episodes[i + 2:]]
        return episodes
