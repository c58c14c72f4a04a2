"""Negative controls (methods/controls/): what each head holds after every chunk, at which
positions, the KV bytes against sliding_window at the same budget, and determinism."""

from __future__ import annotations

import pytest
import torch
from conftest import fast_configs

from bench.report.runs import CONTROL_PREFIX as REPORT_PREFIX
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import ConfigError
from methods import METHODS, build_method
from methods.controls import CONTROL_PREFIX
from methods.controls._seeding import seeded_generator
from methods.controls.no_history import NoHistoryConfig
from methods.controls.random_eviction import RandomEvictionConfig, reservoir_update
from methods.controls.scrambled_positions import ScrambledPositionsConfig
from methods.controls.stale import StaleConfig
from methods.sliding_window import SlidingWindowConfig

FRAMES = 36  # 4x the tiny horizon of 9 frames
W = 4
BOUNDED = {"control_random_eviction": RandomEvictionConfig, "control_scrambled_positions": ScrambledPositionsConfig,
           "control_stale": StaleConfig}


def roll(model, config, frames=FRAMES, check=None):
    """Roll out and return (method, rollout); ``check(method, record)`` runs after every chunk."""
    method = build_method(config, model.geometry)
    out = generate(model, method, [(0.0, "a red ball")], frames, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=(lambda rec: check(method, rec)) if check else None)
    return method, out


def head_frames(store, h: int) -> list[int]:
    return sorted(set(store.frame[store.head_slice(h)].tolist()))


def all_heads(method) -> list[list[int]]:
    return [head_frames(store, h) for store in method.layers for h in range(store.heads)]


def test_controls_are_registered_with_the_prefix(role_map_file):
    assert REPORT_PREFIX == CONTROL_PREFIX  # the reports spell it without importing the methods
    names = [n for n in METHODS.names() if n.startswith(CONTROL_PREFIX)]
    assert names == ["control_no_history", "control_random_eviction", "control_scrambled_positions", "control_stale"]
    assert set(names) <= set(fast_configs(role_map_file))


def test_random_eviction_keeps_one_random_subset_for_every_head_at_true_positions(tiny_model):
    kept_after = []

    def check(method, rec):
        heads = all_heads(method)
        assert all(h == method.kept for h in heads)  # same frames in every layer and head
        assert len(method.kept) == min(W, rec.frame_end) and set(method.kept) <= set(range(rec.frame_end))
        for store in method.layers:
            assert (store.lengths() == len(method.kept) * tiny_model.geometry.tokens_per_frame).all()
        view = method.views(rec.frame_end)[0]
        assert torch.equal(view.pos, method.layers[0].frame)  # true positions
        assert view.q_pos.tolist() == [list(range(rec.frame_end, rec.frame_end + 3))] * 2
        kept_after.append(list(method.kept))

    roll(tiny_model, RandomEvictionConfig(budget_frames=W), check=check)
    assert kept_after[0] == [0, 1, 2] and kept_after[1] == sorted(kept_after[1])
    last = set(range(FRAMES - 3, FRAMES))
    assert any(not last <= set(k) for k in kept_after[-3:]), "the newest chunk is not always kept"
    assert min(kept_after[-1]) < FRAMES - W  # frames a sliding window would have evicted long ago


def test_random_eviction_is_deterministic_given_its_seed(tiny_model):
    def kept_sequence(seed):
        seen = []
        roll(tiny_model, RandomEvictionConfig(budget_frames=W, seed=seed), check=lambda m, r: seen.append(m.kept))
        return seen

    a = kept_sequence(0)
    assert a == kept_sequence(0) and a != kept_sequence(1)
    gen = seeded_generator(0, 9)
    assert reservoir_update([0, 1, 2, 3], range(6, 9), 4, gen) == reservoir_update(
        [0, 1, 2, 3], range(6, 9), 4, seeded_generator(0, 9))


def test_reservoir_keeps_a_uniform_subset_of_every_frame_written():
    """Known answer: after n frames each frame is in the W-subset with probability W / n
    (a sliding window would keep the last W frames with probability 1, the rest 0)."""
    trials, n, size = 2000, 30, 4
    counts = torch.zeros(n)
    for t in range(trials):
        kept: list[int] = []
        for start in range(0, n, 3):
            kept = reservoir_update(kept, range(start, start + 3), size, seeded_generator(t, start + 3))
        assert len(kept) == size == len(set(kept))
        counts[kept] += 1
    freq = counts / trials
    assert (freq - size / n).abs().max() < 0.035  # 5 standard deviations of a binomial frequency
    assert freq[:10].mean() == pytest.approx(size / n, abs=0.012) and freq[-10:].mean() == pytest.approx(size / n, abs=0.012)
    assert reservoir_update([], range(3), 0, seeded_generator(0, 3)) == []


def test_scrambled_positions_keep_the_window_at_permuted_positions(tiny_model):
    g = tiny_model.geometry
    scrambled = []

    def check(method, rec):
        assert all(h == list(range(max(0, rec.frame_end - W), rec.frame_end)) for h in all_heads(method))
        views = method.views(rec.frame_end)
        assert all(torch.equal(a.pos, b.pos) for a, b in zip(views, method.views(rec.frame_end)))  # deterministic
        for store, view in zip(method.layers, views):
            for h in range(view.heads):
                sl = view.head_slice(h)
                frames, pos = store.frame[sl], view.pos[sl]
                n = len(set(frames.tolist()))
                by_frame = {f: set(pos[frames == f].tolist()) for f in set(frames.tolist())}
                assert all(len(p) == 1 for p in by_frame.values())  # one position per frame
                order = [by_frame[f].pop() for f in sorted(by_frame)]
                assert sorted(order) == list(range(n))  # a permutation of the repacked positions
                assert view.q_pos[h].tolist() == list(range(n, n + g.frames_per_chunk))  # queries right after
                scrambled.append(order != list(range(n)))

    method, out = roll(tiny_model, ScrambledPositionsConfig(budget_frames=W), check=check)
    assert sum(scrambled) > len(scrambled) / 2  # most heads see their frames out of order
    views_a = [v.pos for v in method.views(FRAMES)]
    assert any(not torch.equal(a.pos, b) for a, b in zip(method.views(FRAMES + 3), views_a))  # new order per chunk
    _, window = roll(tiny_model, SlidingWindowConfig(budget_frames=W, positions="repacked"))
    assert torch.equal(out.frames[:3], window.frames[:3])  # the first chunk has no cache: no difference
    assert not torch.allclose(out.frames[3:], window.frames[3:])  # afterwards the model sees the scramble


def test_stale_keeps_the_first_frames_forever(tiny_model):
    def check(method, rec):
        held = list(range(min(W, rec.frame_end)))
        assert all(h == held for h in all_heads(method))
        for view in method.views(rec.frame_end):
            assert view.pos.tolist() == method.layers[0].frame.tolist()  # frames 0..W-1 repacked = themselves
            assert view.q_pos.tolist() == [list(range(len(held), len(held) + 3))] * 2
            assert int(view.q_pos.max()) < tiny_model.geometry.horizon_frames

    roll(tiny_model, StaleConfig(budget_frames=W), check=check)


def test_no_history_keeps_nothing_and_reports_zero_bytes(tiny_model):
    def check(method, rec):
        assert rec.kv_bytes == 0 and (rec.tokens == 0).all()
        for view in method.views(rec.frame_end):
            assert view.k.shape[1] == 0 and (view.lengths() == 0).all()
            assert view.q_pos.tolist() == [[0, 1, 2]] * 2

    method, out = roll(tiny_model, NoHistoryConfig(budget_frames=16), check=check)
    assert method.stats().kv_bytes == 0 and len(out.chunks) == FRAMES // 3
    NoHistoryConfig(budget_frames=16).check(tiny_model.geometry, 10_000)  # no budget or position limit


@pytest.mark.parametrize("budget", [{"budget_frames": W}, {"budget_tokens": W * 64 + 5}])
def test_bounded_controls_spend_the_sliding_windows_bytes(tiny_model, budget):
    assert tiny_model.geometry.kv_entries_per_frame == 64
    _, window = roll(tiny_model, SlidingWindowConfig(**budget))
    expected = [c.kv_bytes for c in window.chunks]
    assert expected[-1] == 2 * W * 64 * tiny_model.geometry.head_dim * 4  # K+V, fp32
    for name, cls in BOUNDED.items():
        _, out = roll(tiny_model, cls(**budget))
        assert [c.kv_bytes for c in out.chunks] == expected, name
        assert all((c.tokens == w.tokens).all() for c, w in zip(out.chunks, window.chunks)), name


@pytest.mark.parametrize("config, message", [
    (lambda: RandomEvictionConfig(positions="repacked"), "method.positions='repacked': control_random_eviction"),
    (lambda: RandomEvictionConfig(seed=-1), "method.seed=-1: allowed: >= 0"),
    (lambda: ScrambledPositionsConfig(positions="absolute"), "allowed: repacked"),
    (lambda: StaleConfig(positions="absolute"), "allowed: repacked"),
    (lambda: NoHistoryConfig(positions="absolute"), "allowed: repacked"),
])
def test_bad_control_options_are_one_line_errors(config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config()


def test_repacked_controls_must_fit_the_horizon(tiny_cfg):
    with pytest.raises(ConfigError, match=r"method.budget_frames=7: .* allowed: <= 6"):
        StaleConfig(budget_frames=7).check(tiny_cfg.geometry(), 30)
