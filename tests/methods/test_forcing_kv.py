"""Invariants of the published peer forcing_kv (methods/forcing_kv.py): the offline static /
dynamic classifier, what each head keeps per chunk, the dynamic slot's choice of the least
similar segments, absolute positions, KV bytes at the published allocation and at a budget,
and one-line config errors."""

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
from core.errors import ConfigError
from core.paths import REPO_DIR
from methods import build_method
from methods.base import KIND_SINK
from methods.forcing_kv import ForcingKVConfig, classify_static, select_segments, static_scores

TOY = ToyConfig().geometry()  # the shipped toy: 4 x 4 heads, 16 tokens a frame, chunks of 3, horizon 21
THREE = ToyConfig(**{**TINY, "layers": 3, "heads": 4}).geometry()  # 3 x 4 heads, horizon 9

STATIC_MASS = [0.9, 0.05, 0.05, 0.0, 0.0]  # score 0.95
DYNAMIC_MASS = [0.3, 0.1, 0.3, 0.3, 0.0]  # score 0.4


def role_map(path, static: list[list[bool]]) -> str:
    """A profile whose heads are static (True) or dynamic by their mass_by_distance."""
    mass = [[STATIC_MASS if s else DYNAMIC_MASS for s in layer] for layer in static]
    path.write_text(json.dumps({"model": "toy", "roles": [["local"] * len(layer) for layer in static],
                                "stats": {"sink_mass": [[0.0] * len(layer) for layer in static],
                                          "mass_by_distance": mass}}))
    return str(path)


def head_frames(store, h: int) -> list[int]:
    return sorted(set(store.frame[store.head_slice(h)].tolist()))


def kv_bytes_per_frame(g) -> int:
    return 2 * g.tokens_per_frame * g.head_dim * 4


def slot_cells(store, h: int, first: int, C: int = 3, seg_tokens: int = 4) -> set[tuple[int, int]]:
    """(frame - first, segment) of head h's slot entries; every segment must be whole."""
    s = store.head_slice(h)
    frame, spatial = store.frame[s], store.spatial[s]
    slot = (frame >= first) & (frame < first + C)
    cells = {}
    for f, t in zip(frame[slot].tolist(), spatial[slot].tolist()):
        cells.setdefault((f - first, t // seg_tokens), []).append(t % seg_tokens)
    assert all(sorted(t) == list(range(seg_tokens)) for t in cells.values())
    return set(cells)


# -- the offline classifier -------------------------------------------------------------------

def test_static_score_is_the_last_four_key_frames_over_all_but_the_first_frames():
    """Distance 0 is the 3-frame chunk, distance 1 the frame before it: the last 4 key frames.
    The sink statistic leaves the denominator; 0.8 exactly is static."""
    mass = np.array([[
        [0.5, 0.25, 0.125, 0.0625, 0.0625],  # 0.75 / (1 - 0.0625) = 0.8: the threshold edge
        [0.5, 0.25, 0.125, 0.0625, 0.0625],  # the same with no sink mass: 0.75 < 0.8
        [0.25, 0.0, 0.75, 0.0, 0.0],  # mass at distance 2 is not among the last 4 key frames
        [0.5, 0.0, 0.0, 0.0, 0.5],  # half on old frames, all of it the sink: 1.0
    ]])
    sink = np.array([[0.0625, 0.0, 0.0, 0.5]])
    scores = static_scores(mass, sink, frames_per_chunk=3)
    np.testing.assert_allclose(scores, [[0.8, 0.75, 0.25, 1.0]])
    assert classify_static(scores).tolist() == [[True, False, False, True]]
    assert classify_static(np.nextafter(scores, 0)).tolist() == [[False, False, False, True]]
    # the last 5 key frames reach distance 2; a chunk of 2 frames makes 4 key frames reach distance 2 too
    np.testing.assert_allclose(static_scores(mass, sink, 3, last_frames=5)[0, 2], 1.0)
    np.testing.assert_allclose(static_scores(mass, sink, 2, last_frames=4), static_scores(mass, sink, 3, 5))
    assert classify_static(scores, threshold=0.9).tolist() == [[False, False, False, True]]


def test_labels_come_from_the_role_maps_profile(tmp_path):
    g = THREE
    static = [[True, False, True, False], [True, False, False, True], [False, True, False, True]]
    config = ForcingKVConfig(role_map=role_map(tmp_path / "p.json", static))
    labels, dynamic = config.heads(g)
    assert labels.tolist() == static
    assert dynamic.tolist() == [[False] * 4, [False, True, True, False], [True, False, True, False]]  # layer 0 never split
    assert ForcingKVConfig(roles="all_static").heads(g)[1].sum() == 0
    assert ForcingKVConfig(roles="all_dynamic").heads(g)[1].tolist() == [[False] * 4] + [[True] * 4] * 2


def test_the_committed_toy_profile():
    """results/head_roles/toy.json: the score of each head is its profiled mass on distances 0-1
    over the mass off the profile's sink frames; 6 of 16 heads static."""
    profile = json.loads((REPO_DIR / "results/head_roles/toy.json").read_text())
    mass, sink = np.array(profile["stats"]["mass_by_distance"]), np.array(profile["stats"]["sink_mass"])
    config = ForcingKVConfig()
    np.testing.assert_allclose(config.scores(TOY), mass[..., :2].sum(-1) / (mass.sum(-1) - sink))
    labels, dynamic = config.heads(TOY)
    assert labels.sum() == 6 and not labels[0].any()
    assert dynamic[0].sum() == 0 and dynamic[1:].sum() == 6 and dynamic[1].any()


# -- the dynamic slot -------------------------------------------------------------------------

def test_select_segments_keeps_the_least_similar_segments():
    """Keys of 3 candidate frames + the next one, 4 segments of 4 tokens: token keys turn by a
    known angle from one frame to the next, so the cosine (and the choice) is known."""
    torch.manual_seed(0)
    angle = torch.rand(3, 4) * 3.0  # [C, segments] turn to the next frame, distinct
    theta = torch.cat((torch.zeros(1, 4), angle.cumsum(0)))  # [C + 1, segments]
    phase = torch.rand(16) * 6.28  # per token a random start; channels 2.. stay 0
    keys = torch.zeros(4, 16, 10)
    t_theta = theta.repeat_interleave(4, dim=1) + phase  # [C + 1, tokens]
    keys[..., 0], keys[..., 1] = torch.cos(t_theta), torch.sin(t_theta)
    keep, scores = select_segments(keys * 3.0, segments=4, keep=4)  # scale does not matter
    torch.testing.assert_close(scores, torch.cos(angle))
    expected = torch.zeros(12, dtype=torch.bool)
    expected[torch.argsort(angle.flatten(), descending=True)[:4]] = True
    assert torch.equal(keep.flatten(), expected)
    # identical next frames everywhere but one segment: that one is the least similar
    flat = torch.randn(4, 16, 6)
    flat[1:] = flat[0]
    flat[2, 8:12] = -flat[1, 8:12]
    keep, scores = select_segments(flat, segments=4, keep=1)
    assert keep.nonzero().tolist() == [[1, 2]] and scores[1, 2] == pytest.approx(-1.0)
    # ties go to the earlier frame and segment
    assert select_segments(torch.ones(4, 16, 3), 4, 5)[0].flatten().nonzero().flatten().tolist() == [0, 1, 2, 3, 4]


def turning_kv(g, chunk_start: int, turns: dict[tuple[int, int], torch.Tensor]):
    """One chunk's K/V per layer, [1, H, F * tpf, D]: the keys of (layer, head) turn from frame
    f to f + 1 by ``turns[layer, head][f, segment]`` in channels 0-1; values mark (frame,
    spatial, head, layer)."""
    F, tpf, P = g.frames_per_chunk, g.tokens_per_frame, 4
    n = F * tpf
    frames = chunk_start + torch.arange(n) // tpf
    segment = (torch.arange(n) % tpf) // (tpf // P)
    out = []
    for layer in range(g.layers):
        k, v = torch.zeros(1, g.heads, n, g.head_dim), torch.zeros(1, g.heads, n, g.head_dim)
        for h in range(g.heads):
            theta = torch.cat((torch.zeros(1, P), turns[layer, h].cumsum(0)))[frames, segment]
            k[0, h, :, 0], k[0, h, :, 1] = torch.cos(theta), torch.sin(theta)
            v[0, h, :, 0], v[0, h, :, 1], v[0, h, :, 2], v[0, h, :, 3] = frames, torch.arange(n) % tpf, h, layer
        out.append((k, v))
    return out


def test_the_slot_holds_the_least_similar_segments_chosen_at_layer_1_for_every_layer(tmp_path):
    """3 layers x 4 heads. Layer 1's dynamic heads turn by A (the answer: per write the 4 of
    the 12 candidate segments with the largest turn); its static heads turn by pi - A (if they
    were counted the concatenated cosines would all be 0) and layer 2 turns by the reverse of
    A (its own choice would differ): every split layer's dynamic heads keep layer 1's choice."""
    g = THREE
    static = [[True, False, True, False], [True, False, False, True], [False, True, False, True]]
    config = ForcingKVConfig(role_map=role_map(tmp_path / "p.json", static))
    config.check(g, 90)
    gen = torch.Generator().manual_seed(1)
    A = torch.rand(40, 4, generator=gen) * 3.0 + 0.1  # [frames, segments]
    turns = {(layer, h): A for layer in range(3) for h in range(4)}
    turns.update({(1, 0): math.pi - A, (1, 3): math.pi - A})
    turns.update({(2, h): 3.2 - A for h in range(4)})
    method = build_method(config, g)
    for s in range(0, 36, 3):
        method.write(turning_kv(g, s, turns), s)
        end = s + 3
        for layer, store in enumerate(method.layers):
            for h in range(g.heads):
                frames = head_frames(store, h)
                if end <= 6 or layer == 0 or static[layer][h]:  # before the slot, unsplit, static
                    assert frames == [0, end - 1], (end, layer, h)
                    continue
                first = end - 4  # the frames that left the 1-frame window: end-4..end-2
                assert method.slot_first == first
                expected = set(torch.argsort(A[first:first + 3].flatten(), descending=True)[:4].tolist())
                assert slot_cells(store, h, first) == {divmod(i, 4) for i in expected}, (end, layer, h)
                assert {0, end - 1} <= set(frames) <= {0, first, first + 1, first + 2, end - 1}
                marks = store.v[0, store.head_slice(h)]  # the stored values are the source entries
                assert torch.equal(marks[:, 0].long(), store.frame[store.head_slice(h)])
                assert torch.equal(marks[:, 1].long(), store.spatial[store.head_slice(h)])
                assert (marks[:, 2] == h).all() and (marks[:, 3] == layer).all()
            sink = store.frame < 1
            assert (store.kind[sink] == KIND_SINK).all() and (store.kind[~sink] != KIND_SINK).all()
        if end > 6:
            assert int(method.selected.sum()) == 4
            assert float(method.segment_scores[method.selected].max()) < float(method.segment_scores[~method.selected].min())


def test_rollout_on_the_tiny_backbone_keeps_what_each_head_needs(tiny_model, tmp_path):
    """Layer 0 unsplit; layer 1: head 0 static (sink + newest frame), head 1 dynamic (sink +
    one frame of segments from the 3 frames before the newest + the newest). Positions are the
    frames' own (absolute)."""
    g = tiny_model.geometry
    config = ForcingKVConfig(role_map=role_map(tmp_path / "p.json", [[True, False], [True, False]]))
    config.check(g, 240)
    per_frame = kv_bytes_per_frame(g)

    def check(method, rec):
        end = rec.frame_end
        for layer, store in enumerate(method.layers):
            for h in range(g.heads):
                frames = head_frames(store, h)
                if end <= 6 or (layer, h) != (1, 1):
                    assert frames == [0, end - 1], (end, layer, h)
                else:
                    cells = slot_cells(store, h, end - 4)
                    assert cells == {tuple(c) for c in method.selected.nonzero().tolist()} and len(cells) == 4
                    assert len(store.frame[store.head_slice(h)]) == 3 * g.tokens_per_frame
        frames = 8 if end <= 6 else 9  # 4 heads x 2 frames, + one frame of segments
        assert rec.kv_bytes == frames * per_frame and int(rec.tokens.sum()) == frames * g.tokens_per_frame
        for layer, view in enumerate(method.views(end)):
            assert torch.equal(view.pos, method.layers[layer].frame)
            assert int(view.pos.max()) < end and int(view.pos.min()) >= 0
            assert view.q_pos.tolist() == [[end, end + 1, end + 2]] * g.heads

    method = build_method(config, g)
    out = generate(tiny_model, method, [(0.0, "a red ball")], 24, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=lambda rec: check(method, rec))
    assert torch.isfinite(out.frames).all()
    scores = method.segment_scores
    assert float(scores[method.selected].max()) <= float(scores[~method.selected].min())


# -- KV bytes ---------------------------------------------------------------------------------

def run_fed(config, g, frames: int, check=None):
    """Roll a method over ``frames`` frames of random K/V without a backbone."""
    method = build_method(config, g)
    gen = torch.Generator().manual_seed(0)
    n = g.frames_per_chunk * g.tokens_per_frame
    for s in range(0, frames, g.frames_per_chunk):
        kv = [(torch.randn(1, g.heads, n, g.head_dim, generator=gen),) * 2 for _ in range(g.layers)]
        method.write(kv, s)
        if check is not None:
            check(method, s + g.frames_per_chunk)
    return method


def test_published_allocation_on_the_toy_profile():
    """Unsplit layer 0: 4 x (sink + 1); 6 static heads x 2; 6 dynamic heads x 3: 38 frames."""
    config = ForcingKVConfig()
    config.check(TOY, 240)
    seen = {}

    def check(method, end):
        seen[end] = method.stats().kv_bytes // kv_bytes_per_frame(TOY)

    method = run_fed(config, TOY, 60, check)
    assert seen[3] == seen[6] == 32 and all(seen[e] == 38 for e in range(9, 61, 3))
    for layer in range(4):
        for h in range(4):
            kept = head_frames(method.layers[layer], h)
            assert kept[0] == 0 and kept[-1] == 59 and len(kept) <= 5
            assert (len(kept) > 2) == bool(method.dynamic[layer, h])


@pytest.mark.parametrize("budget", [dict(budget_frames=16), dict(budget_tokens=16 * TOY.kv_entries_per_frame + 5)])
def test_a_budget_widens_the_dynamic_and_unsplit_windows_and_is_never_exceeded(budget):
    """B = 16 frames a head on the toy profile: 28 fixed frames (4 sinks, 6 static x 2, 6
    dynamic x (sink + slot)) leave (256 - 28) // 10 = 22 recent frames to the 10 dynamic and
    unsplit heads: 248 <= 256 frames, after every chunk."""
    config = ForcingKVConfig(**budget)
    config.check(TOY, 240)
    limit = 16 * TOY.layers * TOY.heads * kv_bytes_per_frame(TOY)

    def check(method, end):
        assert method.stats().kv_bytes <= limit, end

    method = run_fed(config, TOY, 90, check)
    assert method.alloc.dynamic_window == method.alloc.unsplit_window == 22
    assert method.stats().kv_bytes == 248 * kv_bytes_per_frame(TOY)
    recent = list(range(90 - 22, 90))
    for h in range(4):
        assert head_frames(method.layers[0], h) == [0] + recent
        assert head_frames(method.layers[2], h) == [0, 89]  # all static
        store = method.layers[3]
        assert set(head_frames(store, h)) - {0, *recent} <= {65, 66, 67}  # the slot: frames that left the window
        assert len(store.frame[store.head_slice(h)]) == (1 + 1 + 22) * TOY.tokens_per_frame


# -- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    (dict(retention=0.5), r"method.retention=0.5: keeps round\(3 x 4 x 0.5\) = 6 candidate segments but the slot holds 1 x 4"),
    (dict(positions="repacked"), "method.positions='repacked': forcing_kv keeps absolute RoPE positions"),
    (dict(roles="shuffled"), "method.roles='shuffled': allowed: profiled, all_static, all_dynamic"),
    (dict(static_threshold=1.5), "method.static_threshold=1.5: allowed: 0..1"),
    (dict(selection_layer=0), r"method.selection_layer=0: the first 1 layer\(s\) are never split"),
    (dict(dynamic_recent_frames=0), "method.dynamic_recent_frames=0: allowed: >= 1"),
    (dict(budget_frames=-1), "method.budget_frames=-1: allowed: >= 0, or null"),
])
def test_bad_values_are_one_line_errors(kwargs, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        ForcingKVConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, max_frames, expected", [
    (dict(segments=6), 240, "method.segments=6: must divide the 16 tokens of a frame"),
    (dict(candidate_frames=4, retention=0.25), 240, "method.candidate_frames=4: .* allowed: <= 3"),
    (dict(score_last_frames=2), 240, "method.score_last_frames=2: .* allowed: >= 3"),
    (dict(budget_frames=2), 240, "method.budget_frames=2: 2 frames a head; the published allocation needs 3 "
                                 r"\(6 static, 6 dynamic, 4 unsplit heads\)"),
    (dict(budget_tokens=0), 240, "method.budget_tokens=0: 0 frames a head"),
    (dict(selection_layer=2), 240, r"method.selection_layer=2: layer 2 has no dynamic head .* one of \[1, 3\]"),
    (dict(selection_layer=9), 240, "method.selection_layer=9: the model has 4 layers"),
    (dict(), 1200, "durations: 1200 frames exceed the RoPE table"),
])
def test_checks_against_the_geometry_and_the_profile(kwargs, max_frames, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        ForcingKVConfig(**kwargs).check(TOY, max_frames)
    assert "\n" not in str(info.value)


def test_the_role_map_must_hold_a_matching_profile(role_map_file, tiny_cfg):
    g = tiny_cfg.geometry()
    with pytest.raises(ConfigError, match="no stats.mass_by_distance"):
        ForcingKVConfig(role_map=role_map_file).check(g, 240)  # Head Forcing's tiny map has no distances
    with pytest.raises(ConfigError, match="has 4 x 4 heads; the model has 2 x 2"):
        ForcingKVConfig().check(g, 240)
    ForcingKVConfig(role_map=role_map_file, roles="all_dynamic").check(g, 240)  # ablations read no profile


def test_yaml_options_are_the_dataclass_defaults():
    (run,) = check_command_line(["method=forcing_kv", "durations=[60]"], False)
    assert run.method == ForcingKVConfig()
    (run,) = check_command_line(["method=forcing_kv", "method.budget_frames=16", "durations=[60]"], False)
    assert run.method.budget_frames == 16
