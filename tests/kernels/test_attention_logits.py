"""Pre-softmax logit statistics of the cache entries (``return_logits``): the reference against a
brute-force dense computation, Triton (TRITON_INTERPRET=1, set in conftest.py) against the
reference, ragged head lengths, the merge bias left out, and the wiring from a rollout to a
cache method's ``observe_logits``."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

import kernels
from bench.models.attention import AttentionObservers, CachedSelfAttention
from bench.models.toy import ToyConfig
from bench.rollout import generate
from bench.sampler import FlowSampler
from kernels import LogitStats, RaggedKV, Rope3D
from kernels.reference import ragged_attention_reference
from kernels.triton_attention import ragged_attention_triton
from methods import build_method
from methods.full import Full, FullConfig

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def ragged_case(lengths, B=2, frames=3, rows=8, D=32, dtype=torch.float32, seed=0, max_pos=60, bias=True):
    """Random queries of ``frames`` query frames x ``rows`` rows, a packed cache with the given
    per-head lengths, and (optionally) log-weight biases."""
    g = torch.Generator().manual_seed(seed)
    H, N, Nq = len(lengths), sum(lengths), frames * rows
    q, ks, vs = (torch.randn(B, H, Nq, D, generator=g).to(dtype) for _ in range(3))
    k, v = (torch.randn(B, N, D, generator=g).to(dtype) for _ in range(2))
    pos = torch.randint(0, max_pos, (N,), generator=g)
    offsets = torch.tensor([0, *torch.tensor(lengths, dtype=torch.int64).cumsum(0).tolist()])
    frame_pos = torch.randint(0, max_pos, (H, frames), generator=g)
    weights = torch.log(torch.randint(1, 5, (N,), generator=g).float()) if bias else None
    return q, ks, vs, frame_pos.repeat_interleave(rows, dim=1), RaggedKV(k, v, pos, offsets, frame_pos, weights)


def dense_stats(q, q_pos, cache, rope, frames):
    """Every logit one by one (float64): rot(q) . rot(k) / sqrt(D) of each query row and cache
    entry of the same head, summed and counted per query frame."""
    B, H, Nq, D = q.shape
    N = cache.k.shape[1]
    total = torch.zeros(frames, N, dtype=torch.float64)
    positive = torch.zeros(frames, N, dtype=torch.int64)
    q_rot = rope.rotate_temporal(q.double(), q_pos.unsqueeze(0))  # [B, H, Nq, D]
    k_rot = rope.rotate_temporal(cache.k.double(), cache.pos.unsqueeze(0))  # [B, N, D]
    rows = Nq // frames
    for h in range(H):
        for n in range(int(cache.offsets[h]), int(cache.offsets[h + 1])):
            logits = (q_rot[:, h] * k_rot[:, n, None]).sum(-1) * D**-0.5  # [B, Nq]
            for f in range(frames):
                part = logits[:, f * rows:(f + 1) * rows]
                total[f, n], positive[f, n] = part.sum(), (part > 0).sum()
    return total, positive


LENGTHS = {
    "equal": [6, 6],
    "one-and-zero": [1, 0, 7],
    "not-block-multiples": [5, 70, 2, 0],
    "all-empty": [0, 0],
}


@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
def test_reference_matches_every_logit_one_by_one(lengths):
    """Both branches of the reference (equal lengths batched over heads, ragged per head)."""
    q, ks, vs, q_pos, cache = ragged_case(lengths, D=32, seed=len(lengths))
    rope = Rope3D(32, 10000.0, 1024)
    out, mass, stats = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True, return_logits=True)
    total, positive = dense_stats(q, q_pos, cache, rope, frames=3)
    assert stats.logit_sum.shape == stats.positive.shape == (3, sum(lengths))
    assert stats.logit_sum.dtype == torch.float32 and stats.positive.dtype == torch.int32
    torch.testing.assert_close(stats.logit_sum.double(), total, rtol=1e-5, atol=1e-4)
    assert torch.equal(stats.positive.long(), positive)
    assert int(positive.max()) <= 2 * 8 if positive.numel() else True  # B x rows logits per (frame, entry)
    plain_out, plain_mass = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True)
    assert torch.equal(out, plain_out) and torch.equal(mass, plain_mass)  # asking changes nothing else


def test_the_merge_bias_is_left_out():
    """log(w) biases move the softmax (mass, output) but not the logit statistics."""
    q, ks, vs, q_pos, cache = ragged_case([9, 4], seed=3, bias=True)
    rope = Rope3D(32, 10000.0, 1024)
    plain = RaggedKV(cache.k, cache.v, cache.pos, cache.offsets, cache.q_pos, None)
    for impl in (ragged_attention_reference, ragged_attention_triton):
        out_b, mass_b, stats_b = impl(q, ks, vs, q_pos, cache, rope, return_mass=True, return_logits=True)
        out_p, mass_p, stats_p = impl(q, ks, vs, q_pos, plain, rope, return_mass=True, return_logits=True)
        assert torch.equal(stats_b.logit_sum, stats_p.logit_sum) and torch.equal(stats_b.positive, stats_p.positive)
        assert (mass_b - mass_p).abs().max() > 1e-3


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert torch.isfinite(actual).all(), "an element was not written"
    return float((actual.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("lengths", [*LENGTHS.values(), [130, 1, 3]], ids=[*LENGTHS.keys(), "very-different"])
def test_triton_matches_reference(lengths, dtype):
    """The Triton logit kernel (NaN-poisoned outputs, so an unwritten element shows) against the
    reference; query frames that do not fill a BLOCK_M; the attention output and mass unchanged."""
    q, ks, vs, q_pos, cache = ragged_case(lengths, B=2, frames=3, rows=7, D=24, dtype=dtype, seed=len(lengths) + 11)
    rope = Rope3D(24, 10000.0, 1024)
    n = sum(lengths)
    poisoned = LogitStats(torch.full((3, n), float("nan")), torch.full((3, n), -1, dtype=torch.int32))
    out, mass, stats = ragged_attention_triton(q, ks, vs, q_pos, cache, rope, return_mass=True, return_logits=True,
                                               logits_out=poisoned)
    ref_out, ref_mass, ref = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True,
                                                        return_logits=True)
    assert stats is poisoned and stats.positive.dtype == torch.int32
    plain_out, plain_mass = ragged_attention_triton(q, ks, vs, q_pos, cache, rope, return_mass=True)
    assert torch.equal(out, plain_out) and torch.equal(mass, plain_mass)
    if not n:
        return
    assert relative_error(stats.logit_sum, ref.logit_sum) <= TOLERANCE[dtype]
    assert bool((stats.positive >= 0).all())
    if dtype == torch.float32:
        assert torch.equal(stats.positive, ref.positive)
    else:  # a logit within rounding of 0 may change sign between the implementations
        total, _ = dense_stats(q, q_pos, cache, rope, frames=3)
        assert int((stats.positive - ref.positive).abs().sum()) <= max(3, int(0.01 * 2 * 7 * n))
        assert relative_error(stats.logit_sum, total) <= TOLERANCE[dtype]


def test_dispatch_returns_the_statistics_from_either_implementation(monkeypatch):
    q, ks, vs, q_pos, cache = ragged_case([3, 17], seed=5)
    rope = Rope3D(32, 10000.0, 1024)
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "reference")
    assert len(kernels.attention(q, ks, vs, q_pos, cache, rope)) == 2
    ref = kernels.attention(q, ks, vs, q_pos, cache, rope, return_logits=True)[2]
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "triton")
    assert len(kernels.attention(q, ks, vs, q_pos, cache, rope)) == 2
    out, mass, tri = kernels.attention(q, ks, vs, q_pos, cache, rope, return_logits=True)
    assert mass is None and relative_error(tri.logit_sum, ref.logit_sum) <= 1e-5
    assert torch.equal(tri.positive, ref.positive)


def test_query_rows_must_split_into_the_chunk_frames():
    q, ks, vs, q_pos, cache = ragged_case([2, 2], frames=3, rows=5)
    rope = Rope3D(32, 10000.0, 1024)
    with pytest.raises(ValueError, match="13 query rows do not split into the chunk's 3 frames"):
        ragged_attention_reference(q[:, :, :13], ks[:, :, :13], vs[:, :, :13], q_pos[:, :13], cache, rope,
                                   return_logits=True)


class LoggingFull(Full):
    """The full cache, asking for logit statistics and recording what it is told."""

    needs_attention_logits = True

    def __init__(self, *args, **kwargs) -> None:
        self.seen: list[tuple[int, int, tuple[int, int], int]] = []
        super().__init__(*args, **kwargs)

    def observe_logits(self, layer: int, stats: LogitStats) -> None:
        assert stats.logit_sum.shape == stats.positive.shape
        self.seen.append((self.frames_written, layer, tuple(stats.logit_sum.shape), int(stats.positive.max()) if stats.positive.numel() else 0))


def test_a_rollout_hands_the_statistics_to_the_method_and_changes_nothing_else(tiny_model):
    """Every forward of every chunk (1 denoising step + the clean pass) reports [F, N] per layer;
    the frames are bit-identical to the same cache without the request."""
    g = tiny_model.geometry
    prompt = [(0.0, "a red ball")]
    plain = generate(tiny_model, build_method(FullConfig(), g), prompt, 9, seed=1, sampler=FlowSampler(steps=1))
    method = LoggingFull(FullConfig(), g)
    logged = generate(tiny_model, method, prompt, 9, seed=1, sampler=FlowSampler(steps=1))
    assert torch.equal(plain.frames, logged.frames)
    N = g.heads * g.tokens_per_frame  # entries of one frame over the heads of a layer
    expected = [(s, layer, (3, N * s), None) for s in (0, 3, 6) for _ in range(2) for layer in range(g.layers)]
    assert [(s, layer, shape, None) for s, layer, shape, _ in method.seen] == expected
    assert all(count <= g.tokens_per_frame for *_, count in method.seen)  # B x rows of one frame at most


def test_observers_keep_the_mass_path(monkeypatch):
    """A bundle with a mass observer and no logit observer calls the kernels as a plain observer does."""
    g = ToyConfig(**TINY).geometry()
    q = torch.randn(1, g.heads, 3 * g.tokens_per_frame, g.head_dim)
    view = RaggedKV(torch.randn(1, 4, g.head_dim), torch.randn(1, 4, g.head_dim), torch.zeros(4, dtype=torch.long),
                    torch.tensor([0, 2, 4]), torch.arange(3, 6).expand(g.heads, -1))
    rope = Rope3D(g.head_dim, 100.0, 1024)
    calls = []
    monkeypatch.setattr(kernels, "attention", lambda *a, **kw: calls.append(kw) or ragged_attention_reference(*a, **kw))
    masses, stats = [], []
    CachedSelfAttention([view], rope, g.tokens_per_frame, observer=lambda layer, m: masses.append(m))(0, q, q, q)
    CachedSelfAttention([view], rope, g.tokens_per_frame,
                        observer=AttentionObservers(mass=lambda layer, m: masses.append(m),
                                                    logits=lambda layer, s: stats.append(s)))(0, q, q, q)
    assert calls == [{"return_mass": True}, {"return_mass": True, "return_logits": True}]
    assert torch.equal(masses[0], masses[1]) and stats[0].logit_sum.shape == (3, 4)
