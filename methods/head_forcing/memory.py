"""Hierarchical episodic memory of the memory heads, as tensor operations over all of them.

Frames evicted from a memory head's recent window are compressed into its current
*episode*: one entry per spatial position, the weighted mean of the keys and values of
every frame merged into it, with a weight that counts the raw entries it stands for
(attention gives it log(weight) extra logit, so it receives the mass its frames would). An
episode closes when an incoming frame's mean key differs from the episode's by more than
``threshold`` (cosine distance) or when it holds ``max_frames`` frames. When more than
``capacity`` episodes exist, the most similar adjacent pair merges (the hierarchy), so
memory stays bounded at any duration while total weight is preserved.

Every memory head of every layer runs the same steps at the same time (the same frames
leave every memory window), so one ``EpisodeTable`` holds them all, M heads in slots:

    k, v    [M, S, B, P, D]  episode keys / values (S = capacity + 1 slots, P tokens a frame)
    mean    [M, S, B * D]    each episode's weighted mean key (what episodes are compared by)
    weight  [M, S, P]        raw entries each episode entry stands for
    first   [M, S] int64     first frame of each episode (its place in time order)
    frames  [M, S] int64     frames merged into each episode
    count   [M] int64        slots in use (episodes of the head, oldest first)
    open    [M] bool         whether the head's newest episode still takes frames

Only the newest episode of a head can be open (new episodes are appended, merges join
neighbours), so one flag per head suffices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def summary(k: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean key over positions, flattened: k [..., B, P, D], weight [..., P] -> [..., B * D]."""
    w = weight[..., None, :, None]
    return ((k.float() * w).sum(-2) / w.sum(-2)).flatten(-2)


def weighted_mean(a: torch.Tensor, wa: torch.Tensor, b: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Per-position weighted mean of two episodes' tensors [..., B, P, D] with weights [..., P],
    computed in float32 and returned in a's dtype."""
    wa, wb = wa[..., None, :, None], wb[..., None, :, None]
    return ((a.float() * wa + b.float() * wb) / (wa + wb)).to(a.dtype)


@dataclass(frozen=True)
class EpisodicMemory:
    """The episode rule: at most ``capacity`` episodes a head, a cosine-distance ``threshold``
    that closes an episode, at most ``max_frames`` frames in one."""

    capacity: int
    threshold: float = 0.25
    max_frames: int = 12


class EpisodeTable:
    """The episodes of M memory heads (shapes in the module docstring; keys and values are kept
    side by side, ``kv`` [M, S, B, P, 2 D], and each slot's mean key, ``mean`` [M, S, B * D], is
    kept up to date so that comparing episodes recomputes nothing)."""

    def __init__(self, rule: EpisodicMemory, heads: int, batch: int, tokens: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu") -> None:
        self.rule = rule
        S = max(rule.capacity, 0) + 1
        self.dim = head_dim
        self.kv = torch.zeros(heads, S, batch, tokens, 2 * head_dim, dtype=dtype, device=device)
        self.weight = torch.ones(heads, S, tokens, device=device)
        self.mean = torch.zeros(heads, S, batch * head_dim, device=device)
        self.first = torch.zeros(heads, S, dtype=torch.long, device=device)
        self.frames = torch.zeros(heads, S, dtype=torch.long, device=device)
        self.count = torch.zeros(heads, dtype=torch.long, device=device)
        self.open = torch.zeros(heads, dtype=torch.bool, device=device)
        self._rows = torch.arange(heads, device=device)

    @property
    def k(self) -> torch.Tensor:
        return self.kv[..., :self.dim]

    @property
    def v(self) -> torch.Tensor:
        return self.kv[..., self.dim:]

    def add_frame(self, frame: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Compress one evicted frame of every head (k, v [M, B, P, D], positions in spatial
        order) into the heads' newest episodes or new ones, then keep within capacity."""
        if self.rule.capacity <= 0:
            return
        rows, last = self._rows, (self.count - 1).clamp(min=0)
        ones = torch.ones_like(self.weight[:, 0])
        similar = F.cosine_similarity(self.mean[rows, last], summary(k, ones), dim=-1)
        join = ((self.count > 0) & self.open & (self.frames[rows, last] < self.rule.max_frames)
                & (1 - similar.double() <= self.rule.threshold))
        slot = torch.where(join, last, self.count)
        w_last = self.weight[rows, last]
        new = torch.cat((k, v), dim=-1)
        kv = torch.where(join[:, None, None, None], weighted_mean(self.kv[rows, last], w_last, new, ones), new)
        weight = torch.where(join[:, None], w_last + ones, ones)
        self.kv[rows, slot], self.weight[rows, slot] = kv, weight
        self.mean[rows, slot] = summary(kv[..., :self.dim], weight)
        self.frames[rows, slot] = torch.where(join, self.frames[rows, last] + 1, 1)
        self.first[rows, slot] = torch.where(join, self.first[rows, last], frame)
        self.count += (~join).long()
        self.open[:] = True  # a joined episode stays open; a new one opens (and closes the one before)
        while bool((self.count > self.rule.capacity).any()):
            self._merge_closest_pair(self.count > self.rule.capacity)

    def _merge_closest_pair(self, over: torch.Tensor) -> None:
        """For the heads where ``over`` [M] is True: merge the most similar adjacent pair of
        episodes (the first on ties) into its older slot and shift the newer slots down."""
        S = self.kv.shape[1]
        similar = F.cosine_similarity(self.mean[:, :-1], self.mean[:, 1:], dim=-1)  # [M, S - 1]
        pairs = torch.arange(S - 1, device=similar.device)
        similar = similar.masked_fill(pairs[None, :] + 1 >= self.count[:, None], float("-inf"))
        rows, i = self._rows, similar.argmax(dim=1)  # [M]
        j = i + 1
        w_i, w_j = self.weight[rows, i], self.weight[rows, j]
        kv = weighted_mean(self.kv[rows, i], w_i, self.kv[rows, j], w_j)
        merged = {"kv": kv, "weight": w_i + w_j, "frames": self.frames[rows, i] + self.frames[rows, j],
                  "mean": summary(kv[..., :self.dim], w_i + w_j)}
        for name, value in merged.items():
            table = getattr(self, name)
            table[rows, i] = torch.where(over.view(-1, *([1] * (value.dim() - 1))), value, table[rows, i])
        slots = torch.arange(S, device=i.device)[None, :]
        source = torch.where(over[:, None] & (slots > i[:, None]), (slots + 1).clamp(max=S - 1), slots)  # [M, S]
        for name in ("kv", "weight", "frames", "first", "mean"):
            table = getattr(self, name)
            index = source.view(*source.shape, *([1] * (table.dim() - 2))).expand_as(table)
            setattr(self, name, table.gather(1, index))
        self.count -= over.long()

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every episode entry, head after head, episodes oldest first, positions in spatial order:
        (k, v [B, n, D], weight [n], first frame [n], spatial index [n], head index in 0..M-1 [n])."""
        M, S, B, P, D2 = self.kv.shape
        used = torch.arange(S, device=self.count.device)[None, :] < self.count[:, None]  # [M, S]
        kv = self.kv[used].permute(1, 0, 2, 3).reshape(B, -1, D2)
        n = int(used.sum())
        spatial = torch.arange(P, device=kv.device).repeat(n)
        head = self._rows[:, None].expand(M, S)[used].repeat_interleave(P)
        return (kv[..., :self.dim], kv[..., self.dim:], self.weight[used].flatten(),
                self.first[used].repeat_interleave(P), spatial, head)
