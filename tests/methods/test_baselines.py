"""Score-based and re-encoding baselines: budgets, sinks, flushes."""

from __future__ import annotations

import torch
from conftest import fast_configs

from bench.rollout import generate
from bench.sampler import FlowSampler
from methods import build_method
from methods.base import KIND_SINK


def roll(model, config, timeline=((0.0, "a red ball"),), frames=45, check=None):
    method = build_method(config, model.geometry)
    generate(model, method, list(timeline), frames, seed=0, sampler=FlowSampler(steps=1),
             on_chunk=(lambda rec: check(method, rec)) if check else None)
    return method


def test_uniform_keeps_the_same_budget_for_every_head(tiny_model, role_map_file):
    cfg = fast_configs(role_map_file)["uniform"]
    tpf = tiny_model.geometry.tokens_per_frame

    def check(method, rec):
        for store in method.layers:
            lengths = store.lengths()
            assert (lengths <= cfg.budget_frames * tpf).all()
            if rec.frame_end >= cfg.budget_frames:
                assert (lengths == cfg.budget_frames * tpf).all()
            recent = set(range(rec.frame_end - cfg.recent_frames, rec.frame_end))
            for h in range(store.heads):
                assert recent <= set(store.frame[store.head_slice(h)].tolist())

    method = roll(tiny_model, cfg, check=check)
    assert any(not torch.equal(s.frame[s.head_slice(0)], s.frame[s.head_slice(1)]) for s in method.layers), \
        "heads pick their own tokens"


def test_deep_forcing_sink_top_and_recent(tiny_model, role_map_file):
    cfg = fast_configs(role_map_file)["deep_forcing"]

    def check(method, rec):
        for store in method.layers:
            for h in range(store.heads):
                frames = sorted(set(store.frame[store.head_slice(h)].tolist()))
                assert len(frames) <= cfg.budget_frames
                assert set(range(min(cfg.sink_frames, rec.frame_end))) <= set(frames)
            assert (store.kind[store.frame < cfg.sink_frames] == KIND_SINK).all()
        for view in method.views(rec.frame_end):
            assert int(view.q_pos.max()) < tiny_model.geometry.horizon_frames

    roll(tiny_model, cfg, check=check)


def test_infinity_rope_flushes_at_a_prompt_switch(tiny_model, role_map_file):
    cfg = fast_configs(role_map_file)["infinity_rope"]
    method = build_method(cfg, tiny_model.geometry)
    seen = {}
    inner = method.on_prompt_switch

    def spy(start, prompt):
        inner(start, prompt)
        seen[start] = sorted(set(method.layers[0].frame.tolist()))

    method.on_prompt_switch = spy
    generate(tiny_model, method, [(0.0, "a"), (3.0, "b")], 18, seed=0, sampler=FlowSampler(steps=1))
    assert seen == {12: [0, 10, 11]}  # sink frame 0 + the last 2 frames
