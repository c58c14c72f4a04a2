"""Head Forcing: roles, episodic memory, per-role caches, re-encoding, prompt switches, profiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import fast_configs

from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.tools.profile import ProfileConfig, profile_heads, role_map_json, write_role_map
from core.errors import ConfigError
from methods import build_method
from methods.base import KIND_MERGED, KIND_SINK
from methods.head_forcing.memory import EpisodeTable, EpisodicMemory
from methods.roles import RoleThresholds, agreement, classify, counts


def test_role_classification_on_synthetic_statistics():
    # distance 0..5; three heads: fixated on the start, on the recent past, spread out
    mass = np.array([[[0.5, 0.3, 0.1, 0.05, 0.03, 0.02],
                      [0.6, 0.3, 0.05, 0.03, 0.01, 0.01],
                      [0.1, 0.1, 0.1, 0.1, 0.3, 0.3]]])
    sink = np.array([[0.6, 0.01, 0.1]])
    roles = classify(sink, mass, RoleThresholds(anchor_sink_mass=0.3, local_mass=0.8, local_frames=3))
    assert roles.tolist() == [["anchor", "local", "memory"]]
    assert counts(roles) == {"local": 1, "anchor": 1, "memory": 1}
    assert agreement(roles, np.array([["anchor", "memory", "memory"]])) == pytest.approx(2 / 3)


def table(capacity, threshold, max_frames=100, heads=1, tokens=4, dim=8):
    return EpisodeTable(EpisodicMemory(capacity, threshold, max_frames), heads, 1, tokens, dim, torch.float32)


def test_joining_a_frame_gives_weighted_means_and_adds_weight():
    t = table(capacity=2, threshold=2.0)  # every frame joins the open episode (distance <= 2)
    t.add_frame(0, torch.full((1, 1, 4, 8), 1.0), torch.full((1, 1, 4, 8), 2.0))
    for f in (1, 2):
        t.add_frame(f, torch.full((1, 1, 4, 8), 4.0), torch.full((1, 1, 4, 8), 8.0))
    k, v, weight, first, spatial, head = t.entries()
    assert torch.equal(weight, torch.full((4,), 3.0)) and first.tolist() == [0] * 4
    torch.testing.assert_close(k, torch.full((1, 4, 8), (1.0 + 4.0 + 4.0) / 3))
    torch.testing.assert_close(v, torch.full((1, 4, 8), (2.0 + 8.0 + 8.0) / 3))
    assert spatial.tolist() == [0, 1, 2, 3] and head.tolist() == [0] * 4 and t.frames[0, 0] == 3


def reference_episodes(frames, capacity, threshold, max_frames):
    """The rule written per head with one Python object per episode: [first, frames, open, k, v, w]."""
    def mean_key(e):
        w = e[5][None, :, None]
        return ((e[3] * w).sum(1) / w.sum(1)).flatten()

    def similar(a, b):
        return float(torch.nn.functional.cosine_similarity(mean_key(a), mean_key(b), dim=0))

    def merge(a, b):
        wa, wb = a[5][None, :, None], b[5][None, :, None]
        return [a[0], a[1] + b[1], a[2] or b[2], (a[3] * wa + b[3] * wb) / (wa + wb), (a[4] * wa + b[4] * wb) / (wa + wb),
                a[5] + b[5]]

    episodes = []
    for f, (k, v) in enumerate(frames):
        new = [f, 1, True, k, v, torch.ones(k.shape[1])]
        last = episodes[-1] if episodes else None
        if last and last[2] and last[1] < max_frames and 1 - similar(last, new) <= threshold:
            episodes[-1] = merge(last, new)
        else:
            if last:
                last[2] = False
            episodes.append(new)
        while len(episodes) > capacity:
            sims = [similar(a, b) for a, b in zip(episodes, episodes[1:])]
            i = max(range(len(sims)), key=sims.__getitem__)
            episodes[i:i + 2] = [merge(episodes[i], episodes[i + 1])]
    return episodes


def test_the_table_runs_the_rule_of_each_head_exactly():
    """Three heads with different scene changes, compressed together, equal the per-head rule."""
    g = torch.Generator().manual_seed(0)
    scenes = torch.randn(3, 6, 1, 4, 8, generator=g)
    change = [(0, 3, 6, 9, 12, 15), (0, 2, 4, 8, 13, 16), (0, 6, 7, 8, 9, 17)]  # frames where a head's scene changes
    frames = torch.zeros(3, 18, 1, 4, 8)
    for h in range(3):
        for f in range(18):
            scene = sum(f >= c for c in change[h]) - 1
            frames[h, f] = scenes[h, scene] + 0.01 * torch.randn(1, 4, 8, generator=g)
    t = table(capacity=3, threshold=0.1, max_frames=4, heads=3)
    for f in range(18):
        t.add_frame(f, frames[:, f], 2 * frames[:, f])
        assert bool((t.count <= 3).all())
    k, v, weight, first, spatial, head = t.entries()
    for h in range(3):
        expected = reference_episodes([(frames[h, f], 2 * frames[h, f]) for f in range(18)], 3, 0.1, 4)
        mine = head == h
        assert first[mine][::4].tolist() == [e[0] for e in expected]
        assert t.frames[h, :len(expected)].tolist() == [e[1] for e in expected]
        torch.testing.assert_close(k[:, mine], torch.cat([e[3] for e in expected], dim=1), rtol=0, atol=1e-6)
        torch.testing.assert_close(v[:, mine], torch.cat([e[4] for e in expected], dim=1), rtol=0, atol=1e-6)
        assert torch.equal(weight[mine], torch.cat([e[5] for e in expected]))
    assert float(weight.sum()) == 3 * 18 * 4  # nothing is lost


def test_episodes_close_on_change_and_stay_bounded():
    g = torch.Generator().manual_seed(0)
    scenes = [torch.randn(1, 1, 4, 8, generator=g) for _ in range(6)]
    bounded = table(capacity=3, threshold=0.1)
    for f in range(18):  # each scene lasts 3 frames of nearly identical content
        bounded.add_frame(f, scenes[f // 3] + 0.01 * torch.randn(1, 1, 4, 8, generator=g), scenes[f // 3])
        assert int(bounded.count[0]) <= 3
    _, _, weight, first, _, _ = bounded.entries()
    assert float(weight.sum()) == 18 * 4 and first.tolist() == sorted(first.tolist())
    roomy = table(capacity=10, threshold=0.1)
    for f in range(6):
        roomy.add_frame(f, scenes[f // 3], scenes[f // 3])
    assert roomy.frames[0, :int(roomy.count[0])].tolist() == [3, 3]  # one episode per scene
    none = table(capacity=0, threshold=0.1)
    none.add_frame(0, scenes[0], scenes[0])
    assert none.entries()[0].shape[1] == 0  # no memory at all


def test_head_forcing_invariants(tiny_model, role_map_file):
    cfg = fast_configs(role_map_file)["head_forcing"]
    g = tiny_model.geometry
    tpf = g.tokens_per_frame
    method = build_method(cfg, g)
    # budget 4 frames x 4 heads = 16; local 2 + anchor 1+2 leave 11 for 2 memory heads: 5 each,
    # minus the 2-frame window = 3 episodes (the horizon would allow 9 - 3 - 2 = 4)
    assert method.capacity == 3
    roles = [["local", "memory"], ["anchor", "memory"]]

    def check(m, rec):
        now = rec.frame_end
        for layer, store in enumerate(m.layers):
            for h in range(2):
                sl = store.head_slice(h)
                frames, kind = store.frame[sl], store.kind[sl]
                role = roles[layer][h]
                if role == "local":
                    assert set(frames.tolist()) <= set(range(now - cfg.local_frames, now))
                elif role == "anchor":
                    sink = list(range(min(cfg.anchor_sink_frames, now)))
                    assert sink == sorted(set(frames[kind == KIND_SINK].tolist()))
                else:
                    raw = frames[kind != KIND_MERGED]
                    assert set(raw.tolist()) <= set(range(now - cfg.memory_window_frames, now))
                    merged = kind == KIND_MERGED
                    assert int(merged.sum()) <= m.capacity * tpf
                    evicted = max(0, now - cfg.memory_window_frames) * tpf
                    assert float(store.weight[sl][merged].sum()) == evicted  # weight preserved
        for view in m.views(now):
            assert int(view.q_pos.max()) < g.horizon_frames  # re-encoded positions stay in range

    generate(tiny_model, method, [(0.0, "a red ball")], 90, seed=0, sampler=FlowSampler(steps=1),
             on_chunk=lambda rec: check(method, rec))


def test_prompt_switch_recaches_local_and_anchor_heads(tiny_model, role_map_file):
    cfg = fast_configs(role_map_file)["head_forcing"]
    g = tiny_model.geometry
    method = build_method(cfg, g)
    snapshots = {}
    inner = method.recache

    def spy(kv, start):
        snapshots[start] = [s.k.clone() for s in method.layers]
        snapshots[(start, "layout")] = (method.layers[1].head.clone(), method.layers[1].frame.clone())
        inner(kv, start)
        snapshots[(start, "after")] = [s.k.clone() for s in method.layers]

    method.recache = spy
    generate(tiny_model, method, [(0.0, "red ball"), (3.0, "yellow ball")], 18, seed=0, sampler=FlowSampler(steps=1))
    assert sorted(k for k in snapshots if isinstance(k, int)) == [9]  # switch at frame 12; window of 2 -> chunk 9
    before, after = snapshots[9], snapshots[(9, "after")]
    # layer 0's keys do not depend on the prompt (cross-attention comes after self-attention);
    # in layer 1 the anchor head (0) is re-cached under the new prompt, the memory head (1) is not
    head, frame = snapshots[(9, "layout")]
    anchor = (head == 0) & (frame >= 9) & (frame < 12)
    memory = head == 1
    assert (before[1][:, anchor] - after[1][:, anchor]).abs().max() > 1e-4
    assert torch.equal(before[1][:, memory], after[1][:, memory])


def test_ablations_are_one_override(role_map_file, tiny_model):
    g = tiny_model.geometry
    base = fast_configs(role_map_file)["head_forcing"]
    for override in ({"rope_reencode": False}, {"episodic": False}, {"roles": "all_memory"}, {"roles": "shuffled"}):
        cfg = type(base)(**{**base.params(), **override})
        method = build_method(cfg, g)
        generate(tiny_model, method, [(0.0, "a")], 30, seed=0, sampler=FlowSampler(steps=1))
        if override.get("episodic") is False:
            assert all((s.kind != KIND_MERGED).all() for s in method.layers)
    shuffled = build_method(type(base)(**{**base.params(), "roles": "shuffled", "shuffle_seed": 3}), g)
    assert sorted(shuffled.roles.flatten().tolist()) == sorted(["local", "anchor", "memory", "memory"])


def test_missing_role_map_is_a_clear_error(tiny_cfg, tmp_path):
    cfg = fast_configs(str(tmp_path / "none.json"))["head_forcing"]
    with pytest.raises(ConfigError, match="create it with `forcebench profile`"):
        cfg.check(tiny_cfg.geometry(), 30)


def test_profiling_writes_a_valid_role_map(tiny_model, tmp_path):
    thresholds = RoleThresholds(anchor_sink_mass=0.2, local_mass=0.6)
    result = profile_heads(tiny_model, ProfileConfig(prompts=1, seeds=1, steps=1), thresholds)
    role_map = role_map_json("toy", result, ProfileConfig(), thresholds, None)
    out = tmp_path / "roles" / "toy.json"
    write_role_map(out, role_map)
    data = json.loads(out.read_text())
    mass = np.array(data["stats"]["mass_by_distance"])
    assert mass.shape == (2, 2, 9)
    np.testing.assert_allclose(mass.sum(-1), 1.0, atol=1e-6)  # a distribution per head
    assert np.array(data["roles"]).shape == (2, 2) and sum(data["counts"].values()) == 4
    assert out.with_suffix(".png").stat().st_size > 1000


def test_budget_left_by_capped_memory_heads_widens_local_and_anchor_windows(tiny_cfg, role_map_file):
    g = tiny_cfg.geometry()  # 2 x 2 heads, horizon 9, chunks of 3: at most 6 re-encoded frames a head
    base = fast_configs(role_map_file)["head_forcing"]
    cfg = type(base)(**{**base.params(), "budget_frames": 6})
    roles = cfg.load_roles(g)  # local, memory / anchor, memory
    alloc = cfg.allocate(g, roles)
    # 24 frames: local 2 + anchor 1+2 = 5; memory heads capped at 6 - 2 = 4 episodes (12 frames);
    # the 7 left widen local and anchor windows by 3 each, capped by the horizon (6 and 6 - 1)
    assert (alloc.episodes, alloc.memory_window_frames) == (4, 2)
    assert (alloc.local_frames, alloc.anchor_window_frames) == (5, 5)
    spent = alloc.local_frames + cfg.anchor_sink_frames + alloc.anchor_window_frames + 2 * (2 + 4)
    assert spent == 23 <= 6 * 4
    no_reencode = type(base)(**{**base.params(), "budget_frames": 6, "rope_reencode": False}).allocate(g, roles)
    assert no_reencode.episodes == (24 - 5) // 2 - 2 and no_reencode.local_frames == 2  # nothing capped


def test_two_tier_promotes_heads_while_the_horizon_caps_the_long_window(tiny_cfg, role_map_file):
    from methods.two_tier import TwoTierConfig

    g = tiny_cfg.geometry()
    cfg = TwoTierConfig(role_map=role_map_file, budget_frames=5, critical_fraction=0.25, small_sink_frames=1,
                        small_recent_frames=1)
    critical, window = cfg.layout(g)
    # 20 frames: one critical head would need 20 - 3 x 2 = 14 > 6 (horizon cap), two need
    # (20 - 4) / 2 = 8 > 6, three need (20 - 2) / 3 = 6: three heads, ranked by 1 - local mass
    assert window == 6 and critical.sum() == 3
    assert critical.tolist() == [[False, True], [True, True]]  # local mass 0.9 is the least critical
    cfg.budget_frames = 3  # (12 - 3 x 2) / 1 = 6 fits: no promotion
    assert cfg.layout(g)[0].sum() == 1 and cfg.layout(g)[1] == 6


def test_stability_profile_uses_disjoint_prompts(tiny_model):
    first = profile_heads(tiny_model, ProfileConfig(prompts=3, seeds=1, steps=1), RoleThresholds())
    prompts = frozenset(c["prompt"] for c in first["calibration"])
    other = profile_heads(tiny_model, ProfileConfig(prompts=3, seeds=1, steps=1, rng_seed=0), RoleThresholds(),
                          exclude_prompts=prompts)
    assert not prompts & {c["prompt"] for c in other["calibration"]}
    assert len({c["prompt"] for c in other["calibration"]}) == 3
