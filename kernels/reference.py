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
    groups = query_groups(cache, Nq) if return_logits else 1
    heads = cache.derived(("reference", rope, work), lambda: head_groups(cache, rope, work))
    out = None if heads[0].heads is None else torch.empty_like(q)  # one group of all heads: its result
    N = cache.k.shape[1]
    mass = torch.zeros(N, dtype=torch.float32, device=q.device) if return_mass else None
    stats = LogitStats(torch.zeros(groups, N, dtype=torch.float32, device=q.device),
                       torch.zeros(groups, N, dtype=torch.int32, device=q.device)) if return_logits else None
    for group in heads:
        n, index, G = group.length, group.index, group.k.shape[1]
        if group.heads is None:
            q_g, k_g, v_g = q_rot, k_self_rot, v_self
        else:
            q_g, k_g, v_g = (x.index_select(1, group.heads) for x in (q_rot, k_self_rot, v_self))
        keys = torch.cat((group.k, k_g), dim=2)  # [B, G, n + Nq, D]
        values = torch.cat((group.v, v_g.to(work)), dim=2)
        logits = q_g @ keys.transpose(-1, -2) * scale  # [B, G, Nq, n + Nq]
        if stats is not None:  # before the bias is added
            for g in range(G):
                part = index[g * n:(g + 1) * n]
                stats.logit_sum[:, part], stats.positive[:, part] = _logit_stats(logits[:, g, :, :n], groups)
        if group.bias is not None:
            logits[..., :n] += group.bias
        probs = torch.softmax(logits, dim=-1)
        if group.heads is None:
            out = (probs @ values).to(q.dtype)
        else:
            out.index_copy_(1, group.heads, (probs @ values).to(q.dtype))
        if mass is not None:
            mass[index] = probs[..., :n].sum(dim=(0, 2)).flatten().float()
    if return_logits:
        return out, mass, stats
    return out, mass


@dataclass
class HeadGroup:
    """Heads of one layer whose caches hold equally many entries, attended to as one batch.

    length: n; heads: their indices [G] (None for all heads); index: [G * n] their entries in
    the packed cache; k: [B, G, n, D] keys rotated to their positions; v: [B, G, n, D];
    bias: [1, G, 1, n] logit bias or None. In the attention's working dtype.
    """

    length: int
    heads: torch.Tensor | None
    index: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    bias: torch.Tensor | None


def head_groups(cache: RaggedKV, rope: Rope3D, work: torch.dtype) -> list[HeadGroup]:
    """The cache's heads grouped by length (one group when every head holds as many entries, as
    in a window), keys rotated temporally: what every attention call over this view shares."""
    B, N, D = cache.k.shape
    H = cache.heads
    cache_k = rope.rotate_temporal(cache.k.to(work), cache.pos.unsqueeze(0))
    cache_v = cache.v.to(work)
    lengths = cache.lengths().tolist()
    out = []
    for n in sorted(set(lengths)):
        heads = [h for h, length in enumerate(lengths) if length == n]
        G = len(heads)
        if G == H:  # packed heads of equal length are already [B, H, n, D]
            sel, index = None, torch.arange(N, device=cache.k.device)
            k, v = cache_k.view(B, H, n, D), cache_v.view(B, H, n, D)
        else:
            sel = torch.tensor(heads, device=cache.k.device)
            index = torch.cat([torch.arange(int(cache.offsets[h]), int(cache.offsets[h]) + n) for h in heads])
            index = index.to(cache.k.device)
            k, v = cache_k[:, index].view(B, G, n, D), cache_v[:, index].view(B, G, n, D)
        bias = None if cache.bias is None else cache.bias[index].view(G, n)[None, :, None, :].to(work)
        out.append(HeadGroup(n, sel, index, k, v, bias))
    return out
