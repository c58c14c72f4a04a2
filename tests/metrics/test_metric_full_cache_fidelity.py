"""full_cache_fidelity: PSNR to the full-cache rollout inside the horizon (the primary score off the toy world)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.preflight import check_command_line
from bench.report.leaderboard import resolve_primary
from bench.report.runs import load
from bench.report.validity import default_primary
from bench.run import execute
from metrics.base import VideoMeta
from metrics.full_cache_fidelity import FullCacheFidelity
from metrics.suite import Suite


def score(frames, reference, prefix=0):
    meta = VideoMeta(fps=4.0, frames_per_chunk=3, prefix_frames=prefix, reference_frames=reference)
    return Suite([FullCacheFidelity(None, {})], {}, {}).score(frames, meta)


def value(rows):
    (row,) = [r for r in rows if r["metric"] == "full_cache_psnr" and r["segment"] == -1]
    return row


def test_known_answers_and_direction():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(9, 3, 8, 8, generator=g)
    noise = torch.randn(12, 3, 8, 8, generator=g)
    same = torch.cat([reference, torch.rand(3, 3, 8, 8, generator=g)])  # beyond the reference: not scored
    row = value(score(same, reference))
    assert row["value"] == pytest.approx(60.0) and row["higher_is_better"] is True  # identical frames: the cap
    off = (same + 0.1 * noise).clamp(0, 1)
    worse = (same + 0.3 * noise).clamp(0, 1)
    assert value(score(worse, reference))["value"] < value(score(off, reference))["value"] < 60
    mse = ((off[:9] - reference) ** 2).flatten(1).mean(1)
    assert value(score(off, reference))["value"] == pytest.approx(float((-10 * torch.log10(mse)).mean()), rel=1e-6)
    # the prefix (given, not generated) is left out
    spoiled = off.clone()
    spoiled[:6] = reference[:6]
    assert value(score(spoiled, reference, prefix=6))["value"] == pytest.approx(
        value(score(off[6:], reference[6:]))["value"], rel=1e-6)


def test_not_applicable_without_a_reference_or_a_generated_frame_inside_it():
    frames = torch.rand(9, 3, 8, 8)
    (row,) = score(frames, None)
    assert row["status"].startswith("not applicable: no full-cache reference")
    (row,) = score(frames, frames[:6], prefix=6)
    assert row["status"].startswith("not applicable: no generated frame")


def test_runs_score_it_against_their_own_full_cache_rollout(tmp_path):
    """The shipped toy backbone after its 18-frame prefix: the chunk that completes the horizon."""
    common = ["durations=[5.25]", "steps=4", "prompts=toy", "prompts.select=[desert_blocks]",
              "metrics.enabled=[full_cache_fidelity]", f"out_dir={tmp_path}", "progress=false"]
    scores = {}
    for method in ("full", "sliding_window", "control_no_history"):
        (run,) = check_command_line([*common, f"method={method}"], multirun=False)
        (run_dir,) = execute(run)
        summary = json.loads((run_dir / "summary.json").read_text())
        scores[method] = summary["durations"][0]["metrics"]["full_cache_psnr"]
    assert scores["full"] == pytest.approx(60.0)  # the same rollout as its reference
    # a 12-frame window keeps what this 8-tile pan needs; a cache that keeps nothing does not
    assert scores["sliding_window"] > scores["control_no_history"] + 5
    runs = load(tmp_path)
    assert resolve_primary(runs, None) == "full_cache_psnr"  # no ground truth score: the leaderboard ranks by it


def test_the_toy_score_stays_primary_where_there_is_ground_truth():
    assert default_primary({"continuation_psnr", "full_cache_psnr"}) == "continuation_psnr"
    assert default_primary({"full_cache_psnr", "fps"}) == "full_cache_psnr"
    assert default_primary({"fps"}) is None
