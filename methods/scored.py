"""Shared machinery of methods that keep entries by the attention they receive.

``ScoredMethod`` asks the kernels for per-entry attention mass on every forward and adds
it to ``LayerStore.score`` (decayed by ``decay`` once per chunk, so that recent queries
weigh more when decay < 1). The helpers pick, per head, the best entries or frames.
"""

from __future__ import annotations

import torch

from methods.base import LayerStore
from methods.bounded import BoundedMethod


class ScoredMethod(BoundedMethod):
    needs_attention_mass = True
    decay: float = 1.0

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        store = self.layers[layer]
        store.score += mass.to(store.score.device)

    def write(self, kv, chunk_start: int) -> None:
        for store in self.layers:
            store.score *= self.decay
        super().write(kv, chunk_start)


def top_entries_per_head(store: LayerStore, candidates: torch.Tensor, count: int) -> torch.Tensor:
    """[N] bool: per head, the ``count`` candidate entries with the highest score."""
    chosen = torch.zeros_like(candidates)
    for h in range(store.heads):
        sl = store.head_slice(h)
        idx = candidates[sl].nonzero().flatten()
        if len(idx) > count:
            idx = idx[store.score[sl][idx].topk(count).indices]
        chosen[sl.start + idx] = True
    return chosen


def top_frames_per_head(store: LayerStore, candidates: torch.Tensor, count: int) -> torch.Tensor:
    """[N] bool: per head, every entry of the ``count`` candidate frames with the most total score."""
    chosen = torch.zeros_like(candidates)
    for h in range(store.heads):
        sl = store.head_slice(h)
        cand = candidates[sl]
        frames = store.frame[sl][cand]
        if len(frames) == 0 or count <= 0:
            continue
        uniq, inverse = torch.unique(frames, return_inverse=True)
        totals = torch.zeros(len(uniq)).index_add_(0, inverse.cpu(), store.score[sl][cand].cpu())
        best = uniq[totals.topk(min(count, len(uniq))).indices.to(uniq.device)]
        chosen[sl] = cand & torch.isin(store.frame[sl], best)
    return chosen
