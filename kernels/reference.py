"""PyTorch reference of head-ragged attention with temporal RoPE at assigned positions.

This function *defines* the semantics every other attention implementation must match:

    for each head h:
        keys   = [rot_t(cache.k[h entries], cache.pos[h entries]) ; rot_t(k_self[h], q_pos[h])]
        values = [cache.v[h entries] ; v_self[h]]
        out[h] = softmax(rot_t(q[h], q_pos[h]) @ keys^T * scale) @ values

The current chunk attends to itself bidirectionally (block-causal attention), and to
every cached entry of its head. Logits, softmax and the weighted sum run in float32
(float64 for float64 inputs); the output has q's dtype.

On request the call also reports, per cache entry, what the softmax saw of it: the
attention mass it received (``return_mass``) and statistics of its pre-softmax logits
(``return_logits``, a ``LogitStats``; head classifiers such as Pyramid Forcing's read them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.rope import Rope3D
from kernels.view import RaggedKV


@dataclass
class LogitStats:
    """Pre-softmax logits of the cache entries in one attention call, per query frame.

    A logit here is ``scale * rot_t(q, q_pos) . rot_t(k, pos)``: queries and keys rotated
    temporally at their assigned positions, scaled, *without* the entry's bias (log w of a
    merged entry), the value the softmax would see for an unmerged key. The query rows are
    the chunk's frames: ``G = cache.q_pos.shape[1]`` groups of ``Nq / G`` consecutive rows.

    logit_sum: [G, N] float32, the sum of the logits entry n received from the query rows
    of frame g, over the batch; positive: [G, N] int32, how many of those logits are > 0.
    Each (g, n) counts ``B * Nq / G`` logits, so ``logit_sum / (B * Nq / G)`` is a mean logit.
    """

    logit_sum: torch.Tensor
    positive: torch.Tensor


def query_groups(cache: RaggedKV, nq: int) -> int:
    """G: the query frames of the chunk (``cache.q_pos.shape[1]``), each ``nq / G`` rows."""
    groups = cache.q_pos.shape[-1] if cache.q_pos.dim() == 2 else 1
    if groups < 1 or nq % groups:
        raise ValueError(f"logit statistics: {nq} query rows do not split into the chunk's {groups} frames")
    return groups


def _logit_stats(logits: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, Nq, n] logits of one head's cache entries -> (sum [G, n] float32, positive [G, n] int32)."""
    B, nq, n = logits.shape
    grouped = logits.reshape(B, groups, nq // groups, n)
    return grouped.sum(dim=(0, 2)).float(), (grouped > 0).sum(dim=(0, 2)).to(torch.int32)


def ragged_attention_reference(
    q: torch.Tensor,
    k_self: torch.Tensor,
    v_self: torch.Tensor,
    q_pos: torch.Tensor,
    cache: RaggedKV,
    rope: Rope3D,
    scale: float | None = None,
    return_mass: bool = False,
    return_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, LogitStats]:
    """Attention of a chunk over its own tokens and each head's ragged cache.

    q, k_self, v_self: [B, H, Nq, D] (spatially rotated, not temporally).
    q_pos: [H, Nq] int64 temporal position of every query token (and of the chunk's keys).
    cache: the layer's packed cache (see RaggedKV); cache.k / cache.v are [B, N, D].
    Returns (out [B, H, Nq, D], mass [N] float32 or None): ``mass`` is the attention
    probability each cache entry received, summed over batch and queries. With
    ``return_logits`` a third element, the entries' ``LogitStats`` ([G, N] each).
    """
    B, H, Nq, D = q.shape
    if cache.heads != H:
        raise ValueError(f"cache has {cache.heads} heads, queries have {H}")
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = D**-0.5 if scale is None else scale
    q_rot = rope.rotate_temporal(q.to(work), q_pos.unsqueeze(0))
    k_self_rot = rope.rotate_temporal(k_self.to(work), q_pos.unsqueeze(0))
    cache_k = rope.rotate_temporal(cache.k.to(work), cache.pos.unsqueeze(0))
    cache_v = cache.v.to(work)
    lengths = cache.lengths()
    if bool((lengths == lengths[0]).all()):  # equal lengths: the same computation, batched over heads
        n = int(lengths[0])
        keys = torch.cat((cache_k.view(B, H, n, D), k_self_rot), dim=2)  # [B, H, n + Nq, D]
        values = torch.cat((cache_v.view(B, H, n, D), v_self.to(work)), dim=2)
        logits = q_rot @ keys.transpose(-1, -2) * scale  # [B, H, Nq, n + Nq]
        if return_logits:  # before the bias is added
            groups = query_groups(cache, Nq)
            per_head = [_logit_stats(logits[:, h, :, :n], groups) for h in range(H)]
            stats = LogitStats(torch.cat([s for s, _ in per_head], dim=1), torch.cat([p for _, p in per_head], dim=1))
        if cache.bias is not None:
            logits[..., :n] += cache.bias.view(H, n)[None, :, None, :].to(work)
        probs = torch.softmax(logits, dim=-1)
        mass = probs[..., :n].sum(dim=(0, 2)).flatten().float() if return_mass else None
        if return_logits:
            return (probs @ values).to(q.dtype), mass, stats
        return (probs @ values).to(q.dtype), mass
    out = torch.empty_like(q)
    mass = torch.zeros(cache.k.shape[1], dtype=torch.float32, device=q.device) if return_mass else None
    if return_logits:
        groups = query_groups(cache, Nq)
        stats = LogitStats(torch.zeros(groups, cache.k.shape[1], dtype=torch.float32, device=q.device),
                           torch.zeros(groups, cache.k.shape[1], dtype=torch.int32, device=q.device))
    for h in range(H):
        sl = cache.head_slice(h)
        keys = torch.cat((cache_k[:, sl], k_self_rot[:, h]), dim=1)  # [B, n_h + Nq, D]
        values = torch.cat((cache_v[:, sl], v_self[:, h].to(work)), dim=1)
        logits = q_rot[:, h] @ keys.transpose(1, 2) * scale  # [B, Nq, n_h + Nq]
        if return_logits:
            stats.logit_sum[:, sl], stats.positive[:, sl] = _logit_stats(logits[..., : sl.stop - sl.start], groups)
        if cache.bias is not None:
            n_h = sl.stop - sl.start
            logits[..., :n_h] += cache.bias[sl].to(work)
        probs = torch.softmax(logits, dim=-1)
        out[:, h] = (probs @ values).to(q.dtype)
        if mass is not None:
            n_h = sl.stop - sl.start
            mass[sl] = probs[..., :n_h].sum(dim=(0, 1)).float()
    if return_logits:
        return out, mass, stats
    return out, mass
