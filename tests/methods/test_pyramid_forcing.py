"""Pyramid Forcing (methods/pyramid_forcing.py, methods/pyramid_profile.py): the Anchor / Wave /
Veil classifier on hand-made statistics, what each class keeps and reads chunk after chunk,
Veil's merged tokens, the clamped positions, KV bytes at the published allocation and at a
budget, the labels file and one-line config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from bench.models.toy import ToyConfig
from bench.preflight import check_command_line
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.tools.profile import profile_pyramid, toy_calibration
from core.errors import ConfigError
from kernels import LogitStats
from methods import build_method
from methods.base import KIND_MERGED, KIND_SINK
from methods.pyramid_forcing import ANCHOR, VEIL, WAVE, PyramidForcingConfig, merge_grid
from methods.pyramid_profile import (
    LogitProfiler,
    PyramidThresholds,
    classify_pyramid,
    dominant_bins,
    labels_json,
    read_pyramid_labels,
    write_pyramid_labels,
)

TOY = ToyConfig().geometry()  # the shipped toy: 4 x 4 heads, 16 tokens a frame, horizon 21, chunks of 3
TINY_G = ToyConfig(**TINY).geometry()  # 2 x 2 heads, horizon 9
TOY_LABELS = [["anchor", "wave", "veil", "anchor"], ["wave", "veil", "anchor", "anchor"],
              ["veil", "anchor", "wave", "anchor"], ["anchor", "anchor", "anchor", "wave"]]
TINY_LABELS = [["anchor", "wave"], ["veil", "anchor"]]


# -- the classifier -----------------------------------------------------------------------

def profiles(kind: str, D: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.arange(1, D + 1)
    if kind == "wave":  # period 20 / 3 frames around 0, like the toy's camera-wrap heads
        return 3 * np.cos(2 * np.pi * 3 * d / D) + 0.2 * rng.standard_normal(D)
    return 1.0 - 0.1 * d + 0.05 * rng.standard_normal(D)  # a decaying trend


def test_dominant_bin_finds_a_period_and_ignores_a_trend():
    d = np.arange(20)
    assert dominant_bins(np.cos(2 * np.pi * d / 5))[()] == 4  # period 5 = 20 / 4
    assert dominant_bins(np.stack([0.3 * d + np.cos(2 * np.pi * d / 4), 5.0 - 0.2 * d])).tolist()[0] == 5


def test_classifier_labels_each_class_by_the_published_rule():
    """[1, 6] heads: positive-dominant, negative-dominant, mixed periodic, mixed periodic but
    unstable across rollouts, mixed trends (the mean-score fallback both ways)."""
    sign = np.array([[0.9, 0.1, 0.5, 0.5, 0.5, 0.5]])
    mean = np.array([[2.0, -2.0, 0.1, -0.1, 0.4, -0.4]])
    kinds = ["trend", "trend", "wave", "wave", "trend", "trend"]
    pooled = np.stack([profiles(k) for k in kinds])[None]  # [1, 6, 20]
    rollouts = np.stack([np.stack([profiles(k, seed=r) for k in kinds])[None] for r in range(4)])  # [4, 1, 6, 20]
    rollouts[:, 0, 3] = np.stack([profiles("trend", seed=r) for r in range(4)])  # head 3: no stable period
    labels = classify_pyramid(sign, mean, pooled, rollouts)
    assert labels.tolist() == [["anchor", "veil", "wave", "veil", "anchor", "veil"]]
    # a periodic head is still Anchor / Veil when its signs are dominant
    assert classify_pyramid(np.array([[0.8, 0.2]]), np.zeros((1, 2)), pooled[:, [2, 2]],
                            rollouts[:, :, [2, 2]]).tolist() == [["anchor", "veil"]]


def test_classifier_thresholds_are_inclusive_and_configurable():
    pooled = np.stack([profiles("trend")] * 4)[None]
    rollouts = np.stack([pooled] * 2)
    sign = np.array([[0.7, 0.3, 0.69, 0.31]])
    mean = np.array([[-1.0, 1.0, -1.0, 1.0]])
    assert classify_pyramid(sign, mean, pooled, rollouts).tolist() == [["anchor", "veil", "veil", "anchor"]]
    strict = PyramidThresholds(anchor_sign_rate=0.9, veil_sign_rate=0.1)
    assert classify_pyramid(sign, mean, pooled, rollouts, strict).tolist() == [["veil", "anchor", "veil", "anchor"]]
    wave = np.stack([profiles("wave")] * 4)[None]
    agree = np.stack([wave, wave, np.stack([profiles("trend")] * 4)[None]])  # 2 of 3 rollouts agree
    half = np.full((1, 4), 0.5)
    assert set(classify_pyramid(half, mean, wave, agree).ravel()) == {"wave"}
    assert set(classify_pyramid(half, mean, wave, agree, PyramidThresholds(period_agreement=0.7)).ravel()) == {
        "veil", "anchor"}
    assert set(classify_pyramid(half, mean, wave, agree, PyramidThresholds(min_cycles=4)).ravel()) != {"wave"}
    with pytest.raises(ConfigError, match="veil_sign_rate=0.8: must be below anchor_sign_rate=0.7"):
        PyramidThresholds(veil_sign_rate=0.8)


def marked_kv(g, chunk_start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One chunk's K/V per layer [1, H, F * tpf, D]: key channels carry (frame, token, head, layer)."""
    n = g.frames_per_chunk * g.tokens_per_frame
    k = torch.zeros(1, g.heads, n, g.head_dim)
    k[..., 0] = (chunk_start + torch.arange(n) // g.tokens_per_frame).float()
    k[..., 1] = (torch.arange(n) % g.tokens_per_frame).float()
    k[..., 2] = torch.arange(g.heads).float()[:, None]
    out = []
    for layer in range(g.layers):
        kl = k.clone()
        kl[..., 3] = layer
        out.append((kl, 2 * kl))
    return out


def test_logit_profiler_records_frame_level_means_by_distance():
    """Fed statistics: entries of (head h, frame f) got logit sum such that the frame-level mean
    for query frame q is 10 h + f - q; positive counts are summed by distance."""
    g = TINY_G
    profiler = LogitProfiler(g)
    for s in (0, 3):
        profiler.write(marked_kv(g, s), s)
    store = profiler.layers[1]
    rows = g.tokens_per_frame  # B x rows of one query frame
    mean = torch.stack([10.0 * store.head + store.frame - q for q in range(3)])  # [3, N]
    profiler.observe_logits(1, LogitStats((mean * rows).float(), torch.full(mean.shape, 2, dtype=torch.int32)))
    for h in range(2):
        for f in range(6):
            for q in range(3):
                d = 6 + q - f
                expected = [10.0 * h + f - q for ff in range(6) for qq in range(3) if 6 + qq - ff == d]
                assert profiler.frame_sum[1, h, d] == pytest.approx(sum(expected))
                assert profiler.frame_count[1, h, d] == len(expected)
    assert profiler.token_positive[1].sum() == 2 * 3 * store.head.numel()
    assert profiler.frame_count[0].sum() == 0


def test_profile_pyramid_on_the_tiny_backbone_writes_a_labels_file(tiny_model, tmp_path):
    """The calibration loop end to end (1 prompt x 1 seed, 1 step, the 9-frame horizon), through
    the kernels' logit statistics; the labels file round-trips."""
    result = profile_pyramid(tiny_model, ["red circle, static camera"], [0], FlowSampler(steps=1))
    assert result["labels"].shape == (2, 2) and set(result["labels"].ravel()) <= {"anchor", "wave", "veil"}
    stats = result["stats"]
    assert stats["logit_by_distance"].shape == (2, 2, 8) and stats["rollout_logit_by_distance"].shape == (1, 2, 2, 8)
    assert bool((stats["records"] > 0).all()) and bool(((stats["sign_rate"] >= 0) & (stats["sign_rate"] <= 1)).all())
    path = tmp_path / "labels.json"
    write_pyramid_labels(path, labels_json("tiny", result))
    data = read_pyramid_labels(path)
    assert data["roles"] == result["labels"].tolist() and sum(data["counts"].values()) == 4
    assert PyramidForcingConfig(role_map=str(path)).head_labels(g := tiny_model.geometry).shape == (g.layers, g.heads)


def test_the_shipped_toy_labels_are_a_valid_labels_file():
    data = read_pyramid_labels("results/head_roles/toy_pyramid.json")
    assert np.array(data["roles"]).shape == (4, 4) and sum(data["counts"].values()) == 16
    assert data["label_codes"] == {"anchor": 1, "wave": -1, "veil": 2}
    prompts, seeds = toy_calibration(prompts=8, seeds=2, rng_seed=0)  # what the file was profiled on
    assert data["calibration"] == [{"prompt": p, "seed": s} for p in prompts for s in seeds]
    assert data["profile"] == {"prompts": 8, "seeds": 2, "rng_seed": 0, "steps": 1, "frames": 21}


@pytest.mark.parametrize("content, expected", [
    (b"\x00\x01", "binary content"),
    (b"{not json", "not valid JSON"),
    (json.dumps({"roles": [["anchor", "local"]]}).encode(), "no valid \"roles\" entry"),
])
def test_bad_labels_files_are_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as info:
        PyramidForcingConfig(role_map=str(path)).check(TOY, 240)
    assert "\n" not in str(info.value)


# -- the cache ------------------------------------------------------------------------------

def feed(config, g, frames: int, check=None):
    """Roll the method over ``frames`` frames of marked K/V without a backbone."""
    method = build_method(config, g)
    for s in range(0, frames, g.frames_per_chunk):
        if check is not None:
            check(method, s)
        method.write(marked_kv(g, s), s)
    return method


def frames_of(store, h: int, merged: bool = False) -> list[int]:
    sl = store.head_slice(h)
    kinds = store.kind[sl]
    return sorted(set(store.frame[sl][(kinds == KIND_MERGED) == merged].tolist()))


def view_frames(method, s: int, layer: int, h: int) -> tuple[list[int], list[int]]:
    """(raw frames, merged block times) a head reads for the chunk at ``s``."""
    store = method.layers[layer]
    seen = method.visible(layer, store, s)
    part = store.filtered(seen)
    return frames_of(part, h), frames_of(part, h, merged=True)


# what each class reads and stores at chunk 24 and 30 (published parameters, F = 3): module doc
VISIBLE = {
    (ANCHOR, 24): ([0, 1, 2, 6, 12, 18, 23], []),
    (ANCHOR, 30): ([0, 1, 2, 6, 12, 18, 24, 29], []),
    (WAVE, 24): ([0, 1, 2, 6, 7, 8, 12, 13, 14, 18, 19, 20, 23], []),
    (WAVE, 30): ([0, 6, 7, 8, 12, 13, 14, 18, 19, 20, 24, 25, 26, 29], []),
    (VEIL, 24): ([0, 1, 2, 23], [9, 13, 17]),  # blocks 8-11, 12-15, 16-19 (20-23 not complete before 23)
    (VEIL, 30): ([0, 1, 2, 29], [13, 17, 21, 25]),
}
STORED = {
    (ANCHOR, 24): ([0, 1, 2, 6, 12, 18, 23], []),
    (ANCHOR, 30): ([0, 1, 2, 6, 12, 18, 24, 29], []),
    (WAVE, 24): (list(range(24)), []),
    (WAVE, 30): ([0, *range(6, 30)], []),
    (VEIL, 24): ([0, 1, 2, 23], [9, 13, 17, 21]),  # block 20-23 holds 20-22 (hidden)
    (VEIL, 30): ([0, 1, 2, 29], [13, 17, 21, 25, 29]),  # block 28-31 holds 28 (hidden)
}


def test_each_class_keeps_and_reads_the_published_frames():
    """The toy's geometry (Wan's latent timing): sink, middle and recent per class, chunk by chunk."""
    config = PyramidForcingConfig(labels=TOY_LABELS)
    config.check(TOY, 240)

    def check(method, s):
        for layer, names in enumerate(TOY_LABELS):
            for h, name in enumerate(names):
                cls = {"anchor": ANCHOR, "wave": WAVE, "veil": VEIL}[name]
                store = method.layers[layer]
                if (cls, s) in VISIBLE:
                    assert view_frames(method, s, layer, h) == VISIBLE[cls, s], (cls, s)
                    assert (frames_of(store, h), frames_of(store, h, True)) == STORED[cls, s], (cls, s)
                sink = {ANCHOR: 3, WAVE: 1, VEIL: 3}[cls]
                sl = store.head_slice(h)
                is_sink = (store.kind[sl] != KIND_MERGED) & (store.frame[sl] < sink)
                assert bool((store.kind[sl][is_sink] == KIND_SINK).all())
                assert frames_of(store, h)[:min(sink, s)] == list(range(min(sink, s)))  # never evicted

    feed(config, TOY, 33, check)


def test_rollout_on_the_tiny_backbone_keeps_the_same_frames(tiny_model):
    """The fast configuration (horizon 9: window 6..9) through a real rollout: every chunk the
    stored frames follow the rules (same frames as fed K/V), views are finite and in the window."""
    g = tiny_model.geometry
    config = PyramidForcingConfig(labels=TINY_LABELS, sink_time_clamp_min=6, sink_time_clamp_max=9)
    config.check(g, 240)
    method, fed = build_method(config, g), build_method(config, g)
    seen = []

    def check(rec):
        fed.write(marked_kv(g, rec.frame_start), rec.frame_start)  # the same chunk as marked K/V
        for layer in range(g.layers):
            for h in range(g.heads):
                for merged in (False, True):
                    assert frames_of(method.layers[layer], h, merged) == frames_of(fed.layers[layer], h, merged)
        for view in method.views(rec.frame_end):
            assert int(view.pos.max()) <= 9 and int(view.q_pos.max()) <= 9 and int(view.pos.min()) >= 0
        seen.append(rec.kv_bytes)

    out = generate(tiny_model, method, [(0.0, "a red ball")], 27, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=check)
    assert torch.isfinite(out.frames).all()
    assert seen[-1] == fed.stats().kv_bytes
    assert frames_of(method.layers[0], 0) == [0, 1, 2, 6, 12, 18, 24, 26]  # anchor: sink, stride FIFO of 4, recent
    assert frames_of(method.layers[1], 0) == [0, 1, 2, 26]  # veil: sink, recent; merged blocks 8-11 .. 24-27
    assert frames_of(method.layers[1], 0, True) == [9, 13, 17, 21, 25]


def test_veil_merges_blocks_of_four_frames_and_two_by_two_patches():
    """Merged tokens: the mean of the 16 keys (4 frames x a 2 x 2 patch) and values, weight 16
    (a block being filled: 4 per folded frame), at the block median, spatial = top-left token;
    the view gives them log(weight) logit bias (merge_bias) or none."""
    g = TOY
    group, first = merge_grid(g, 2)
    assert first.tolist() == [0, 2, 8, 10] and group.view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1],
                                                                              [2, 2, 3, 3], [2, 2, 3, 3]]
    method = feed(PyramidForcingConfig(labels=TOY_LABELS), g, 30)
    store = method.layers[0]
    sl = store.head_slice(2)  # a Veil head
    merged = (store.kind[sl] == KIND_MERGED).nonzero().flatten() + sl.start
    assert len(merged) == 5 * 4  # 4 blocks + the one being filled, 4 patches each
    for i in merged.tolist():
        b, t = int(store.frame[i]) // 4, int(store.spatial[i])
        frames = [f for f in range(4 * b, 4 * b + 4) if 3 <= f < 29]
        tokens = [u for u in range(16) if group[u] == group[t]]
        assert t == min(tokens) and store.weight[i] == 4 * len(frames)
        assert store.frame[i] == 4 * b + 1
        assert store.k[0, i, 0] == pytest.approx(sum(frames) / len(frames))  # mean frame of the keys merged
        assert store.k[0, i, 1] == pytest.approx(sum(tokens) / 4)  # mean token index of the patch
        assert store.k[0, i, 2] == 2 and store.k[0, i, 3] == 0  # its own head and layer
        torch.testing.assert_close(store.v[0, i], 2 * store.k[0, i])
    view = method.views(30)[0]
    vs = view.head_slice(2)
    weights = torch.exp(view.bias[vs])
    assert sorted(set(weights.tolist())) == [1.0, 16.0]  # raw entries 1, complete blocks 16
    assert method.views(30)[0].bias is not None
    plain = feed(PyramidForcingConfig(labels=TOY_LABELS, merge_bias=False), g, 30)
    assert plain.views(30)[0].bias is None


def test_positions_are_clamped_into_the_trained_window():
    """window_clamp (18, 21) from the chunk's last frame: before frame 21 everything at its own
    frame (the sink and the dynamic-RoPE middle at 0); later, shifted so that the sink and the
    cyclic / stride frames sit at 0 = 21 frames before the chunk's last frame, recent and merged
    frames at their distance; 60 frames (3 horizons) stay inside [0, 21]."""
    method = feed(PyramidForcingConfig(labels=TOY_LABELS), TOY, 60, check=lambda m, s: check_window(m, s))
    assert method.frames_written == 60


def check_window(method, s, exact: bool = True):
    for view in method.views(s):
        if view.pos.numel():
            assert 0 <= int(view.pos.min()) and int(view.pos.max()) <= 21
        assert int(view.q_pos.max()) <= 21
        if s == 12:
            assert view.q_pos[0].tolist() == [12, 13, 14]
        if s >= 21:
            assert view.q_pos[0].tolist() == [19, 20, 21]
    if exact and s in (12, 30):  # the published allocation
        layer = 0
        store = method.layers[layer]
        part = store.filtered(method.visible(layer, store, s))
        pos, _ = method.positions(layer, part, s)
        for h, expected in ((0, {12: [0, 0, 0, 0, 11], 30: [0, 0, 0, 0, 0, 0, 0, 18]}),  # anchor: stride at the sink's
                            (2, {12: [0, 0, 0, 5, 11], 30: [0, 0, 0, 2, 6, 10, 14, 18]})):  # veil: merged at block medians
            sl = part.head_slice(h)
            order = torch.argsort(part.frame[sl] * 2 + (part.kind[sl] == KIND_MERGED), stable=True)
            got = sorted(set(zip(part.frame[sl][order].tolist(), pos[sl][order].tolist())))
            assert [p for _, p in got] == expected[s], (h, s, got)


def kv_bytes_per_frame(g) -> int:
    return 2 * g.tokens_per_frame * g.head_dim * 4  # K + V, float32, one head


def test_kv_bytes_at_the_published_allocation():
    """At frame 42: Anchor 3 + 4 + 1 frames, Wave 1 + 24, Veil 3 + 1 frames + 5 blocks x 4
    merged tokens (24-39 complete, 40-43 holding 40); never above the allocation's bound."""
    g = TOY
    bound = []
    method = feed(PyramidForcingConfig(labels=TOY_LABELS), g, 42,
                  check=lambda m, s: bound.append(m.stats().kv_bytes <= m.alloc.bound_entries * kv_bytes_per_frame(g)
                                                  / g.tokens_per_frame))
    assert all(bound)
    counts = {c: sum(row.count(n) for row in TOY_LABELS) for c, n in ((ANCHOR, "anchor"), (WAVE, "wave"), (VEIL, "veil"))}
    entries = (counts[ANCHOR] * 8 + counts[WAVE] * 25 + counts[VEIL] * 4) * g.tokens_per_frame + counts[VEIL] * 5 * 4
    assert method.stats().kv_bytes == entries * kv_bytes_per_frame(g) // g.tokens_per_frame
    assert method.alloc.bound_entries == (counts[ANCHOR] * 8 + counts[WAVE] * 26 + counts[VEIL] * 4) * 16 + counts[VEIL] * 20


@pytest.mark.parametrize("budget", [6, 16])
def test_a_budget_scales_the_middles_and_is_never_exceeded(budget):
    """B frames a head on average: every middle capacity scaled by one factor; KV bytes at every
    chunk of a 45-frame rollout at most B frames a head; positions still in the window."""
    g = TOY
    config = PyramidForcingConfig(labels=TOY_LABELS, budget_frames=budget)
    config.check(g, 480)
    limit = budget * g.layers * g.heads * kv_bytes_per_frame(g)
    seen = []
    method = feed(config, g, 45, check=lambda m, s: seen.append(m.stats().kv_bytes) or check_window(m, s, exact=False))
    a = method.alloc
    assert max(seen) <= limit and a.bound_entries <= budget * g.kv_entries_per_frame
    lam = a.bucket_cap / 4
    assert a.stride_capacity == math.floor(lam * 4 + 1e-9) and a.merge_capacity == math.floor(lam * 4 + 1e-9)
    published = PyramidForcingConfig(labels=TOY_LABELS).allocation(g, method.labels).bound_entries  # ~12 frames a head
    assert a.bucket_cap < 4 if budget * g.kv_entries_per_frame < published else a.bucket_cap >= 4
    bigger = config.stored_bound(g, method.labels, a.bucket_cap + 1, a.bucket_cap + 1, a.bucket_cap + 1)
    assert bigger > budget * g.kv_entries_per_frame  # the largest common scale
    tokens = PyramidForcingConfig(labels=TOY_LABELS, budget_tokens=budget * g.kv_entries_per_frame + 5)
    assert tokens.allocation(g, method.labels) == a


@pytest.mark.parametrize("kwargs, expected", [
    (dict(cyclic_period=0), "method.cyclic_period=0: allowed: >= 1"),
    (dict(stride_capacity=-1), "method.stride_capacity=-1: allowed: >= 0"),
    (dict(sink_time_clamp_min=22), "method.sink_time_clamp_max=21: allowed: >= method.sink_time_clamp_min=22"),
    (dict(budget_frames=-2), "method.budget_frames=-2: allowed: >= 0, or null"),
    (dict(labels=[["anchor", "local"]]), "method.labels=.*allowed: a list of layers, each a list of anchor, wave, veil"),
])
def test_bad_values_are_one_line_errors(kwargs, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        PyramidForcingConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(labels=TOY_LABELS, sink_time_clamp_max=22), "method.sink_time_clamp_max=22: .*allowed: <= the trained "
                                                      "horizon of 21 frames"),
    (dict(labels=TOY_LABELS, wave_recent_frames=2), "method.wave_recent_frames=2: the recent pool holds the chunk"),
    (dict(labels=TINY_LABELS), "method.labels=inline labels has 2 x 2 heads; the model has 4 x 4"),
    (dict(labels=TOY_LABELS, budget_frames=3), "method.budget_frames=3: the sinks and recent pools alone need "
                                               "3.5 frames a head on average; allowed: >= 4 frames a head"),
    (dict(labels=TOY_LABELS, budget_tokens=100), "method.budget_tokens=100: the sinks and recent pools"),
])
def test_geometry_checks_are_one_line_errors(kwargs, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        PyramidForcingConfig(**kwargs).check(TOY, 240)
    assert "\n" not in str(info.value)


def test_yaml_options_are_the_dataclass_defaults():
    (run,) = check_command_line(["method=pyramid_forcing", "durations=[60]"], False)
    assert run.method == PyramidForcingConfig()
    (run,) = check_command_line(["method=pyramid_forcing", "method.budget_frames=16", "durations=[60]"], False)
    assert run.method.budget_frames == 16
