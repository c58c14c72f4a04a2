"""Invariants of every cache method, checked after every chunk of a long rollout."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_configs

from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import ConfigError
from methods import METHODS, build_method
from methods.base import KIND_SINK, LayerStore
from methods.full import FullConfig
from methods.sink import SinkConfig
from methods.sliding_window import SlidingWindowConfig

FRAMES = 45  # 5x the tiny horizon of 9 frames


def roll(model, config, frames=FRAMES, check=None):
    method = build_method(config, model.geometry)
    generate(model, method, [(0.0, "a red ball")], frames, seed=0, sampler=FlowSampler(steps=1),
             on_chunk=(lambda rec: check(method, rec)) if check else None)
    return method


def head_frames(store: LayerStore, h: int) -> list[int]:
    return sorted(set(store.frame[store.head_slice(h)].tolist()))


def test_fast_configs_cover_every_registered_method(role_map_file):
    assert sorted(fast_configs(role_map_file)) == METHODS.names(), "add the new method to tests/conftest.py:fast_configs"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_60s_past_the_horizon(name, tiny_model, role_map_file):
    """Every registered method (one test id each), in its fast configuration, rolls out 60 s
    (240 frames) across a prompt switch; a bounded cache stops growing past the horizon."""
    config = fast_configs(role_map_file)[name]
    g = tiny_model.geometry
    config.check(g, 240)
    method = build_method(config, g)
    out = generate(tiny_model, method, [(0.0, "a"), (30.0, "b")], 240, seed=0, sampler=FlowSampler(steps=1))
    assert out.frames.shape[0] == 240 and torch.isfinite(out.frames).all()
    if name != "full":
        assert out.chunks[-1].kv_bytes <= max(c.kv_bytes for c in out.chunks[:20]) * 1.5


def test_full_cache_grows_linearly(tiny_model):
    g = tiny_model.geometry
    seen = []

    def check(method, rec):
        seen.append((rec.frame_end, rec.kv_bytes))
        assert (rec.tokens == rec.frame_end * g.tokens_per_frame).all()
        view = method.views(rec.frame_end)[0]
        assert torch.equal(view.pos, method.layers[0].frame)  # absolute positions

    roll(tiny_model, FullConfig(), check=check)
    per_frame = seen[0][1] / seen[0][0]
    assert per_frame == 2 * g.layers * g.heads * g.tokens_per_frame * g.head_dim * 4  # K+V fp32
    assert all(b == f * per_frame for f, b in seen)


@pytest.mark.parametrize("positions", ["absolute", "repacked"])
def test_window_never_exceeds_budget(tiny_model, positions):
    W = 4

    def check(method, rec):
        for store in method.layers:
            for h in range(store.heads):
                frames = head_frames(store, h)
                assert len(frames) <= W
                assert frames == list(range(max(0, rec.frame_end - W), rec.frame_end))
        assert int(rec.tokens.max()) <= W * tiny_model.geometry.tokens_per_frame

    roll(tiny_model, SlidingWindowConfig(budget_frames=W, positions=positions), check=check)


def test_sink_frames_never_evicted(tiny_model):
    S, budget = 2, 5

    def check(method, rec):
        for store in method.layers:
            for h in range(store.heads):
                frames = head_frames(store, h)
                sink = list(range(min(S, rec.frame_end)))
                recent = list(range(max(S, rec.frame_end - (budget - S)), rec.frame_end))
                assert frames == sorted(set(sink + recent))
            assert (store.kind[store.frame < S] == KIND_SINK).all()
            assert (store.kind[store.frame >= S] != KIND_SINK).all()

    roll(tiny_model, SinkConfig(sink_frames=S, budget_frames=budget), check=check)


@pytest.mark.parametrize("config", [
    SinkConfig(sink_frames=2, budget_frames=5, positions="repacked"),
    SlidingWindowConfig(budget_frames=6, positions="repacked"),
])
def test_repacked_positions_stay_inside_the_horizon(tiny_model, config):
    g = tiny_model.geometry
    config.check(g, FRAMES)

    def check(method, rec):
        for view in method.views(rec.frame_end):
            assert int(view.q_pos.max()) < g.horizon_frames
            for h in range(view.heads):
                pos = view.pos[view.head_slice(h)]
                n = len(set(pos.tolist()))
                assert sorted(set(pos.tolist())) == list(range(n))  # dense, time-ordered
                assert view.q_pos[h].tolist() == list(range(n, n + g.frames_per_chunk))

    roll(tiny_model, config, check=check)


def test_budget_tokens_resolves_to_frames(tiny_cfg):
    g = tiny_cfg.geometry()
    per_frame = g.kv_entries_per_frame
    assert SlidingWindowConfig(budget_tokens=3 * per_frame + 5).frames(g) == 3
    with pytest.raises(ConfigError, match="sink_frames=4 is larger than the budget of 3 frames"):
        SinkConfig(sink_frames=4, budget_tokens=3 * per_frame).check(g, 30)


def test_repacked_budget_must_fit_horizon(tiny_cfg):
    with pytest.raises(ConfigError, match=r"method.budget_frames=7: .* allowed: <= 6"):
        SlidingWindowConfig(budget_frames=7, positions="repacked").check(tiny_cfg.geometry(), 30)


def test_store_reports_allocated_bytes_not_a_mask():
    store = LayerStore(heads=2, batch=1, head_dim=4, dtype=torch.float32, device=torch.device("cpu"))
    k = torch.randn(1, 2, 6, 4)
    store.append(k, k + 1, frame=torch.arange(6) // 2, spatial=torch.arange(6) % 2)
    assert store.lengths().tolist() == [6, 6] and store.nbytes() == 2 * 12 * 4 * 4
    store.append(k[:, :, :2], k[:, :, :2], frame=torch.tensor([3, 3]), spatial=torch.tensor([0, 1]),
                 heads=torch.tensor([False, True]))
    assert store.lengths().tolist() == [6, 8]
    assert store.head.tolist() == [0] * 6 + [1] * 8  # packed head after head
    store.keep(store.frame >= 2)
    assert store.lengths().tolist() == [2, 4]
    assert store.nbytes() == 2 * 6 * 4 * 4  # storage really shrank
    torch.testing.assert_close(store.k[0, :2], k[0, 0, 4:])
