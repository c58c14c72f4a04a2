"""The Triton kernels (under TRITON_INTERPRET=1, set in conftest.py) against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_configs

import kernels
from bench.rollout import generate
from bench.sampler import FlowSampler
from kernels import RaggedKV, Rope3D, triton_attention
from kernels.reference import ragged_attention_reference
from kernels.triton_attention import ragged_attention_triton
from methods import build_method

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def ragged_case(lengths, B=2, Nq=40, D=32, dtype=torch.float32, seed=0, max_pos=60, bias=False):
    """Random queries, chunk keys/values and a packed cache with the given per-head lengths."""
    g = torch.Generator().manual_seed(seed)
    H, N = len(lengths), sum(lengths)
    q, ks, vs = (torch.randn(B, H, Nq, D, generator=g).to(dtype) for _ in range(3))
    k, v = (torch.randn(B, N, D, generator=g).to(dtype) for _ in range(2))
    pos = torch.randint(0, max_pos, (N,), generator=g)
    offsets = torch.tensor([0, *torch.tensor(lengths, dtype=torch.int64).cumsum(0).tolist()])
    q_pos = torch.randint(0, max_pos, (H, Nq), generator=g)
    weights = torch.log(torch.randint(1, 5, (N,), generator=g).float()) if bias else None
    return q, ks, vs, q_pos, RaggedKV(k, v, pos, offsets, q_pos[:, :1], weights)


def poisoned_run(q, ks, vs, q_pos, cache, rope, return_mass=True):
    """The Triton kernel writing into NaN-filled outputs, so an unwritten element shows."""
    out = torch.full_like(q, float("nan"))
    mass = torch.full((cache.k.shape[1],), float("nan"))
    return ragged_attention_triton(q, ks, vs, q_pos, cache, rope, return_mass=return_mass, out=out, mass_out=mass)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert torch.isfinite(actual).all(), "an output element was not written"
    return float((actual.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-30))


LENGTHS = {
    "all-empty": [0, 0],
    "one-and-zero": [1, 0, 7],
    "not-block-multiples": [5, 70, 2, 0],
    "very-different": [130, 1, 3],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("head_dim", [24, 32, 128], ids=["toy-D24", "D32", "wan-D128"])
def test_attention_matches_reference(lengths, dtype, head_dim):
    q, ks, vs, q_pos, cache = ragged_case(lengths, D=head_dim, dtype=dtype, seed=len(lengths) + head_dim)
    rope = Rope3D(head_dim, 10000.0, 1024)
    out, mass = poisoned_run(q, ks, vs, q_pos, cache, rope)
    ref_out, ref_mass = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True)
    assert out.dtype == dtype and out.shape == q.shape
    assert relative_error(out, ref_out) <= TOLERANCE[dtype]
    assert mass.shape == ref_mass.shape
    if mass.numel():
        assert relative_error(mass, ref_mass) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_merged_entry_bias_and_small_head_dim(dtype):
    """log(w) logit biases (merged episodic entries) and a head_dim below the 16-wide dot."""
    q, ks, vs, q_pos, cache = ragged_case([9, 0, 66], B=3, Nq=21, D=16, dtype=dtype, bias=True, seed=5)
    rope = Rope3D(16, 10000.0, 1024)
    out, mass = poisoned_run(q, ks, vs, q_pos, cache, rope)
    ref_out, ref_mass = ragged_attention_reference(q, ks, vs, q_pos, cache, rope, return_mass=True)
    assert relative_error(out, ref_out) <= TOLERANCE[dtype]
    assert relative_error(mass, ref_mass) <= TOLERANCE[dtype]


def test_positions_are_really_applied():
    """Moving every cached entry by one position changes the output (RoPE is not skipped)."""
    q, ks, vs, q_pos, cache = ragged_case([20, 20], D=32)
    rope = Rope3D(32, 10000.0, 1024)
    out, _ = poisoned_run(q, ks, vs, q_pos, cache, rope, return_mass=False)
    cache.pos = cache.pos + 1
    moved, _ = poisoned_run(q, ks, vs, q_pos, cache, rope, return_mass=False)
    assert (out - moved).abs().max() > 1e-3


@pytest.mark.parametrize("where", ["cache", "query"])
def test_positions_beyond_the_table_are_rejected(where):
    q, ks, vs, q_pos, cache = ragged_case([4, 3], D=32)
    rope = Rope3D(32, 10000.0, max_positions=64)
    if where == "cache":
        cache.pos[2] = 64
    else:
        q_pos[1, 5] = 70
    bad = 64 if where == "cache" else 70
    with pytest.raises(ValueError, match=f"position {bad} is outside the RoPE table \\[0, 64\\)"):
        ragged_attention_triton(q, ks, vs, q_pos, cache, rope)


def test_dispatch_picks_and_forces_implementations(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("FORCEBENCH_ATTENTION", raising=False)
    assert kernels.resolve(cpu) == "reference"
    assert kernels.resolve(torch.device("cuda")) == "triton"
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "triton")
    assert kernels.resolve(cpu) == "triton"  # the interpreter is on
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="'triton' needs CUDA tensors .* set TRITON_INTERPRET=1"):
        kernels.resolve(cpu)
    kernels.set_backend("reference")
    try:
        assert kernels.resolve(torch.device("cuda")) == "reference"
    finally:
        kernels.set_backend(None)


def test_dispatch_runs_the_kernel(monkeypatch):
    q, ks, vs, q_pos, cache = ragged_case([3, 17], D=32)
    rope = Rope3D(32, 10000.0, 1024)
    ref, ref_mass = kernels.attention(q, ks, vs, q_pos, cache, rope, return_mass=True)
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "triton")
    out, mass = kernels.attention(q, ks, vs, q_pos, cache, rope, return_mass=True)
    assert relative_error(out, ref) <= 1e-5 and relative_error(mass, ref_mass) <= 1e-5


@pytest.mark.parametrize("method", ["uniform", "head_forcing"])
def test_toy_rollout_is_the_same_through_either_implementation(tiny_model, role_map_file, method, monkeypatch):
    """The whole rollout (cache views, re-encoded positions, merged entries, attention mass)
    through the dispatch: Triton under the interpreter gives the reference's frames."""
    prompt, g = [(0.0, "red circle, static camera")], tiny_model.geometry
    config = fast_configs(role_map_file)[method]
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "reference")
    ref = generate(tiny_model, build_method(config, g), prompt, 12, seed=2, sampler=FlowSampler(steps=2))
    calls = []
    monkeypatch.setattr(triton_attention, "ragged_attention_triton",
                        lambda *a, **kw: calls.append(kw["return_mass"]) or ragged_attention_triton(*a, **kw))
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "triton")
    tri = generate(tiny_model, build_method(config, g), prompt, 12, seed=2, sampler=FlowSampler(steps=2))
    assert len(calls) == 4 * 3 * g.layers  # 4 chunks x (2 steps + the clean pass) x layers
    assert any(calls) == (method == "uniform")  # uniform scores entries by attention mass
    assert ref.frames.shape == tri.frames.shape == (12, 3, 16, 16)
    assert (ref.frames - tri.frames).abs().max() <= 1e-4
    assert [c.kv_bytes for c in ref.chunks] == [c.kv_bytes for c in tri.chunks]
