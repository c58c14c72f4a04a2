"""Drift metric: delta drift, slope and lag curve on videos with closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from metrics.base import Series, VideoMeta, frame_series, long_rows
from metrics.drift import DriftConfig, DriftMetric, drift_of, least_squares_slope
from metrics.encoders import load_encoder

FPS = 4.0
PROMPT = "forest bricks, red cross bouncing, camera pans right"


class AngleEncoder:
    """Stand-in encoder: a frame of mean value m has the feature (cos 10m, sin 10m)."""

    name = "angle"

    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        theta = 10 * frames.mean(dim=(1, 2, 3))
        return F.normalize(torch.stack([theta.cos(), theta.sin()], -1), dim=-1)


def grey(values) -> torch.Tensor:
    """Uniform grey frames [T, 3, 8, 8] with the given per-frame values."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 8, 8).clone()


def test_least_squares_slope():
    x = np.arange(10) / 4
    assert least_squares_slope(x, 3 - 0.5 * x) == pytest.approx(-0.5)
    assert np.isnan(least_squares_slope([1.0], [2.0]))


def test_static_video_has_no_drift():
    frames = grey([0.4] * 40)  # two 5 s segments at 4 fps
    cfg = DriftConfig(encoder="toy-clip")
    out = DriftMetric(cfg, {"toy-clip": load_encoder("toy-clip")}).score(frames, VideoMeta(FPS, [(0.0, PROMPT)]))
    for series in ("toy-clip-text", "toy-clip-first", "brightness", "contrast", "saturation"):
        assert out.scalars[f"drift[{series}]"] == pytest.approx(0, abs=1e-5)
        assert out.scalars[f"drift_slope[{series}]"] == pytest.approx(0, abs=1e-5)
    for lag in (2, 5, 10, 20):
        assert out.scalars[f"lag_similarity_{lag}[toy-clip]"] == pytest.approx(1, abs=1e-5)
    assert "lag_similarity_50[toy-clip]" not in out.scalars  # 50 frames > the 40-frame video


def test_linear_fade_drift_and_slope():
    """Brightness 0.2 + 0.01 t over 50 frames: segments [0,20), [20,40), [40,50)."""
    frames = grey(0.2 + 0.01 * np.arange(50))
    out = DriftMetric(DriftConfig(series=["brightness", "contrast"], lags=[])).score(frames, VideoMeta(FPS))
    first, last = 0.2 + 0.01 * 9.5, 0.2 + 0.01 * 44.5  # segment means
    assert out.scalars["drift[brightness]"] == pytest.approx(first - last)
    assert out.scalars["abs_drift[brightness]"] == pytest.approx(last - first)
    assert out.scalars["drift_slope[brightness]"] == pytest.approx(0.01 * FPS)  # per second
    curve = out.series["drift_curve[brightness]"]
    assert curve.starts.tolist() == [0, 20, 40] and curve.ends.tolist() == [20, 40, 50]
    assert curve.values == pytest.approx([0.295, 0.495, 0.645])
    assert out.scalars["drift[contrast]"] == pytest.approx(0, abs=1e-6)  # uniform frames


def test_uneven_duration_merges_short_tail():
    """45 frames: the 5-frame tail is shorter than half a segment and joins the last one."""
    d = drift_of(frame_series(np.arange(45.0), 0, FPS), segment_seconds=5.0)
    assert d.curve.starts.tolist() == [0, 20] and d.curve.ends.tolist() == [20, 45]
    assert d.delta == pytest.approx(9.5 - 32.0)
    assert d.slope == pytest.approx(FPS)


def test_drift_of_a_segment_series_and_offset_frames():
    coarse = Series(np.array([0, 10, 20]), np.array([10, 20, 30]), np.array([3.0, 2.0, 1.0]), fps=2.0)
    d = drift_of(coarse)
    assert d.curve is coarse and d.delta == pytest.approx(2.0)
    assert d.slope == pytest.approx(-1 / 5)  # centres at 2.5, 7.5, 12.5 s
    d = drift_of(frame_series(np.arange(1.0, 40.0), 1, FPS))  # values for frames 1..39
    assert d.curve.starts.tolist() == [0, 20] and d.curve.values == pytest.approx([10.0, 29.5])


def test_lag_curve_known_features_and_short_video():
    """Feature angle 0.1 t: cos(phi_t, phi_{t-L}) = cos(0.1 L); lags >= 12 frames are left out."""
    frames = grey(np.arange(12) / 100)
    cfg = DriftConfig(encoder="angle", series=["first_frame"])
    out = DriftMetric(cfg, {"angle": AngleEncoder()}).score(frames, VideoMeta(FPS))
    lags = sorted(k for k in out.scalars if k.startswith("lag_similarity"))
    assert lags == ["lag_similarity_10[angle]", "lag_similarity_2[angle]", "lag_similarity_5[angle]"]
    for lag in (2, 5, 10):
        assert out.scalars[f"lag_similarity_{lag}[angle]"] == pytest.approx(np.cos(0.1 * lag), abs=1e-5)
    # 12 frames = one segment: no first-minus-last drift, but the slope is defined
    assert "drift[angle-first]" not in out.scalars
    t = np.arange(1, 12)
    assert out.scalars["drift_slope[angle-first]"] == pytest.approx(
        least_squares_slope(t / FPS, np.cos(0.1 * t)), abs=1e-5)


def test_config_needs_and_rows():
    with pytest.raises(ConfigError, match="drift.series"):
        DriftConfig(series=["sharpness"])
    assert DriftMetric.needs(DriftConfig()) == ("clip-vit-b32",)
    assert DriftMetric.needs(DriftConfig(series=["brightness"], lags=[])) == ()
    metric = DriftMetric(DriftConfig(series=["brightness"], lags=[]))
    metric.update(grey(0.1 + 0.01 * np.arange(40)), VideoMeta(FPS))
    rows = long_rows(metric.compute()[0], metric)
    assert rows and {r["version"] for r in rows} == {"drift-v1"}
    by_name = {r["name"]: r for r in rows}
    assert by_name["drift"]["encoder"] == "brightness" and not by_name["drift"]["higher_is_better"]
    assert by_name["drift_slope"]["higher_is_better"] is None  # no direction: brightness may rise or fall
