"""Drift metric: delta drift, slope and lag curve on videos with closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from metrics.base import Series, VideoMeta, frame_series, long_rows
from metrics.drift import QUALITY, DriftConfig, DriftMetric, drift_of, least_squares_slope
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
    frames = grey([0.4] * 40)  # five 2 s segments at 4 fps
    cfg = DriftConfig(encoder="toy-clip")
    out = DriftMetric(cfg, {"toy-clip": load_encoder("toy-clip")}).score(frames, VideoMeta(FPS, [(0.0, PROMPT)]))
    for series in ("toy-clip-text", "toy-clip-first", "brightness", "contrast", "saturation"):
        assert out.scalars[f"drift[{series}]"] == pytest.approx(0, abs=1e-5)
        assert out.scalars[f"drift_slope[{series}]"] == pytest.approx(0, abs=1e-5)
    for lag in (2, 5, 10, 20):
        assert out.scalars[f"lag_similarity_{lag}[toy-clip]"] == pytest.approx(1, abs=1e-5)
    assert "lag_similarity_50[toy-clip]" not in out.scalars  # 50 frames > the 40-frame video


def test_linear_fade_drift_and_slope():
    """Brightness 0.2 + 0.01 t over 50 frames: 2 s segments of 8 frames, the 2-frame tail
    (shorter than half a segment) joins [40, 48)."""
    frames = grey(0.2 + 0.01 * np.arange(50))
    out = DriftMetric(DriftConfig(series=["brightness", "contrast"], lags=[])).score(frames, VideoMeta(FPS))
    first, last = 0.2 + 0.01 * 3.5, 0.2 + 0.01 * 44.5  # segment means of frames 0..7 and 40..49
    assert out.scalars["drift[brightness]"] == pytest.approx(first - last)
    assert out.scalars["abs_drift[brightness]"] == pytest.approx(last - first)
    assert out.scalars["drift_slope[brightness]"] == pytest.approx(0.01 * FPS)  # per second
    curve = out.series["drift_curve[brightness]"]
    assert curve.starts.tolist() == [0, 8, 16, 24, 32, 40] and curve.ends.tolist() == [8, 16, 24, 32, 40, 50]
    assert curve.values == pytest.approx([0.235, 0.315, 0.395, 0.475, 0.555, 0.645])
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
    d = drift_of(frame_series(np.arange(1.0, 40.0), 1, FPS))  # values for frames 1..39, 2 s segments
    assert d.curve.starts.tolist() == [0, 8, 16, 24, 32]
    assert d.curve.values == pytest.approx([4.0, 11.5, 19.5, 27.5, 35.5])  # frames 1..7, 8..15, ...


def test_lag_curve_known_features_and_short_video():
    """Feature angle 0.1 t: cos(phi_t, phi_{t-L}) = cos(0.1 L); lags >= 12 frames are left out."""
    frames = grey(np.arange(12) / 100)
    cfg = DriftConfig(encoder="angle", series=["first_frame"])
    out = DriftMetric(cfg, {"angle": AngleEncoder()}).score(frames, VideoMeta(FPS, segment_seconds=5.0))
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
    assert rows and {r["version"] for r in rows} == {"drift-v2"}
    direction = {r["name"]: r["higher_is_better"] for r in rows if r["encoder"] == "brightness"}
    # brightness is no quality series: it may rise or fall, but a stable one is better
    assert direction == {"drift": None, "abs_drift": False, "drift_slope": None, "drift_curve": None}


@pytest.mark.parametrize("series, key", [("text", "drift_enc-text"), ("first_frame", "drift_enc-first"),
                                         ("brightness", "brightness"), ("contrast", "contrast"),
                                         ("saturation", "saturation")])
def test_every_drift_key_takes_its_direction_from_the_series_flag(series, key):
    """Quality series: drift lower, abs_drift lower, slope and curve higher; others: only abs_drift (lower)."""
    metric = DriftMetric(DriftConfig(encoder="drift_enc"), {"drift_enc": AngleEncoder()})
    quality = QUALITY[series]
    assert quality == (series in ("text", "first_frame"))
    expected = {"drift": False if quality else None, "abs_drift": False,
                "drift_slope": True if quality else None, "drift_curve": True if quality else None}
    assert {stat: metric.is_higher_better(f"{stat}[{key}]") for stat in expected} == expected
    assert metric.is_higher_better("lag_similarity_5[drift_enc]") is True
    with pytest.raises(ValueError, match="no drift series 'sharpness'"):
        metric.is_higher_better("drift[sharpness]")
