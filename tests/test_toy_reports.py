"""The loops behind the toy reports (``forcebench evaluate-toy``, ``forcebench compare``):
every (prompt, seed, method) rollout next to its ground truth, and the rows they produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import compare_methods, evaluate_toy
from bench.models.toy import SHIPPED_WEIGHTS, ToyConfig, ToyDiT
from bench.oracle_rollouts import oracle_rollouts
from bench.prompt_sets import load_prompt_set
from bench.sampler import FlowSampler
from methods.full import FullConfig
from methods.sink import SinkConfig


@pytest.fixture(scope="module")
def shipped_model():
    torch.set_num_threads(2)
    return ToyDiT(ToyConfig(checkpoint=SHIPPED_WEIGHTS)).eval()


def test_oracle_rollouts_loop_order_shared_truth_and_analysis(shipped_model):
    entries = load_prompt_set("toy_smoke").prompts
    configs = {"full": FullConfig(), "sink": SinkConfig()}
    sampler = FlowSampler(steps=2, shift=shipped_model.default_shift)
    got = list(oracle_rollouts(shipped_model, entries, [0, 1], configs, 9, sampler))
    assert [(r.entry.id, r.seed, r.method) for r in got] == [
        (e.id, s, m) for e in entries for s in (0, 1) for m in configs]
    first = got[0]
    assert first.video.shape == (9, *shipped_model.geometry.frame_shape)
    assert first.truth.frames.shape[0] == 9 and got[1].truth is first.truth  # one truth per (entry, seed)
    assert all(len(part) == 9 for part in first.analysis)
    # 9 frames never exceed the sink's 12-frame budget: nothing is evicted, so it is the full cache.
    np.testing.assert_array_equal(got[0].video, got[1].video)
    assert not np.array_equal(got[0].video, got[2].video)  # another seed, another video


def test_compare_rows_per_duration_with_kv_growth(shipped_model, monkeypatch):
    monkeypatch.setattr(compare_methods, "ToyDiT", lambda cfg: shipped_model)
    configs = compare_methods.method_configs(["full", "sink"], 12, False)
    df = compare_methods.run("toy_smoke", [0], configs, [5, 10], steps=2, window=12, split="train")
    assert list(zip(df.method, df.seconds)) == [("full", 5), ("full", 10), ("sink", 5), ("sink", 10)]
    assert set(df.prompt) == {"forest_blocks"}
    kv = df.set_index(["method", "seconds"]).kv_mib
    assert kv["full", 10] == pytest.approx(2 * kv["full", 5], rel=0.05)  # the full cache grows with the video
    assert kv["sink", 10] == kv["sink", 5] < kv["full", 5]  # a bounded cache does not
    assert np.isfinite(df.palette_fidelity).all() and (df.latency_ms > 0).all()


def test_evaluate_toy_rows_cache_use_and_samples(shipped_model, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate_toy, "ToyDiT", lambda cfg: shipped_model)
    result = evaluate_toy.evaluate(SHIPPED_WEIGHTS, "toy_smoke", [0], 24, tmp_path, steps=2)
    df, cache = result["df"], result["cache"]
    assert len(df) == 2 * len(evaluate_toy.METHODS) and set(df.frames) == {"0-21"}  # only this range fits 24 frames
    assert list(cache.prompt) == ["forest_blocks", "city_stripes"]
    np.testing.assert_allclose(cache.cache_gain_db,
                               cache.next_chunk_psnr_right_context - cache.next_chunk_psnr_other_context)
    names = set(result["samples"])
    assert {"toy_smoke_forest_blocks_s0_ground_truth.gif", "toy_smoke_forest_blocks_s0_horizon.png"} <= names
    assert all((tmp_path / "samples" / n).stat().st_size > 0 for n in names)
