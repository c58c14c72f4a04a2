"""LPIPS metric on a stand-in distance (mean absolute difference) with closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.base import VideoMeta, long_rows
from metrics.lpips import Lpips, LpipsConfig, pair_distances

FPS = 4.0


class MeanAbs:
    """Stand-in perceptual distance: mean |a - b| over channels and pixels."""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))


def grey(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 8, 8).clone()


def metric(**cfg) -> Lpips:
    return Lpips(LpipsConfig(model="meanabs", **cfg), {"meanabs": MeanAbs()})


def test_static_video_has_zero_distance():
    out = metric().score(grey([0.3] * 10), VideoMeta(FPS))
    assert out.scalars == {"lpips_prev[meanabs]": 0.0, "lpips_first[meanabs]": 0.0}


def test_linear_fade_per_segment_and_overall():
    """Grey 0.01 t over 30 frames: 2 s segments [0, 8), [8, 16), [16, 24) and the 6-frame
    tail [24, 30) (at least half a segment: a segment of its own); d(f_0, f_i) = 0.01 i."""
    out = metric(batch=7).score(grey(0.01 * np.arange(30)), VideoMeta(FPS))
    assert out.scalars["lpips_prev[meanabs]"] == pytest.approx(0.01)
    assert out.scalars["lpips_first[meanabs]"] == pytest.approx(0.01 * 15)  # mean of i = 1..29
    first = out.series["lpips_first[meanabs]"]
    assert first.starts.tolist() == [0, 8, 16, 24] and first.ends.tolist() == [8, 16, 24, 30]
    assert first.values == pytest.approx([0.01 * 4, 0.01 * 11.5, 0.01 * 19.5, 0.01 * 26.5])  # i = 1..7, 8..15, ...
    assert out.series["lpips_prev[meanabs]"].values == pytest.approx([0.01] * 4)


def test_uneven_duration_and_single_frame():
    out = metric().score(grey(np.linspace(0, 1, 25)), VideoMeta(FPS))  # the 1-frame tail joins [16, 24)
    assert out.series["lpips_prev[meanabs]"].ends.tolist() == [8, 16, 25]
    assert metric().score(grey([0.5]), VideoMeta(FPS)).scalars == {}


def test_pair_distances_batches_and_grey_input():
    a, b = torch.zeros(5, 1, 4, 4), torch.full((5, 1, 4, 4), 0.25)
    assert pair_distances(MeanAbs(), a, b, batch=2) == pytest.approx([0.25] * 5)


def test_needs_and_rows():
    assert Lpips.needs(LpipsConfig()) == ("lpips-alex",)
    assert Lpips.needs(LpipsConfig(model="lpips-vgg")) == ("lpips-vgg",)
    m = metric()
    m.update(grey([0.1, 0.2, 0.4]), VideoMeta(FPS))
    rows = long_rows(m.compute()[0], m)
    assert {r["version"] for r in rows} == {"lpips-v1"}
    assert {r["encoder"] for r in rows} == {"meanabs"} and not any(r["higher_is_better"] for r in rows)
