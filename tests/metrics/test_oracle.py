"""Oracle metrics: ground truth scores perfectly; damaged videos score lower as expected."""

from __future__ import annotations

import numpy as np
import pytest

from core.world import simulate
from metrics.oracle import PSNR_CAP, oracle_scores

PROMPT = "forest bricks, red cross bouncing, white ring sliding, camera pans right"


@pytest.fixture(scope="module")
def video():
    return simulate([(0, PROMPT)], 120, seed=3)


def test_ground_truth_scores_perfectly(video):
    s = oracle_scores(video.frames, video, 0, 120, prefix_frames=18)
    assert s["palette_fidelity"] == 1.0 and s["spurious_colours"] == 0.0
    assert s["sprite_presence_ratio"] == 1.0 and s["sprite_presence"] > 0 and s["sprite_presence_error"] == 0
    assert s["background_psnr"] == PSNR_CAP and s["psnr_gt"] == PSNR_CAP
    assert s["continuation_psnr"] == PSNR_CAP
    assert s["pan_consistency"] == 1.0
    # bricks: an 18-tile canvas, so a panning view returns after 18 frames
    assert s["revisit_psnr_beyond"] == PSNR_CAP and s["revisits_beyond"] == 120 - 18
    assert s["revisits_within"] == 0


def test_no_prefix_means_no_continuation_score(video):
    assert np.isnan(oracle_scores(video.frames, video, 0, 120)["continuation_psnr"])


def test_another_sample_of_the_same_world(video):
    """Another seed: same palette, pattern and motion; layout and starts differ."""
    other = simulate([(0, PROMPT)], 120, seed=4)
    s = oracle_scores(other.frames, video, 0, 120, prefix_frames=18)
    assert s["palette_fidelity"] == 1.0 and s["pan_consistency"] == 1.0
    assert s["background_psnr"] == PSNR_CAP  # drawn from the same tiles
    assert s["revisit_psnr_beyond"] == PSNR_CAP  # and consistent with itself
    assert s["psnr_gt"] < 12 and s["continuation_psnr"] < 12  # but not the same video


def test_a_continuation_that_forgets_the_layout_scores_low(video):
    """The first 18 frames right, then another seed's world: the primary score drops."""
    other = simulate([(0, PROMPT)], 120, seed=4)
    frames = np.concatenate([video.frames[:18], other.frames[18:]])
    right = oracle_scores(video.frames, video, 0, 120, prefix_frames=18)["continuation_psnr"]
    assert oracle_scores(frames, video, 0, 120, prefix_frames=18)["continuation_psnr"] < right - 40


def test_colour_shift_loses_palette_and_sprites(video):
    s = oracle_scores(np.clip(video.frames + 0.3, 0, 1), video, 0, 120)
    assert s["palette_fidelity"] < 0.05
    assert s["sprite_presence_ratio"] < 0.6  # red is gone; white survives
    assert s["background_psnr"] < 15


def test_frozen_video_does_not_pan(video):
    s = oracle_scores(np.repeat(video.frames[:1], 120, axis=0), video, 0, 120)
    assert s["pan_consistency"] == 0.0
    assert s["psnr_gt"] < 20


def test_uniform_frames_have_no_shift(video):
    """A washed-out video matches every shift equally: it is not counted as a pan or as still."""
    grey = np.full_like(video.frames, 0.5)
    assert oracle_scores(grey, video, 0, 120)["pan_consistency"] == 0.0
    still = simulate([(0, PROMPT.replace("pans right", "still"))], 40, seed=3)
    assert oracle_scores(np.full_like(still.frames, 0.5), still, 0, 40)["pan_consistency"] == 0.0


def test_shuffled_video_breaks_pan_and_revisits(video):
    order = np.random.default_rng(0).permutation(120)
    s = oracle_scores(video.frames[order], video, 0, 120)
    assert s["pan_consistency"] < 0.4  # chance: about 1/3 (three candidate shifts)
    assert s["palette_fidelity"] == 1.0  # every frame is still a valid frame


def test_spurious_colour_is_detected(video):
    frames = video.frames.copy()
    frames[:60, :, 0:4, 0:4] = np.array([0.1, 0.9, 0.95])[:, None, None]  # a cyan blob
    s = oracle_scores(frames, video, 0, 120)
    assert s["spurious_colours"] == pytest.approx(0.5)


def test_revisit_split_by_window(video):
    within = oracle_scores(video.frames, video, 0, 120, window=16)
    wide = oracle_scores(video.frames, video, 0, 120, window=200)
    assert wide["revisits_beyond"] == 0
    assert wide["revisits_within"] == within["revisits_within"] + within["revisits_beyond"] == 120 - 18


def test_one_frame_analysis_serves_every_prefix():
    from metrics.oracle import frame_analysis

    gt = simulate([(0, "forest blocks, red ring sliding, camera pans right")], 60, 3)
    noisy = np.clip(gt.frames + np.random.default_rng(0).normal(0, 0.05, gt.frames.shape), 0, 1).astype(np.float32)
    analysis = frame_analysis(noisy, gt)
    for start, stop in [(0, 60), (20, 40), (45, 60)]:
        direct, shared = oracle_scores(noisy, gt, start, stop, 16), oracle_scores(noisy, gt, start, stop, 16, analysis)
        assert direct.keys() == shared.keys()
        np.testing.assert_array_equal(list(direct.values()), list(shared.values()))
