"""The reference head-ragged attention against an independent dense computation."""

from __future__ import annotations

import pytest
import torch

from kernels import RaggedKV, Rope3D, attention, rope_split
from kernels.reference import ragged_attention_reference


def rotate_complex(x: torch.Tensor, pos: torch.Tensor, part: int, theta: float) -> torch.Tensor:
    """Independent RoPE on the first ``part`` dims: complex multiplication by e^{i pos w}."""
    freqs = theta ** (-torch.arange(0, part, 2, dtype=torch.float64) / part)
    z = torch.view_as_complex(x[..., :part].to(torch.float64).unflatten(-1, (-1, 2)).contiguous())
    z = z * torch.polar(torch.ones_like(freqs), pos.to(torch.float64)[..., None] * freqs)
    return torch.cat((torch.view_as_real(z).flatten(-2), x[..., part:].to(torch.float64)), dim=-1)


def make_case(lengths, B=2, Nq=6, D=16, seed=0, dtype=torch.float64, max_pos=50):
    g = torch.Generator().manual_seed(seed)
    H, N = len(lengths), sum(lengths)
    q, ks, vs = (torch.randn(B, H, Nq, D, generator=g, dtype=dtype) for _ in range(3))
    k, v = (torch.randn(B, N, D, generator=g, dtype=dtype) for _ in range(2))
    pos = torch.randint(0, max_pos, (N,), generator=g)
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    q_pos = torch.randint(0, max_pos, (H, Nq), generator=g)
    return q, ks, vs, RaggedKV(k, v, pos, offsets, q_pos[:, :1]), q_pos


def dense_expected(q, ks, vs, q_pos, cache, theta):
    B, H, Nq, D = q.shape
    t = rope_split(D)[0]
    outs, masses = [], []
    for h in range(H):
        sl = cache.head_slice(h)
        keys = torch.cat((rotate_complex(cache.k[:, sl], cache.pos[sl], t, theta),
                          rotate_complex(ks[:, h], q_pos[h], t, theta)), 1)
        vals = torch.cat((cache.v[:, sl], vs[:, h]), 1).to(torch.float64)
        qh = rotate_complex(q[:, h], q_pos[h], t, theta)
        p = torch.softmax(qh @ keys.transpose(1, 2) / D**0.5, -1)
        outs.append(p @ vals)
        masses.append(p[..., : sl.stop - sl.start].sum((0, 1)))
    return torch.stack(outs, 1), torch.cat(masses)


@pytest.mark.parametrize("lengths", [[0, 0], [1, 0, 7], [5, 33, 2, 0], [64, 1], [6, 6, 6]])
def test_matches_dense(lengths):
    q, ks, vs, cache, q_pos = make_case(lengths)
    rope = Rope3D(16, 10000.0, 1024)
    out, mass = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True)
    exp_out, exp_mass = dense_expected(q, ks, vs, q_pos, cache, 10000.0)
    assert out.shape == q.shape
    torch.testing.assert_close(out, exp_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(mass.double(), exp_mass, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lengths", [[4, 4], [3, 5]])
def test_bias_counts_like_repeated_entries(lengths):
    """A log(w) bias on an entry gives the same output as w copies of it."""
    q, ks, vs, cache, q_pos = make_case(lengths)
    rope = Rope3D(16)
    w = torch.tensor([3.0] + [1.0] * (sum(lengths) - 1), dtype=torch.float64)
    biased = RaggedKV(cache.k, cache.v, cache.pos, cache.offsets, cache.q_pos, torch.log(w))
    out, _ = ragged_attention_reference(q, ks, vs, q_pos, biased, rope)
    rep = torch.tensor([0, 0] + list(range(sum(lengths))))  # entry 0 three times (head 0)
    copies = RaggedKV(cache.k[:, rep], cache.v[:, rep], cache.pos[rep], cache.offsets + torch.tensor([0] + [2] * len(lengths)),
                      cache.q_pos)
    expected, _ = ragged_attention_reference(q, ks, vs, q_pos, copies, rope)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)


def test_float32_output_dtype_and_dispatch():
    q, ks, vs, cache, q_pos = make_case([3, 9], dtype=torch.float32)
    rope = Rope3D(16)
    out, mass = attention(q, ks, vs, q_pos, cache, rope)
    assert out.dtype == torch.float32 and mass is None
    exp, _ = dense_expected(q, ks, vs, q_pos, cache, 10000.0)
    torch.testing.assert_close(out.double(), exp, atol=1e-5, rtol=1e-5)


def test_relative_positions_only():
    """RoPE is relative: shifting every position by the same amount changes nothing."""
    q, ks, vs, cache, q_pos = make_case([4, 6])
    rope = Rope3D(16)
    out, _ = ragged_attention_reference(q, ks, vs, q_pos, cache, rope)
    shifted = RaggedKV(cache.k, cache.v, cache.pos + 100, cache.offsets, cache.q_pos)
    out2, _ = ragged_attention_reference(q, ks, vs, q_pos + 100, shifted, rope)
    torch.testing.assert_close(out, out2, atol=1e-9, rtol=1e-9)
    # ...while moving only the cache does change the result
    out3, _ = ragged_attention_reference(q, ks, vs, q_pos, shifted, rope)
    assert (out - out3).abs().max() > 1e-3


def test_positions_beyond_table_rejected():
    q, ks, vs, cache, q_pos = make_case([2, 2])
    rope = Rope3D(16, max_positions=40)
    bad = RaggedKV(cache.k, cache.v, torch.full_like(cache.pos, 40), cache.offsets, cache.q_pos)
    with pytest.raises(ValueError, match=r"position 40 is outside the RoPE table \[0, 40\)"):
        ragged_attention_reference(q, ks, vs, q_pos % 40, bad, rope)


def test_rope_split_matches_wan():
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(32) == (12, 10, 10)


def test_unknown_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "cuda-magic")
    q, ks, vs, cache, q_pos = make_case([1, 1], dtype=torch.float32)
    with pytest.raises(ValueError, match="FORCEBENCH_ATTENTION='cuda-magic' is unknown; allowed: auto, reference"):
        attention(q, ks, vs, q_pos, cache, Rope3D(16))


def test_groups_of_equal_length_are_computed_once_per_view_and_match_each_head_alone():
    """Heads grouped by length give each head exactly what the head alone gives; what a view's
    attention calls share (rotated keys, groups) is derived once per view."""
    q, ks, vs, cache, q_pos = make_case([7, 3, 7, 0, 3], dtype=torch.float32)
    rope = Rope3D(16, theta=100.0, max_positions=64)
    out, mass = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True)
    for h in range(5):
        sl = cache.head_slice(h)
        alone = RaggedKV(cache.k[:, sl], cache.v[:, sl], cache.pos[sl], torch.tensor([0, sl.stop - sl.start]),
                         cache.q_pos[h:h + 1])
        o, m = ragged_attention_reference(q[:, h:h + 1], ks[:, h:h + 1], vs[:, h:h + 1], q_pos[h:h + 1], alone, rope,
                                          return_mass=True)
        assert torch.equal(out[:, h:h + 1], o)
        torch.testing.assert_close(mass[sl], m, rtol=1e-6, atol=0)  # summed over a batch of 2: order may differ
    groups = cache.derived(("reference", rope, torch.float32), lambda: pytest.fail("derived twice"))
    assert [(g.length, g.heads.tolist()) for g in groups] == [(0, [3]), (3, [1, 4]), (7, [0, 2])]
    again, _ = ragged_attention_reference(q, ks, vs, q_pos, cache, rope)
    assert torch.equal(again, out)
