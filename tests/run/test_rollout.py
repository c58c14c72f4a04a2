"""Determinism, the prefix property, and prompt switches of the AR rollout."""

from __future__ import annotations

import pytest
import torch

from bench.rollout import generate, rollout_chunks
from bench.sampler import FlowSampler
from core.timeline import prompt_starts
from methods import build_method
from methods.full import FullConfig
from methods.sink import SinkConfig

PROMPT = [(0.0, "blue square, camera pans left")]


@pytest.mark.parametrize("sampler_kind", ["euler", "renoise"])
def test_same_seed_same_frames(tiny_model, sampler_kind):
    g, sampler = tiny_model.geometry, FlowSampler(steps=2, kind=sampler_kind)
    a = generate(tiny_model, build_method(FullConfig(), g), PROMPT, 12, seed=7, sampler=sampler)
    b = generate(tiny_model, build_method(FullConfig(), g), PROMPT, 12, seed=7, sampler=sampler)
    c = generate(tiny_model, build_method(FullConfig(), g), PROMPT, 12, seed=8, sampler=sampler)
    assert a.frames.shape == (12, 3, 16, 16)
    assert torch.equal(a.frames, b.frames)
    assert (a.frames - c.frames).abs().max() > 1e-2


@pytest.mark.parametrize("config", [FullConfig(), SinkConfig(sink_frames=1, budget_frames=4)])
def test_shorter_rollout_is_a_prefix(tiny_model, config):
    g, sampler = tiny_model.geometry, FlowSampler(steps=2, kind="renoise")
    short = generate(tiny_model, build_method(config, g), PROMPT, 9, seed=1, sampler=sampler)
    long = generate(tiny_model, build_method(config, g), PROMPT, 24, seed=1, sampler=sampler)
    assert torch.equal(short.frames, long.frames[:9])
    assert [c.kv_bytes for c in short.chunks] == [c.kv_bytes for c in long.chunks[:3]]


def test_prompt_switch_replaces_context_and_notifies_method(tiny_model):
    g = tiny_model.geometry  # 4 frames/s, chunks of 3 frames
    timeline = [(0.0, "red ball"), (2.0, "yellow ball")]  # 2 s = frame 8 -> chunk 3 (frame 9)
    assert prompt_starts(timeline, g.fps, g.frames_per_chunk) == [0, 3]
    method = build_method(FullConfig(), g)
    switches = []
    method.on_prompt_switch = lambda start, prompt: switches.append((start, prompt))
    out = generate(tiny_model, method, timeline, 18, seed=0, sampler=FlowSampler(steps=1))
    assert switches == [(9, "yellow ball")]
    assert [c.prompt_index for c in out.chunks] == [0, 0, 0, 1, 1, 1]
    assert len(out.prompt_encode_s) == 2
    single = generate(tiny_model, build_method(FullConfig(), g), timeline[:1], 18, seed=0,
                      sampler=FlowSampler(steps=1))
    assert torch.equal(single.frames[:9], out.frames[:9])
    assert (single.frames[9:] - out.frames[9:]).abs().max() > 1e-3  # the new prompt is used


def test_frame_count_must_be_whole_chunks(tiny_model):
    with pytest.raises(ValueError, match="num_frames=10 must be a multiple of frames_per_chunk=3"):
        generate(tiny_model, build_method(FullConfig(), tiny_model.geometry), PROMPT, 10, 0, FlowSampler())


def test_chunk_records_split_the_time_and_rollout_chunks_interleave(tiny_model):
    """Each record says what its time holds (the method's share inside the DiT time; decoding and
    prompt encoding beside it), and two rollouts advanced in turns equal rollouts run alone."""
    g, sampler = tiny_model.geometry, FlowSampler(steps=2, kind="renoise")
    timeline = [(0.0, "red ball"), (2.0, "yellow ball")]  # the second prompt starts at chunk 3
    alone = [generate(tiny_model, build_method(c, g), timeline, 15, seed=3, sampler=sampler)
             for c in (FullConfig(), SinkConfig(sink_frames=1, budget_frames=4))]
    runs = [rollout_chunks(tiny_model, build_method(c, g), timeline, 15, 3, sampler)
            for c in (FullConfig(), SinkConfig(sink_frames=1, budget_frames=4))]
    turns = [[], []]
    for _ in range(5):
        for i in (1, 0):
            turns[i].append(next(runs[i]))
    for rollout, mine in zip(alone, turns):
        assert torch.equal(rollout.frames, torch.cat([video for _, video in mine]))
        for record, _ in mine:
            assert 0 < record.method_s < record.wall_s and record.decode_s > 0
            assert (record.encode_s > 0) == (record.index in (0, 3))
        assert rollout.prompt_encode_s == [r.encode_s for r in rollout.chunks if r.encode_s > 0]
