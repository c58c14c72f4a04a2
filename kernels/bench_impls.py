"""The attention implementations the kernel benchmark compares, on one ``Case``.

Each is built once per case (buffers, block masks: what a method would build once per
chunk and reuse over layers) and then called repeatedly; a call returns out [B, H, Nq, D].

- ``triton``: kernels/triton_attention.py (the cache is read in place; RoPE fused).
- ``reference``: kernels/reference.py, the float32 PyTorch definition.
- ``sdpa_padded``: every head's cache padded to the longest head ([B, H, Lmax + Nq, D]);
  a call rotates the cache keys into that buffer and runs one SDPA with an additive mask.
- ``sdpa_per_head``: a loop over heads, one SDPA each on [cache of the head ; chunk].
- ``flex``: FlexAttention over the packed layout, all heads as one sequence with a
  document mask (query of head h sees keys of head h), so no padding; the rotated cache
  keys and the chunk's own keys are concatenated per call. Compiled on CUDA; on a CPU the
  eager (unfused) implementation.
The three PyTorch comparators rotate with the same float32 cos/sin table as the kernel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from kernels.reference import ragged_attention_reference
from kernels.rope import Rope3D, rotate_pairs_by, rotation_table
from kernels.view import RaggedKV


@dataclass
class Case:
    """Inputs of one attention call: q, k_self, v_self [B, H, Nq, D]; q_pos [H, Nq]; a cache."""

    q: torch.Tensor
    k_self: torch.Tensor
    v_self: torch.Tensor
    q_pos: torch.Tensor
    cache: RaggedKV
    rope: Rope3D

    @property
    def scale(self) -> float:
        return self.q.shape[-1] ** -0.5


def rotate(x: torch.Tensor, pos: torch.Tensor, rope: Rope3D) -> torch.Tensor:
    """Temporal RoPE of x [..., N, D] at pos [N] (or broadcastable) with the float32 table."""
    cos, sin = rotation_table(rope, x.device)
    t = rope.split[0]
    return torch.cat((rotate_pairs_by(x[..., :t], cos[pos], sin[pos]), x[..., t:]), dim=-1)


def head_of_entry(cache: RaggedKV) -> torch.Tensor:
    """[N] int64: the head that owns each packed entry."""
    return torch.repeat_interleave(torch.arange(cache.heads), cache.lengths()).to(cache.k.device)


def reference(case: Case) -> Callable[[], torch.Tensor]:
    return lambda: ragged_attention_reference(case.q, case.k_self, case.v_self, case.q_pos, case.cache, case.rope)[0]


def triton_kernel(case: Case) -> Callable[[], torch.Tensor]:
    # imported on first use, as kernels.attention does: TRITON_INTERPRET is read when Triton is imported
    from kernels.triton_attention import ragged_attention_triton

    out = torch.empty_like(case.q)
    return lambda: ragged_attention_triton(case.q, case.k_self, case.v_self, case.q_pos, case.cache, case.rope,
                                           out=out)[0]


def sdpa_padded(case: Case) -> Callable[[], torch.Tensor]:
    c, (B, H, Nq, D) = case.cache, case.q.shape
    lengths = c.lengths().to(c.k.device)
    L = int(lengths.max()) if H else 0
    slot = torch.arange(c.k.shape[1], device=c.k.device) - c.offsets.to(c.k.device)[head_of_entry(c)]
    index = head_of_entry(c) * (L + Nq) + slot  # where each packed entry lives in [H * (L + Nq)]
    keys = torch.zeros(B, H, L + Nq, D, dtype=case.q.dtype, device=c.k.device)
    values = torch.zeros_like(keys)
    values.view(B, H * (L + Nq), D)[:, index] = c.v.to(keys.dtype)
    mask = torch.full((H, L + Nq), float("-inf"), device=c.k.device)
    mask.view(-1)[index] = 0.0 if c.bias is None else c.bias.to(mask.device)
    mask[:, L:] = 0.0
    mask = mask.to(case.q.dtype)[None, :, None, :]

    def call() -> torch.Tensor:
        q = rotate(case.q, case.q_pos[None, :, :], case.rope)
        keys.view(B, H * (L + Nq), D)[:, index] = rotate(c.k, c.pos, case.rope).to(keys.dtype)
        keys[:, :, L:] = rotate(case.k_self, case.q_pos[None, :, :], case.rope)
        values[:, :, L:] = case.v_self
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=case.scale)

    return call


def sdpa_per_head(case: Case) -> Callable[[], torch.Tensor]:
    c = case.cache
    slices = [c.head_slice(h) for h in range(c.heads)]
    masks = [None if c.bias is None else torch.cat((c.bias[sl], torch.zeros(case.q.shape[2], device=c.bias.device)))
             .to(case.q.dtype)[None, None, None, :] for sl in slices]

    def call() -> torch.Tensor:
        q = rotate(case.q, case.q_pos[None, :, :], case.rope)
        ks = rotate(case.k_self, case.q_pos[None, :, :], case.rope)
        out = torch.empty_like(case.q)
        for h, sl in enumerate(slices):
            keys = torch.cat((rotate(c.k[:, sl], c.pos[sl], case.rope), ks[:, h]), dim=1)
            values = torch.cat((c.v[:, sl], case.v_self[:, h]), dim=1)
            out[:, h] = F.scaled_dot_product_attention(q[:, h:h + 1], keys[:, None], values[:, None],
                                                       attn_mask=masks[h], scale=case.scale)[:, 0]
        return out

    return call


def flex(case: Case) -> Callable[[], torch.Tensor]:
    c, (B, H, Nq, D) = case.cache, case.q.shape
    device = case.q.device
    q_doc = torch.arange(H, device=device).repeat_interleave(Nq)
    kv_doc = torch.cat((head_of_entry(c), q_doc))
    # compiled on CUDA so that the [H*Nq, N] boolean mask (17 GB at Wan shapes) is never materialised
    build_mask = torch.compile(create_block_mask) if device.type == "cuda" else create_block_mask
    block_mask = build_mask(lambda b, h, qi, ki: q_doc[qi] == kv_doc[ki], None, None, H * Nq, kv_doc.numel(),
                            device=device)
    score_mod = None
    if c.bias is not None:
        bias = torch.cat((c.bias.to(device), torch.zeros(H * Nq, device=device)))
        score_mod = lambda score, b, h, qi, ki: score + bias[ki]  # noqa: E731
    attend = torch.compile(flex_attention, dynamic=False) if device.type == "cuda" else flex_attention

    def call() -> torch.Tensor:
        q = rotate(case.q, case.q_pos[None, :, :], case.rope).reshape(B, 1, H * Nq, D)
        ks = rotate(case.k_self, case.q_pos[None, :, :], case.rope).reshape(B, H * Nq, D)
        keys = torch.cat((rotate(c.k, c.pos, case.rope), ks), dim=1)[:, None]
        values = torch.cat((c.v, case.v_self.reshape(B, H * Nq, D)), dim=1)[:, None]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*without torch.compile.*")
            out = attend(q, keys, values, block_mask=block_mask, score_mod=score_mod, scale=case.scale)
        return out.view(B, H, Nq, D)

    return call


IMPLEMENTATIONS: dict[str, Callable[[Case], Callable[[], torch.Tensor]]] = {
    "triton": triton_kernel,
    "reference": reference,
    "sdpa_padded": sdpa_padded,
    "sdpa_per_head": sdpa_per_head,
    "flex": flex,
}
