"""Triton head-ragged attention with the temporal RoPE fused in, and its mass and logit kernels.

Semantics are those of kernels/reference.py. Layout: each head's cache entries are packed
one head after another in ``k, v [B, N, D]`` with per-head ``offsets [H + 1]`` (the
``RaggedKV`` a method builds). Packing, not per-head slot arrays, because a method
rebuilds its view every chunk anyway: packed storage is exactly the bytes the method
keeps, a head of length 0 costs nothing, and one program reads one contiguous run.

One program computes ``BLOCK_M`` queries of one (batch, head): it loads the queries,
rotates their temporal pairs at ``q_pos`` and then streams the head's cache entries and
the chunk's own keys in blocks of ``BLOCK_N``, rotating each key block at its assigned
position on the way in (a gather from a float32 cos/sin table computed in float64), so
re-encoding positions costs no pass over the cache. Online softmax in base 2 with
float32 accumulation; the dot products see the input dtype (IEEE float32 for float32).

Head dims are handled as pairs: ``x[2i]`` and ``x[2i + 1]`` are loaded as two
[rows, P] halves, ``q . k = q_even . k_even + q_odd . k_odd``, and only the first
``t_dim / 2`` pairs are rotated. TRITON_INTERPRET=1 must be set before this module is
imported to run it on a CPU (float32 / float16 only there).

The mass and logit kernels run after the attention kernel, one program per block of
``BLOCK_N`` cache entries of one head, looping over the batch and the query rows: the mass
kernel turns each logit into a probability with the saved log-sum-exp; the logit kernel
sums the raw (natural-base, bias-free) logits and counts the positive ones, per query frame.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.reference import LogitStats, query_groups
from kernels.rope import Rope3D, rotation_table
from kernels.view import RaggedKV

LOG2E = 1.4426950408889634


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _rotated_pairs(ptr, rows, row_stride, row_mask, pos, COS, SIN,
                   T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr):
    """Load rows of pairs and rotate the temporal ones: -> (even, odd), each [R, P] float32."""
    pairs = tl.arange(0, P)
    mask = row_mask[:, None] & (pairs < HALF_D)[None, :]
    ptrs = ptr + rows[:, None].to(tl.int64) * row_stride + 2 * pairs[None, :]
    even = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    odd = tl.load(ptrs + 1, mask=mask, other=0.0).to(tl.float32)
    tmask = row_mask[:, None] & (pairs < T2)[None, :]
    table = pos[:, None] * T2 + pairs[None, :]
    cos = tl.load(COS + table, mask=tmask, other=1.0)
    sin = tl.load(SIN + table, mask=tmask, other=0.0)
    return even * cos - odd * sin, even * sin + odd * cos


@triton.jit
def _logits(qe, qo, K, rows, row_stride, row_mask, KPOS, BIAS, COS, SIN,
            USE_BIAS: tl.constexpr, T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr, IEEE: tl.constexpr):
    """Base-2 logits [BLOCK_M, BLOCK_N] of pre-scaled queries against one key block."""
    kpos = tl.load(KPOS + rows, mask=row_mask, other=0)
    ke, ko = _rotated_pairs(K, rows, row_stride, row_mask, kpos, COS, SIN, T2, HALF_D, P)
    s = _dot(qe, tl.trans(ke.to(qe.dtype)), IEEE) + _dot(qo, tl.trans(ko.to(qo.dtype)), IEEE)
    if USE_BIAS:
        s += tl.load(BIAS + rows, mask=row_mask, other=0.0)[None, :] * 1.4426950408889634
    return tl.where(row_mask[None, :], s, float("-inf"))


@triton.jit
def _attend(acc, m_i, l_i, qe, qo, K, V, rows, k_stride, v_stride, row_mask, KPOS, BIAS, COS, SIN,
            USE_BIAS: tl.constexpr, T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr,
            D: tl.constexpr, DP: tl.constexpr, IEEE: tl.constexpr):
    """One online-softmax step over a key block; returns the updated (acc, m_i, l_i)."""
    s = _logits(qe, qo, K, rows, k_stride, row_mask, KPOS, BIAS, COS, SIN, USE_BIAS, T2, HALF_D, P, IEEE)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    dims = tl.arange(0, DP)
    v = tl.load(V + rows[:, None].to(tl.int64) * v_stride + dims[None, :],
                mask=row_mask[:, None] & (dims < D)[None, :], other=0.0)
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
    return acc, m_new, l_i * alpha + tl.sum(p, 1)


@triton.jit
def _query_block(Q, QPOS, b, h, pid_m, sqb, sqh, sqm, NQ, qk_scale, COS, SIN,
                 T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr, BLOCK_M: tl.constexpr):
    """Rotated, pre-scaled queries of one block: (rows, row mask, even, odd) in Q's dtype."""
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < NQ
    pos = tl.load(QPOS + h * NQ + rows, mask=mask, other=0)
    qe, qo = _rotated_pairs(Q + b.to(tl.int64) * sqb + h * sqh, rows, sqm, mask, pos, COS, SIN, T2, HALF_D, P)
    dtype = Q.dtype.element_ty
    return rows, mask, (qe * qk_scale).to(dtype), (qo * qk_scale).to(dtype)


@triton.jit
def _ragged_attention_fwd(
    Q, KS, VS, QPOS, K, V, KPOS, BIAS, OFFS, COS, SIN, OUT, LSE,
    sqb, sqh, sqm, sksb, sksh, sksm, svsb, svsh, svsm, skb, skn, svb, svn, sob, soh, som,
    H, NQ, qk_scale,
    HAS_BIAS: tl.constexpr, T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr,
    D: tl.constexpr, DP: tl.constexpr, IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    rows, mask, qe, qo = _query_block(Q, QPOS, b, h, pid_m, sqb, sqh, sqm, NQ, qk_scale, COS, SIN,
                                      T2, HALF_D, P, BLOCK_M)
    acc = tl.zeros((BLOCK_M, DP), dtype=tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    start = tl.load(OFFS + h)
    end = tl.load(OFFS + h + 1)
    k_base, v_base = K + b.to(tl.int64) * skb, V + b.to(tl.int64) * svb
    for n0 in range(start, end, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)
        acc, m_i, l_i = _attend(acc, m_i, l_i, qe, qo, k_base, v_base, keys, skn, svn, keys < end, KPOS, BIAS,
                                COS, SIN, HAS_BIAS, T2, HALF_D, P, D, DP, IEEE)
    ks_base = KS + b.to(tl.int64) * sksb + h * sksh
    vs_base = VS + b.to(tl.int64) * svsb + h * svsh
    for n0 in range(0, NQ, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)
        acc, m_i, l_i = _attend(acc, m_i, l_i, qe, qo, ks_base, vs_base, keys, sksm, svsm, keys < NQ,
                                QPOS + h * NQ, BIAS, COS, SIN, False, T2, HALF_D, P, D, DP, IEEE)
    dims = tl.arange(0, DP)
    out = acc / l_i[:, None]
    o_ptrs = OUT + b.to(tl.int64) * sob + h * soh + rows[:, None].to(tl.int64) * som + dims[None, :]
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=mask[:, None] & (dims < D)[None, :])
    tl.store(LSE + (b * H + h).to(tl.int64) * NQ + rows, m_i + tl.log2(l_i), mask=mask)


@triton.jit
def _cache_mass(
    Q, QPOS, K, KPOS, BIAS, LSE, BLOCK_HEAD, BLOCK_START, OFFS, COS, SIN, MASS,
    sqb, sqh, sqm, skb, skn,
    B, H, NQ, qk_scale,
    HAS_BIAS: tl.constexpr, T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Attention probability of each cache entry, summed over batch and queries (one key block)."""
    h = tl.load(BLOCK_HEAD + tl.program_id(0))
    keys = tl.load(BLOCK_START + tl.program_id(0)) + tl.arange(0, BLOCK_N)
    key_mask = keys < tl.load(OFFS + h + 1)
    total = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for batch in range(0, B):
        b = tl.cast(batch, tl.int64)
        for m0 in range(0, NQ, BLOCK_M):
            rows, mask, qe, qo = _query_block(Q, QPOS, b, h, m0 // BLOCK_M, sqb, sqh, sqm, NQ, qk_scale,
                                              COS, SIN, T2, HALF_D, P, BLOCK_M)
            s = _logits(qe, qo, K + b.to(tl.int64) * skb, keys, skn, key_mask, KPOS, BIAS, COS, SIN,
                        HAS_BIAS, T2, HALF_D, P, IEEE)
            lse = tl.load(LSE + (b * H + h).to(tl.int64) * NQ + rows, mask=mask, other=float("inf"))
            total += tl.sum(tl.exp2(s - lse[:, None]), 0)
    tl.store(MASS + keys, total, mask=key_mask)


@triton.jit
def _query_rows(Q, QPOS, b, h, rows, mask, sqb, sqh, sqm, NQ, q_scale, COS, SIN,
                T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr):
    """Rotated queries of the given rows, scaled by ``q_scale``: (even, odd) in Q's dtype."""
    pos = tl.load(QPOS + h * NQ + rows, mask=mask, other=0)
    qe, qo = _rotated_pairs(Q + b.to(tl.int64) * sqb + h * sqh, rows, sqm, mask, pos, COS, SIN, T2, HALF_D, P)
    dtype = Q.dtype.element_ty
    return (qe * q_scale).to(dtype), (qo * q_scale).to(dtype)


@triton.jit
def _cache_logits(
    Q, QPOS, K, KPOS, BLOCK_HEAD, BLOCK_START, OFFS, COS, SIN, LOGIT_SUM, POSITIVE,
    sqb, sqh, sqm, skb, skn,
    B, H, NQ, ROWS, G, N, scale,
    T2: tl.constexpr, HALF_D: tl.constexpr, P: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Per query frame g (rows g*ROWS .. (g+1)*ROWS-1): the sum of each cache entry's
    pre-softmax logits (no bias) over batch and rows, and how many are > 0 (one key block)."""
    h = tl.load(BLOCK_HEAD + tl.program_id(0))
    keys = tl.load(BLOCK_START + tl.program_id(0)) + tl.arange(0, BLOCK_N)
    key_mask = keys < tl.load(OFFS + h + 1)
    for g in range(0, G):
        total = tl.zeros((BLOCK_N,), dtype=tl.float32)
        count = tl.zeros((BLOCK_N,), dtype=tl.int32)
        row_end = (g + 1) * ROWS
        for batch in range(0, B):
            b = tl.cast(batch, tl.int64)
            for m0 in range(g * ROWS, row_end, BLOCK_M):
                rows = m0 + tl.arange(0, BLOCK_M)
                row_mask = rows < row_end
                qe, qo = _query_rows(Q, QPOS, b, h, rows, row_mask, sqb, sqh, sqm, NQ, scale, COS, SIN,
                                     T2, HALF_D, P)
                s = _logits(qe, qo, K + b.to(tl.int64) * skb, keys, skn, key_mask, KPOS, KPOS, COS, SIN,
                            False, T2, HALF_D, P, IEEE)
                valid = row_mask[:, None] & key_mask[None, :]
                total += tl.sum(tl.where(valid, s, 0.0), 0)
                count += tl.sum((valid & (s > 0)).to(tl.int32), 0)
        tl.store(LOGIT_SUM + g * N + keys, total, mask=key_mask)
        tl.store(POSITIVE + g * N + keys, count, mask=key_mask)


SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch_options(nq: int, head_dim: int, on_gpu: bool) -> dict:
    """Block sizes: GPU ones for the H100 class; under the interpreter, few large programs."""
    if not on_gpu:
        return {"BLOCK_M": max(16, min(128, triton.next_power_of_2(nq))), "BLOCK_N": 64}
    return {"BLOCK_M": 128 if head_dim <= 64 else 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}


def ragged_attention_triton(
    q: torch.Tensor,
    k_self: torch.Tensor,
    v_self: torch.Tensor,
    q_pos: torch.Tensor,
    cache: RaggedKV,
    rope: Rope3D,
    scale: float | None = None,
    return_mass: bool = False,
    out: torch.Tensor | None = None,
    mass_out: torch.Tensor | None = None,
    return_logits: bool = False,
    logits_out: LogitStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, LogitStats]:
    """Same contract as ``ragged_attention_reference``; ``out`` / ``mass_out`` / ``logits_out``
    (optional) receive the results ([B, H, Nq, D] in q's dtype, [N] float32, [G, N] each)."""
    B, H, Nq, D = q.shape
    if cache.heads != H:
        raise ValueError(f"cache has {cache.heads} heads, queries have {H}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"triton attention: dtype {q.dtype} is not supported; allowed: float16, bfloat16, float32")
    rope.check_positions(cache.pos, "cache temporal")
    rope.check_positions(q_pos, "query temporal")
    on_gpu = q.is_cuda
    device = q.device
    q, k_self, v_self = (_last_dim_contiguous(x.to(q.dtype)) for x in (q, k_self, v_self))
    k, v = (_last_dim_contiguous(x.to(q.dtype)) for x in (cache.k, cache.v))
    n_total = k.shape[1]
    if n_total == 0:  # keep every pointer valid; no head reads an entry
        k = v = torch.zeros(B, 1, D, dtype=q.dtype, device=device)
    cache_pos = cache.pos.to(device=device, dtype=torch.int32) if n_total else torch.zeros(1, dtype=torch.int32,
                                                                                             device=device)
    bias = cache.bias.to(device=device, dtype=torch.float32).contiguous() if cache.bias is not None else cache_pos
    offsets = cache.offsets.to(device=device, dtype=torch.int32)
    qpos = q_pos.to(device=device, dtype=torch.int32).expand(H, Nq).contiguous()
    cos, sin = rotation_table(rope, device)
    half = D // 2
    consts = dict(T2=rope.split[0] // 2, HALF_D=half, P=max(16, triton.next_power_of_2(half)),
                  IEEE=q.dtype == torch.float32)
    opts = _launch_options(Nq, D, on_gpu)
    qk_scale = (D**-0.5 if scale is None else scale) * LOG2E
    if out is None:
        out = torch.empty_like(q)
    lse = torch.empty(B, H, Nq, dtype=torch.float32, device=device)
    grid = (triton.cdiv(Nq, opts["BLOCK_M"]), B * H)
    _ragged_attention_fwd[grid](
        q, k_self, v_self, qpos, k, v, cache_pos, bias, offsets, cos, sin, out, lse,
        q.stride(0), q.stride(1), q.stride(2), k_self.stride(0), k_self.stride(1), k_self.stride(2),
        v_self.stride(0), v_self.stride(1), v_self.stride(2), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1), out.stride(2), H, Nq, qk_scale,
        HAS_BIAS=cache.bias is not None, D=D, DP=2 * consts["P"], **consts, **opts,
    )
    if return_mass:
        if mass_out is None:
            mass_out = torch.empty(n_total, dtype=torch.float32, device=device)
        if n_total:
            heads, block_start = _key_blocks(cache, opts["BLOCK_N"], device)
            mass_opts = {key: value for key, value in opts.items() if key != "BLOCK_N"}
            _cache_mass[(heads.numel(),)](
                q, qpos, k, cache_pos, bias, lse, heads, block_start, offsets, cos, sin, mass_out,
                q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), B, H, Nq, qk_scale,
                HAS_BIAS=cache.bias is not None, BLOCK_N=opts["BLOCK_N"], **consts, **mass_opts,
            )
    else:
        mass_out = None
    if not return_logits:
        return out, mass_out
    groups = query_groups(cache, Nq)
    if logits_out is None:
        logits_out = LogitStats(torch.empty(groups, n_total, dtype=torch.float32, device=device),
                                torch.empty(groups, n_total, dtype=torch.int32, device=device))
    if n_total:
        heads, block_start = _key_blocks(cache, opts["BLOCK_N"], device)
        logit_opts = {key: value for key, value in opts.items() if key != "BLOCK_N"}
        _cache_logits[(heads.numel(),)](
            q, qpos, k, cache_pos, heads, block_start, offsets, cos, sin, logits_out.logit_sum, logits_out.positive,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), B, H, Nq, Nq // groups, groups,
            n_total, D**-0.5 if scale is None else scale, BLOCK_N=opts["BLOCK_N"], **consts, **logit_opts,
        )
    return out, mass_out, logits_out


def _key_blocks(cache: RaggedKV, block_n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(head [M], first entry [M]) int32 of every block of ``block_n`` cache entries of one head."""
    lengths = cache.lengths().tolist()
    starts = [(h, int(cache.offsets[h]) + s) for h in range(cache.heads) for s in range(0, lengths[h], block_n)]
    heads = torch.tensor([h for h, _ in starts], dtype=torch.int32, device=device)
    block_start = torch.tensor([s for _, s in starts], dtype=torch.int32, device=device)
    return heads, block_start


