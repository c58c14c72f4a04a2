"""PyTorch reference of head-ragged attention with temporal RoPE at assigned positions.

This function *defines* the semantics every other attention implementation must match:

    for each head h:
        keys   = [rot_t(cache.k[h entries], cache.pos[h entries]) ; rot_t(k_self[h], q_pos[h])]
        values = [cache.v[h entries] ; v_self[h]]
        out[h] = softmax(rot_t(q[h], q_pos[h]) @ keys^T * scale) @ values

The current chunk attends to itself bidirectionally (block-causal attention), and to
every cached entry of its head. Logits, softmax and the weighted sum run in float32
(float64 for float64 inputs); the output has q's dtype.
"""

from __future__ import annotations

import torch

from kernels.rope import Rope3D
from kernels.view import RaggedKV


def ragged_attention_reference(
    q: torch.Tensor,
    k_self: torch.Tensor,
    v_self: torch.Tensor,
    q_pos: torch.Tensor,
    cache: RaggedKV,
    rope: Rope3D,
    scale: float | None = None,
    return_mass: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of a chunk over its own tokens and each head's ragged cache.

    q, k_self, v_self: [B, H, Nq, D] (spatially rotated, not temporally).
    q_pos: [H, Nq] int64 temporal position of every query token (and of the chunk's keys).
    cache: the layer's packed cache (see RaggedKV); cache.k / cache.v are [B, N, D].
    Returns (out [B, H, Nq, D], mass [N] float32 or None): ``mass`` is the attention
    probability each cache entry received, summed over batch and queries.
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
        if cache.bias is not None:
            logits[..., :n] += cache.bias.view(H, n)[None, :, None, :].to(work)
        probs = torch.softmax(logits, dim=-1)
        mass = probs[..., :n].sum(dim=(0, 2)).flatten().float() if return_mass else None
        return (probs @ values).to(q.dtype), mass
    out = torch.empty_like(q)
    mass = torch.zeros(cache.k.shape[1], dtype=torch.float32, device=q.device) if return_mass else None
    for h in range(H):
        sl = cache.head_slice(h)
        keys = torch.cat((cache_k[:, sl], k_self_rot[:, h]), dim=1)  # [B, n_h + Nq, D]
        values = torch.cat((cache_v[:, sl], v_self[:, h].to(work)), dim=1)
        logits = q_rot[:, h] @ keys.transpose(1, 2) * scale  # [B, Nq, n_h + Nq]
        if cache.bias is not None:
            n_h = sl.stop - sl.start
            logits[..., :n_h] += cache.bias[sl].to(work)
        probs = torch.softmax(logits, dim=-1)
        out[:, h] = (probs @ values).to(q.dtype)
        if mass is not None:
            n_h = sl.stop - sl.start
            mass[sl] = probs[..., :n_h].sum(dim=(0, 1)).float()
    return out, mass
