"""The key cache-correctness test.

A rollout with the full cache (no eviction) must give the same model outputs as one dense
forward over the whole sequence with a block-causal mask: the clean pass of every chunk
equals a block-causal forward over the clean video, and every denoising step of every
chunk equals one teacher-forcing forward over [clean video ; noisy chunks].
"""

from __future__ import annotations

import pytest
import torch

from bench.models.attention import block_causal_mask, teacher_forcing_mask
from bench.rollout import generate
from bench.sampler import FlowSampler
from methods import build_method
from methods.full import FullConfig
from methods.sliding_window import SlidingWindowConfig


def record_calls(model):
    """Wrap forward_chunk to record (x, t, velocity) of every call, in order."""
    calls = []
    inner = model.forward_chunk

    def spy(x, t, context, views, return_kv=False, observer=None):
        v, kv = inner(x, t, context, views, return_kv=return_kv, observer=observer)
        calls.append((x.clone(), t.clone(), v.clone()))
        return v, kv

    model.forward_chunk = spy
    return calls


@pytest.mark.parametrize("sampler_kind", ["euler", "renoise"])
def test_full_cache_rollout_equals_block_causal_forward(tiny_model, sampler_kind):
    model, g = tiny_model, tiny_model.geometry
    F, steps, T = g.frames_per_chunk, 3, 12
    sampler = FlowSampler(steps=steps, kind=sampler_kind)
    calls = record_calls(model)
    method = build_method(FullConfig(), g)
    prompt = "red ball on green grass"
    generate(model, method, [(0.0, prompt)], T, seed=3, sampler=sampler)
    chunks = T // F
    assert len(calls) == chunks * (steps + 1)
    per_chunk = [calls[c * (steps + 1):(c + 1) * (steps + 1)] for c in range(chunks)]

    context = model.encode_prompt(prompt)
    clean = torch.cat([pc[steps][0] for pc in per_chunk], dim=1)  # [1, T, C, H, W]
    with torch.no_grad():
        # clean pass: one block-causal forward over the whole clean video at t = 0
        out = model.forward_sequence(clean, torch.zeros(1, T), context, torch.arange(T),
                                     block_causal_mask(T, F))
        expected = torch.cat([pc[steps][2] for pc in per_chunk], dim=1)
        assert 0 < expected.abs().max() and (out - expected).abs().max() <= 1e-5

        # denoising step s of every chunk: one teacher-forcing forward over [clean ; noisy]
        for s in range(steps):
            noisy = torch.cat([pc[s][0] for pc in per_chunk], dim=1)
            t = torch.cat([pc[s][1] for pc in per_chunk], dim=1)
            seq = torch.cat((clean, noisy), dim=1)
            out = model.forward_sequence(seq, torch.cat((torch.zeros(1, T), t), dim=1), context,
                                         torch.arange(T).repeat(2), teacher_forcing_mask(T, F))
            expected = torch.cat([pc[s][2] for pc in per_chunk], dim=1)
            assert (out[:, T:] - expected).abs().max() <= 1e-5


def test_cache_contents_matter(tiny_model):
    """Guard against a vacuous equivalence: evicting context changes later chunks."""
    g = tiny_model.geometry
    sampler = FlowSampler(steps=2)
    full = generate(tiny_model, build_method(FullConfig(), g), [(0.0, "a")], 12, 0, sampler)
    window = generate(tiny_model, build_method(SlidingWindowConfig(budget_frames=0), g),
                      [(0.0, "a")], 12, 0, sampler)
    F = g.frames_per_chunk
    assert torch.equal(full.frames[:F], window.frames[:F])  # first chunk: empty cache either way
    assert (full.frames[F:] - window.frames[F:]).abs().max() > 1e-3
