"""Chunk-boundary discontinuity on grey videos with closed-form answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.base import VideoMeta, long_rows
from metrics.chunk_discontinuity import FLOOR, ChunkDiscontinuity, frame_differences
from metrics.suite import Suite

FPS = 4.0
E = 1 / 255


def grey(values) -> torch.Tensor:
    """Uniform grey frames [T, 3, 8, 8] with the given per-frame values."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 8, 8).clone()


def score(values, chunk: int = 3):
    return ChunkDiscontinuity().score(grey(values), VideoMeta(FPS, frames_per_chunk=chunk))


def test_seams_and_hitches_score_the_folded_log_ratio():
    """Seams: +0.01 inside a chunk, +0.08 where one starts; hitch: +0.01 inside, still across."""
    t = np.arange(12)
    out = score(0.1 * (t // 3) + 0.01 * (t % 3))
    assert FLOOR == E
    assert out.scalars["chunk_boundary_diff"] == pytest.approx(0.08, abs=1e-6)
    assert out.scalars["chunk_inside_diff"] == pytest.approx(0.01, abs=1e-6)
    seam = math.log((0.08 + E) / (0.01 + E))
    assert out.scalars["chunk_discontinuity"] == pytest.approx(seam, rel=1e-4)
    # 2 s segments [0, 8) and [8, 12): each holds boundary and inside pairs of the same sizes
    series = out.series["chunk_discontinuity"]
    assert series.starts.tolist() == [0, 8] and series.ends.tolist() == [8, 12]
    assert series.values == pytest.approx([seam, seam], rel=1e-4)
    hitch = score(0.01 * (t - t // 3)).scalars
    assert hitch["chunk_boundary_diff"] == pytest.approx(0.0, abs=1e-7)
    assert hitch["chunk_discontinuity"] == pytest.approx(math.log((0.01 + E) / E), rel=1e-4)


def test_even_change_and_a_static_video_are_seamless():
    assert score(0.02 * np.arange(12)).scalars["chunk_discontinuity"] == pytest.approx(0.0, abs=1e-5)
    static = score([0.5] * 12).scalars
    assert static == {"chunk_discontinuity": 0.0, "chunk_boundary_diff": 0.0, "chunk_inside_diff": 0.0}


def test_chunk_length_comes_from_the_meta():
    """Steps at frames 4 and 8: seams for chunks of 4, but both fall inside chunks of 3."""
    levels = 0.1 * (np.arange(12) // 4)
    assert score(levels, chunk=4).scalars["chunk_inside_diff"] == 0.0
    by3 = score(levels, chunk=3).scalars
    assert by3["chunk_boundary_diff"] == pytest.approx(0.0, abs=1e-7)  # boundary pairs (2,3), (5,6), (8,9) are flat
    assert by3["chunk_inside_diff"] == pytest.approx(0.2 / 8, abs=1e-6)  # two 0.1 steps in 8 inside pairs


def test_frame_differences_in_batches():
    frames = grey(np.random.default_rng(0).uniform(0, 1, 11))
    expected = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).numpy()
    for batch in (1, 3, 32):
        assert frame_differences(frames, batch) == pytest.approx(expected, abs=1e-7)
    assert len(frame_differences(frames[:1])) == 0


def test_not_applicable_without_chunks_or_a_boundary():
    with pytest.raises(ValueError, match="frames_per_chunk=1"):
        score([0.1, 0.2, 0.3], chunk=1)
    with pytest.raises(ValueError, match="a 3-frame video has no chunk boundary"):
        score([0.1, 0.2, 0.3], chunk=3)
    (row,) = Suite([ChunkDiscontinuity()], {}, {}).score(grey([0.1] * 3), VideoMeta(FPS, frames_per_chunk=3))
    assert row["status"].startswith("not applicable: a 3-frame video")


def test_rows_carry_version_and_directions():
    metric = ChunkDiscontinuity()
    metric.update(grey(0.01 * np.arange(12)), VideoMeta(FPS, frames_per_chunk=3))
    rows = long_rows(metric.compute()[0], metric)
    assert {r["version"] for r in rows} == {"chunk-discontinuity-v1"}
    direction = {r["metric"]: r["higher_is_better"] for r in rows}
    assert direction == {"chunk_discontinuity": False, "chunk_boundary_diff": None, "chunk_inside_diff": None}
