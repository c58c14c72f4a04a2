"""Drift: how a per-frame or per-segment series changes from the start of a video to its end.

For a series x (per frame, or already per segment) with entry times t_j in seconds:

- drift curve: the series averaged over segments of ``meta.segment_seconds`` (a series
  that is already per segment is its own curve);
- ``drift[x]`` = curve[0] - curve[-1] (first segment minus last; positive = the value
  fell, i.e. a quality series got worse); ``abs_drift[x]`` = |drift[x]| (the Rolling
  Forcing definition, with x = imaging quality there);
- ``drift_slope[x]``: the least-squares slope of x over t_j, in units of x per second,
  fitted on the finest series given (per frame when per frame).

Both need a curve of at least two segments; shorter videos get no drift keys.

Directions (``drift_direction``) depend on whether x is a *quality series*, one where a
higher value means a better video (``QUALITY`` says so per series):

| key | quality series (text, first_frame) | other series (brightness, contrast, saturation) |
|---|---|---|
| ``drift[x]`` | lower is better (positive = quality lost) | none: getting brighter is not worse than darker |
| ``abs_drift[x]`` | lower is better | lower is better: a stable statistic |
| ``drift_slope[x]`` | higher is better (quality rising) | none |
| ``drift_curve[x]`` | higher is better (it is x) | none |

The ``drift`` metric applies this to the per-frame series named in its config:

- ``brightness``: mean of all pixels and channels;
- ``contrast``: standard deviation of the grey image (channel mean) over pixels;
- ``saturation``: mean over pixels of max_c - min_c;
- ``text`` (key ``<enc>-text``): max(100 * cos(phi_t, psi(active prompt)), 0);
- ``first_frame`` (key ``<enc>-first``): cos(phi_0, phi_t) for t >= 1;

and reports the lag curve ``lag_similarity_<L>[enc]`` = mean over t >= L of
cos(phi_t, phi_{t-L}) for each lag L in frames; lags of T frames or more are left out.
``drift(frames, meta, encoder, config)`` is the functional form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.errors import require
from metrics.base import (
    METRICS,
    SEGMENT_SECONDS,
    Metric,
    MetricOutput,
    Series,
    VideoMeta,
    frame_series,
    metric_key,
    segment_series,
    split_key,
)
from metrics.clip import consistency_cosines, frame_text_scores, image_features

VERSION = "drift-v2"  # v2: per-series directions (QUALITY), 2 s segments by default
PIXEL_SERIES = ("brightness", "contrast", "saturation")
FEATURE_SERIES = ("text", "first_frame")
# Is the series a quality series (higher = better video, so a fall over the video is a loss)?
QUALITY = {"text": True, "first_frame": True, "brightness": False, "contrast": False, "saturation": False}
DRIFT_KEYS = ("drift", "abs_drift", "drift_slope", "drift_curve")


def drift_direction(stat: str, quality: bool) -> bool | None:
    """higher_is_better of ``stat`` (one of DRIFT_KEYS) for a quality series or another one
    (the table in the module doc)."""
    if stat not in DRIFT_KEYS:
        raise ValueError(f"unknown drift statistic {stat!r}; allowed: {', '.join(DRIFT_KEYS)}")
    if stat == "abs_drift":
        return False
    if not quality:
        return None
    return stat != "drift"


def series_key(series: str, encoder: str) -> str:
    """The key part that names a series: ``<enc>-text``, ``<enc>-first``, or the pixel statistic."""
    return {"text": f"{encoder}-text", "first_frame": f"{encoder}-first"}.get(series, series)


def least_squares_slope(seconds: np.ndarray, values: np.ndarray) -> float:
    """Slope b of values ~ a + b * seconds; NaN when fewer than two distinct times."""
    x, y = np.asarray(seconds, float), np.asarray(values, float)
    dx = x - x.mean()
    denom = float((dx * dx).sum())
    return float((dx * (y - y.mean())).sum() / denom) if denom > 0 else float("nan")


@dataclass
class Drift:
    curve: Series  # per-segment values
    delta: float  # curve[0] - curve[-1]; NaN with fewer than two segments
    slope: float  # least-squares slope per second of the input series


def drift_of(series: Series, segment_seconds: float = SEGMENT_SECONDS) -> Drift:
    """Drift of any series. A per-frame series (every entry one frame, contiguous) is first
    averaged over segments of ``segment_seconds``; a coarser one is used as its own curve."""
    per_frame = bool(np.all(series.ends - series.starts == 1)) and bool(np.all(np.diff(series.starts) == 1))
    if per_frame and len(series.values):
        meta = VideoMeta(fps=series.fps, segment_seconds=segment_seconds)
        curve = segment_series(series.values, int(series.starts[0]), meta, int(series.ends[-1]))
    else:
        curve = series
    delta = float(curve.values[0] - curve.values[-1]) if len(curve.values) >= 2 else float("nan")
    return Drift(curve, delta, least_squares_slope(series.seconds, series.values))


def drift_entries(name: str, result: Drift, out: MetricOutput) -> None:
    """Write ``drift[name]``, ``abs_drift[name]``, ``drift_slope[name]`` and the curve
    ``drift_curve[name]`` into ``out``, leaving out what is undefined."""
    if np.isfinite(result.delta):
        out.scalars[metric_key("drift", name)] = result.delta
        out.scalars[metric_key("abs_drift", name)] = abs(result.delta)
        out.series[metric_key("drift_curve", name)] = result.curve
    if np.isfinite(result.slope):
        out.scalars[metric_key("drift_slope", name)] = result.slope


def pixel_series(frames: torch.Tensor, name: str) -> np.ndarray:
    """frames [T, C, H, W] -> [T] brightness, contrast or saturation (see the module doc)."""
    x = frames.float()
    if name == "brightness":
        values = x.mean(dim=(1, 2, 3))
    elif name == "contrast":
        values = x.mean(1).flatten(1).std(1, unbiased=False)
    elif name == "saturation":
        values = (x.amax(1) - x.amin(1)).mean(dim=(1, 2))
    else:
        raise ValueError(f"unknown pixel series {name!r}")
    return values.cpu().numpy().astype(float)


def lag_similarity(feats: torch.Tensor, lag: int) -> float:
    """Mean over t >= lag of cos(phi_t, phi_{t-lag}); feats [T, D] normalised, lag < T."""
    return float((feats[lag:] * feats[:-lag]).sum(-1).mean())


@dataclass
class DriftConfig:
    encoder: str = "clip-vit-b32"  # image(-text) encoder for text, first_frame and lags
    series: list[str] = field(default_factory=lambda: ["text", "first_frame", *PIXEL_SERIES])
    lags: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 50])  # in frames
    batch: int = 64

    def __post_init__(self) -> None:
        allowed = (*FEATURE_SERIES, *PIXEL_SERIES)
        bad = [s for s in self.series if s not in allowed]
        require(not bad, "drift.series", bad, f"allowed: {', '.join(allowed)}")
        require(all(int(lag) >= 1 for lag in self.lags), "drift.lags", list(self.lags), "lags must be >= 1 frame")
        require(self.batch > 0, "drift.batch", self.batch, "must be > 0")


def drift(frames: torch.Tensor, meta: VideoMeta, encoder: Any = None,
          config: DriftConfig | None = None) -> MetricOutput:
    """frames [T, C, H, W] in [0, 1] -> drift entries of every series in ``config.series`` and
    the lag curve (module doc); ``encoder`` (reported as ``config.encoder``) is needed for the
    feature series and lags, None when there are none."""
    cfg = config or DriftConfig()
    enc, T = cfg.encoder, len(frames)
    out = MetricOutput()
    feats = image_features(encoder, frames, cfg.batch) if uses_features(cfg) else None
    for name in cfg.series:
        if name in PIXEL_SERIES:
            values, first = pixel_series(frames, name), 0
        elif name == "text":
            if not meta.prompts:
                continue
            values, first = frame_text_scores(encoder, feats, meta), 0
        else:
            if T < 2:
                continue
            values, first = consistency_cosines(feats)[0], 1
        drift_entries(series_key(name, enc), drift_of(frame_series(values, first, meta.fps), meta.segment_seconds), out)
    for lag in sorted({int(lag) for lag in cfg.lags}):
        if lag < T:
            out.scalars[metric_key(f"lag_similarity_{lag}", enc)] = lag_similarity(feats, lag)
    return out


def uses_features(config: DriftConfig) -> bool:
    """Does ``config`` need image features (a feature series or a lag)?"""
    return any(s in FEATURE_SERIES for s in config.series) or len(config.lags) > 0


@METRICS.register("drift", config=DriftConfig)
class DriftMetric(Metric):
    """Delta drift, slope and segment curve of each configured series, and the lag curve."""

    name = "drift"
    version = VERSION
    higher_is_better = True  # lag_similarity_<L>; drift keys: is_higher_better

    def is_higher_better(self, key: str) -> bool | None:
        """Drift keys by ``drift_direction`` of their series; lag similarities higher."""
        stat, part = split_key(key)
        if stat not in DRIFT_KEYS:
            return True
        encoder = (self.config or DriftConfig()).encoder
        by_key = {series_key(name, encoder): name for name in QUALITY}
        if part not in by_key:
            raise ValueError(f"{key!r}: no drift series {part!r}; allowed: {', '.join(by_key)}")
        return drift_direction(stat, QUALITY[by_key[part]])

    @classmethod
    def needs(cls, config: DriftConfig | None) -> tuple[str, ...]:
        cfg = config or DriftConfig()
        return (cfg.encoder,) if uses_features(cfg) else ()

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        cfg = self.config or DriftConfig()
        return drift(frames, meta, self.models.get(cfg.encoder), cfg)
