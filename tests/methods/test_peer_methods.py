"""Invariants of the published peers rolling_sink and dummy_forcing (methods/rolling_sink.py,
methods/dummy_forcing.py): what each head keeps per chunk, positions, KV bytes, the replay
pointer's sweep and the online head classification."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

from bench.models.toy import ToyConfig
from bench.preflight import check_command_line
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import ConfigError
from methods import build_method
from methods.base import KIND_SINK
from methods.dummy_forcing import (
    ROLE_DUMMY,
    ROLE_LOCAL,
    ROLE_SINK,
    DummyForcingConfig,
    classify_heads,
)
from methods.rolling_sink import RollingSinkConfig
from methods.sliding_window import SlidingWindowConfig

TOY = ToyConfig().geometry()  # the shipped toy: horizon 21 frames in chunks of 3, 4 x 4 heads
WIDE = ToyConfig(**{**TINY, "heads": 4}).geometry()  # the tiny backbone with 2 x 4 heads, horizon 9


def marked_kv(g, chunk_start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One chunk's K/V per layer, [1, H, F * tpf, D], whose keys carry (source frame, head, layer)
    in their first three channels, so that a gathered view can be read back."""
    n = g.frames_per_chunk * g.tokens_per_frame
    k = torch.zeros(1, g.heads, n, g.head_dim)
    k[..., 0] = (chunk_start + torch.arange(n) // g.tokens_per_frame).float()
    k[..., 1] = torch.arange(g.heads).float()[:, None]
    out = []
    for layer in range(g.layers):
        k_layer = k.clone()
        k_layer[..., 2] = layer
        out.append((k_layer, -k_layer))
    return out


def head_frames(store, h: int) -> list[int]:
    return sorted(set(store.frame[store.head_slice(h)].tolist()))


def kv_bytes_per_frame(g) -> int:
    """K + V bytes of one frame in one head of one layer (float32)."""
    return 2 * g.tokens_per_frame * g.head_dim * 4


# -- rolling_sink ---------------------------------------------------------------------------

def published_block(slot: int, span: int = 18) -> list[int]:
    """The authors' rule (module doc of methods/rolling_sink.py) for the F = 3 frames shown at
    slot start ``slot``: slots below the sweep span are never overwritten."""
    if slot < span:
        return [slot, slot + 1, slot + 2]
    if (slot // span) % 2 == 1:
        right = span - slot % span
        return [right - 1, right - 2, right - 3]
    left = slot % span
    return [left, left + 1, left + 2]


def test_rolling_sink_pointer_sweeps_forward_then_back_over_a_long_rollout():
    """Published geometry (the toy's: T = 21, F = 3): from frame 24 on every chunk sees 15
    replayed frames + the real previous chunk; the block that replaced the previous chunk's
    slot walks 17..15, 14..12, ..., 2..0 backwards, then 0..2, ..., 15..17 forwards, and again."""
    g = TOY
    method = build_method(RollingSinkConfig(), g)
    blocks = []
    for c in range(40):  # 120 frames: more than three sweeps
        s = c * 3
        frames = method.window(s)
        view = method.views(s)[1]
        W = len(frames)
        assert W == min(s, 18)
        expected = [f for t in range(max(0, s - 18), s - 3, 3) for f in published_block(t)]
        expected += list(range(max(0, s - 3), s))
        assert frames.tolist() == expected, s
        for h in range(g.heads):  # the gathered keys are the stored keys of those source frames
            k = view.k[0, view.head_slice(h)]
            assert k[::g.tokens_per_frame, 0].tolist() == expected
            assert (k[:, 1] == h).all() and (k[:, 2] == 1).all()
            assert view.pos[view.head_slice(h)].tolist() == [p for p in range(W) for _ in range(g.tokens_per_frame)]
            assert view.q_pos[h].tolist() == [W, W + 1, W + 2]
        assert int(view.q_pos.max()) < g.horizon_frames
        if s >= 24:
            blocks.append(frames[-6:-3].tolist())
            assert all(f < 18 for f in frames[:-3].tolist())  # replayed: the first 18 frames only
        method.write(marked_kv(g, s), s)
    down = [[17, 16, 15], [14, 13, 12], [11, 10, 9], [8, 7, 6], [5, 4, 3], [2, 1, 0]]
    up = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14], [15, 16, 17]]
    assert blocks[:24] == down + up + down + up
    assert blocks == [published_block(s - 6) for s in range(24, 120, 3)]


def test_rolling_sink_keeps_the_first_frames_and_the_last_chunk(tiny_model):
    """Tiny backbone (horizon 9): budget 9 = 6 replayed frames + 1 chunk, every head alike."""
    g = tiny_model.geometry
    config = RollingSinkConfig(budget_frames=9)
    config.check(g, 240)
    seen = []

    def check(method, rec):
        end = rec.frame_end
        kept = sorted(set(range(min(6, end))) | set(range(end - 3, end)))
        for store in method.layers:
            for h in range(store.heads):
                assert head_frames(store, h) == kept
            assert (store.kind[store.frame < 6] == KIND_SINK).all()
            assert (store.kind[store.frame >= 6] != KIND_SINK).all()
        assert (rec.tokens == len(kept) * g.tokens_per_frame).all()
        assert rec.kv_bytes == len(kept) * g.layers * g.heads * kv_bytes_per_frame(g)
        for view in method.views(end):
            assert int(view.q_pos.max()) < g.horizon_frames
            W = min(end, 6)
            assert view.lengths().tolist() == [W * g.tokens_per_frame] * g.heads
        seen.append(rec.kv_bytes)

    method = build_method(config, g)
    out = generate(tiny_model, method, [(0.0, "a red ball")], 36, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=lambda rec: check(method, rec))
    assert torch.isfinite(out.frames).all()
    assert seen[-1] == 9 * g.layers * g.heads * kv_bytes_per_frame(g)  # exactly the budget


def run_fed(config, g, frames: int, pattern=None):
    """Roll a method over ``frames`` frames of marked K/V without a backbone; ``pattern`` (p0,
    p1 [L, H]) is the attention mass a dummy_forcing method observes at its classification chunk."""
    method = build_method(config, g)
    for s in range(0, frames, g.frames_per_chunk):
        method.views(s)
        if pattern is not None and s == config.classify_chunk * g.frames_per_chunk:
            observe(method, *pattern)
        method.write(marked_kv(g, s), s)
    return method


@pytest.mark.parametrize("budget", [21, 16])
def test_rolling_sink_allocates_exactly_its_budget(budget):
    """At its default budget and at sweep=equal_budget's 16 frames: the KV bytes of a sliding
    window of the same budget once past the horizon (60 s fit too)."""
    config = RollingSinkConfig(budget_frames=budget)
    config.check(TOY, 240)
    method = run_fed(config, TOY, 60)
    window = run_fed(SlidingWindowConfig(budget_frames=budget), TOY, 60)
    assert method.stats().kv_bytes == window.stats().kv_bytes == (
        budget * TOY.layers * TOY.heads * kv_bytes_per_frame(TOY))
    R = budget - 3
    assert head_frames(method.layers[0], 0) == list(range(R)) + [57, 58, 59]
    frames = method.window(60)
    assert len(frames) == R and frames[-3:].tolist() == [57, 58, 59]
    assert all(f < R for f in frames[:-3].tolist())


def test_rolling_sink_budget_tokens_resolve_to_frames():
    per_frame = TOY.kv_entries_per_frame
    config = RollingSinkConfig(budget_tokens=16 * per_frame + 7)
    config.check(TOY, 240)
    assert config.replay_frames(TOY) == 13


@pytest.mark.parametrize("kwargs, expected", [
    (dict(budget_frames=22), "method.budget_frames=22: rolling_sink stores 22 frames a head"),
    (dict(budget_frames=5), "allowed: 6 to 21 frames a head"),
    (dict(budget_tokens=30 * TOY.kv_entries_per_frame), "method.budget_tokens=7680: rolling_sink stores 30"),
])
def test_rolling_sink_budget_must_fit_the_horizon(kwargs, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        RollingSinkConfig(**kwargs).check(TOY, 240)
    assert "\n" not in str(info.value)


def test_rolling_sink_positions_are_repacked_only():
    with pytest.raises(ConfigError, match="method.positions='absolute': rolling_sink re-rotates"):
        RollingSinkConfig(positions="absolute")


# -- dummy_forcing --------------------------------------------------------------------------

def observe(method, p0: torch.Tensor, p1: torch.Tensor) -> None:
    """Hand the method an attention pattern: per (layer, head) a total mass p0 spread over the
    first frame's entries and p1 over the other cached entries."""
    for layer, store in enumerate(method.layers):
        first = store.frame < method.config.sink_frames
        n_first = torch.bincount(store.head[first], minlength=store.heads).float()
        n_rest = torch.bincount(store.head[~first], minlength=store.heads).float()
        head = store.head
        mass = torch.where(first, p0[layer][head] / n_first[head], p1[layer][head] / n_rest[head])
        method.observe_attention(layer, mass)


def test_classify_heads_follows_dynamic_head_programming():
    p0 = torch.tensor([[0.50, 0.05, 0.01], [0.20, 0.02, 0.22]])
    p1 = torch.tensor([[0.10, 0.60, 0.02], [0.05, 0.03, 0.20]])
    # cost max(p0n, p1n) = [[.5, .6, .02], [.2, .03, .22]]: the two lowest are dummy
    assert classify_heads(p0, p1, 2).tolist() == [[ROLE_SINK, ROLE_LOCAL, ROLE_DUMMY],
                                                 [ROLE_SINK, ROLE_DUMMY, ROLE_SINK]]
    assert classify_heads(p0, p1, 0)[0, 2] == ROLE_LOCAL and classify_heads(p0, p1, 6).eq(ROLE_DUMMY).all()
    # p0 and p1 are each normalised over all heads before they are compared: head 1 puts more raw
    # mass on the middle frames (0.3 > 0.1) but less than its share of all heads' middle mass
    raw0, raw1 = torch.tensor([[0.1, 0.1]]), torch.tensor([[0.5, 0.3]])
    assert classify_heads(raw0, raw1, 0).tolist() == [[ROLE_LOCAL, ROLE_SINK]]


# [L, H] = [2, 4] pattern: layer 0 = sink, local, dummy, dummy; layer 1 = local, sink, dummy, dummy
PATTERN_P0 = torch.tensor([[0.60, 0.05, 0.02, 0.01], [0.04, 0.50, 0.03, 0.02]])
PATTERN_P1 = torch.tensor([[0.10, 0.70, 0.03, 0.02], [0.55, 0.08, 0.01, 0.04]])
PATTERN_ROLES = [[ROLE_SINK, ROLE_LOCAL, ROLE_DUMMY, ROLE_DUMMY], [ROLE_LOCAL, ROLE_SINK, ROLE_DUMMY, ROLE_DUMMY]]


def expected_frames(role: int, end: int, local: int = 3) -> list[int]:
    return {ROLE_SINK: [0], ROLE_DUMMY: [end - 1], ROLE_LOCAL: list(range(max(0, end - local), end))}[role]


def test_dummy_forcing_classifies_a_constructed_attention_pattern():
    """At chunk 1 (frames 3-5) the clean pass's attention (the last one observed before the
    write) classifies the heads; from then on each head keeps what its role needs."""
    g = WIDE
    method = build_method(DummyForcingConfig(), g)
    method.write(marked_kv(g, 0), 0)
    for store in method.layers:
        assert all(head_frames(store, h) == [0, 1, 2] for h in range(g.heads))
    method.views(3)
    observe(method, PATTERN_P1, PATTERN_P0)  # a denoising pass with the opposite pattern ...
    observe(method, PATTERN_P0, PATTERN_P1)  # ... then the clean pass, which decides
    method.write(marked_kv(g, 3), 3)
    assert method.roles.tolist() == PATTERN_ROLES
    queries = g.frames_per_chunk * g.tokens_per_frame
    torch.testing.assert_close(method.head_mass[0], PATTERN_P0 / queries)
    torch.testing.assert_close(method.head_mass[1], PATTERN_P1 / queries)
    for end in range(6, 40, 3):
        for layer, store in enumerate(method.layers):
            for h in range(g.heads):
                assert head_frames(store, h) == expected_frames(PATTERN_ROLES[layer][h], end), (end, layer, h)
            sink = store.frame < 1
            assert (store.kind[sink] == KIND_SINK).all() and (store.kind[~sink] != KIND_SINK).all()
        view = method.views(end)[0]
        assert torch.equal(view.pos, method.layers[0].frame)  # absolute positions
        assert view.q_pos.tolist() == [[end, end + 1, end + 2]] * g.heads
        frames = sum(len(expected_frames(r, end)) for roles in PATTERN_ROLES for r in roles)
        assert method.stats().kv_bytes == frames * kv_bytes_per_frame(g)  # 4 x 1 + 2 x 1 + 2 x 3
        method.write(marked_kv(g, end), end)


def test_dummy_forcing_needs_the_attention_observer():
    method = build_method(DummyForcingConfig(), WIDE)
    method.write(marked_kv(WIDE, 0), 0)
    with pytest.raises(RuntimeError, match=r"no attention mass for layers \[0, 1\] at frame 3"):
        method.write(marked_kv(WIDE, 3), 3)


def test_dummy_forcing_rollout_keeps_what_each_role_needs(tiny_model):
    g = tiny_model.geometry
    config = DummyForcingConfig()
    config.check(g, 240)

    def check(method, rec):
        end = rec.frame_end
        for layer, store in enumerate(method.layers):
            for h in range(g.heads):
                if method.roles is None:  # before classification: the sink + the last chunk
                    assert end == 3 and head_frames(store, h) == [0, 1, 2]
                else:
                    assert head_frames(store, h) == expected_frames(int(method.roles[layer, h]), end)
        assert rec.kv_bytes == int(rec.tokens.sum()) * g.head_dim * 2 * 4
        for layer, view in enumerate(method.views(end)):
            assert torch.equal(view.pos, method.layers[layer].frame)
            assert int(view.pos.max()) < end and view.q_pos[:, 0].tolist() == [end] * g.heads

    method = build_method(config, g)
    out = generate(tiny_model, method, [(0.0, "a red ball")], 36, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=lambda rec: check(method, rec))
    assert torch.isfinite(out.frames).all()
    assert int((method.roles == ROLE_DUMMY).sum()) == 2  # half of 2 x 2 heads
    p0, p1 = method.head_mass
    assert bool((p0 > 0).all() and (p1 > 0).all() and (p0 + p1 < 1).all())  # means per query row


def test_dummy_forcing_budget_gives_the_rest_to_local_heads():
    """budget_frames B: the mean stored frames per head; here dummy and sink heads keep one
    frame each and the 2 local heads take the rest: (6 x 8 - 4 - 2) // 2 = 21 frames, i.e.
    exactly the KV bytes of a 6-frame sliding window."""
    g = WIDE
    config = DummyForcingConfig(budget_frames=6)
    config.check(g, 90)
    method = run_fed(config, g, 90, pattern=(PATTERN_P0, PATTERN_P1))
    assert method.local_frames == 21
    for layer, store in enumerate(method.layers):
        for h in range(g.heads):
            assert head_frames(store, h) == expected_frames(PATTERN_ROLES[layer][h], 90, local=21)
    window = run_fed(SlidingWindowConfig(budget_frames=6), g, 90)
    assert method.stats().kv_bytes == window.stats().kv_bytes == 6 * 8 * kv_bytes_per_frame(g)


@pytest.mark.parametrize("budget", [None, 16])
def test_dummy_forcing_on_the_toy_at_its_default_and_the_equal_budget(budget):
    """The toy's 16 heads: 8 dummy; at B = 16 the bytes stay within the budget (short of it by
    less than a frame per local head), at the default they are the published allocation."""
    g = TOY
    config = DummyForcingConfig(budget_frames=budget)
    config.check(g, 240)
    p0 = torch.linspace(0.01, 0.30, 16).view(4, 4)
    p1 = torch.linspace(0.30, 0.01, 16).view(4, 4).roll(3)
    method = run_fed(config, g, 90, pattern=(p0, p1))
    assert method.frames_written >= method.local_frames  # local heads hold their whole window
    roles = method.roles
    n_dummy, n_sink, n_local = (int((roles == r).sum()) for r in (ROLE_DUMMY, ROLE_SINK, ROLE_LOCAL))
    assert n_dummy == 8 and n_local > 0
    frames = n_dummy + n_sink + n_local * method.local_frames
    assert method.stats().kv_bytes == frames * kv_bytes_per_frame(g)
    if budget is None:
        assert method.local_frames == 3
    else:
        assert 16 * 16 - n_local < frames <= 16 * 16
        assert method.local_frames == (16 * 16 - n_dummy - n_sink) // n_local


@pytest.mark.parametrize("kwargs, expected", [
    (dict(dummy_fraction=1.5), "method.dummy_fraction=1.5: allowed: 0..1"),
    (dict(classify_chunk=0), "method.classify_chunk=0: the first chunk has no cache to measure"),
    (dict(positions="repacked"), "method.positions='repacked': dummy_forcing keeps absolute RoPE positions"),
    (dict(budget_frames=0), "method.budget_frames=0: sink and dummy heads keep 1 frame"),
    (dict(local_chunks=0), "method.local_chunks=0: allowed: >= 1"),
])
def test_dummy_forcing_bad_values_are_one_line_errors(kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        DummyForcingConfig(**kwargs)


def test_dummy_forcing_checks_against_the_geometry():
    with pytest.raises(ConfigError, match="method.sink_frames=3: frames after the sink .* allowed: < 3"):
        DummyForcingConfig(sink_frames=3).check(TOY, 240)
    with pytest.raises(ConfigError, match="method.budget_tokens=0: 0 frames a head"):
        DummyForcingConfig(budget_tokens=0).check(TOY, 240)
    with pytest.raises(ConfigError, match="durations: 1200 frames exceed the RoPE table"):
        DummyForcingConfig().check(TOY, 1200)


@pytest.mark.parametrize("name, config", [("rolling_sink", RollingSinkConfig()),
                                          ("dummy_forcing", DummyForcingConfig())])
def test_yaml_options_are_the_dataclass_defaults(name, config):
    (run,) = check_command_line([f"method={name}", "durations=[60]"], False)
    assert run.method == config
    (run,) = check_command_line([f"method={name}", "method.budget_frames=16", "durations=[60]"], False)
    assert run.method.budget_frames == 16
