"""The one metric interface: ``Metric``, a ``torchmetrics.Metric`` (``update``, ``compute``, ``reset``).

A metric sees one video at a time: frames [T, C, H, W] in [0, 1] plus its metadata
(frames per second, the prompt timeline). ``update`` scores the video and keeps its
output; ``compute`` returns every video's output since the last ``reset``. Aggregation
across videos is always by video (the mean of per-video scores), never by frame, so
long and short videos weigh the same.

An output holds scalars (one number for the whole video) and series (per frame or per
segment, with their times). Result keys name the metric and, for feature-based metrics,
the encoder: ``subject_consistency[toy-clip]``, ``drift[toy-clip-text]``. Per-segment
series use segments of ``SEGMENT_SECONDS`` (2 s, VBench-Long's clip length) unless the
run says otherwise: short enough to resolve an artefact that repeats every 5 s (the
trained horizon), which a 5 s segment would average away.

Each metric module has a functional form beside its class, as torchmetrics.functional
does: a plain function of the frames (and the parameters and models it needs) that
returns the video's ``MetricOutput`` or score; the class's ``score`` calls it.

``Metric``'s torchmetrics state is two list states, one entry per video
scored since ``reset`` (``dist_reduce_fx=None``: gathered as lists, never summed):

- ``values``: float64 [N], the output's numbers in layout order (each scalar, then per
  series its fps, starts, ends and values), exact for Python floats and frame indices;
- ``layouts``: uint8 [B], the UTF-8 JSON of the names around them (scalar keys, series
  keys and lengths, and the ``omitted`` reasons).

torchmetrics list states move with ``.to()`` and are copied and gathered element by
element, so they hold tensors, not the ``MetricOutput`` dataclass: ``update`` encodes the
video's output (``encode_output``) and ``compute`` rebuilds it (``decode_output``).
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchmetrics

from core.registry import Registry
from core.timeline import frame_timeline

METRICS = Registry("metric")
SEGMENT_SECONDS = 2.0  # default segment length of per-segment series (= VBench-Long clips)


@dataclass
class VideoMeta:
    """What a metric may know about a video besides its frames.

    prompts: the prompt timeline as (start second, text), sorted, the first at 0; a switch
    takes effect at the first chunk of ``frames_per_chunk`` frames that starts at or after
    its time (as in the rollout). frames_per_chunk: frames the generator writes per
    autoregressive step (the runner fills it from the backbone's geometry; 1 = no chunk
    structure known). seed, model and chunks (the rollout's per-chunk records:
    frame_end, wall_s, kv_bytes, tokens) are there for the oracle and system metrics;
    reference_frames (the full-cache rollout inside the horizon) for full_cache_fidelity.
    """

    fps: float
    prompts: list[tuple[float, str]] = field(default_factory=list)
    segment_seconds: float = SEGMENT_SECONDS
    frames_per_chunk: int = 1
    prefix_frames: int = 0  # leading frames given as context (ground truth), not generated
    seed: int | None = None
    model: str = ""
    chunks: list[Any] = field(default_factory=list)
    reference_frames: Any = None  # [R, C, H, W] full-cache rollout inside the horizon (full_cache_fidelity)

    def prompt_frames(self) -> list[tuple[int, str]]:
        """[(first frame, text)]: where each prompt takes effect."""
        return frame_timeline(self.prompts, self.fps, self.frames_per_chunk)

    def prompt_at(self, frame: int) -> str:
        """The prompt active at ``frame``."""
        active = [text for start, text in self.prompt_frames() if start <= frame]
        return active[-1] if active else ""


@dataclass
class Series:
    """values[i] belongs to frames [starts[i], ends[i]) (per frame: ends = starts + 1)."""

    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        self.starts, self.ends = np.asarray(self.starts, int), np.asarray(self.ends, int)
        self.values = np.asarray(self.values, float)
        if not (len(self.starts) == len(self.ends) == len(self.values)):
            raise ValueError("series starts, ends and values must have the same length")

    @property
    def seconds(self) -> np.ndarray:
        """Centre time of each entry, in seconds."""
        return (self.starts + self.ends) / 2 / self.fps

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, int, float]], fps: float) -> Series:
        """A series from (start, end, value) rows; an empty one for no rows."""
        rows = list(rows)
        starts, ends, values = (np.array(col) for col in zip(*rows)) if rows else ([], [], [])
        return cls(starts, ends, values, fps)


@dataclass
class MetricOutput:
    """scalars and series by result key; omitted: result key -> why the metric left it out
    on purpose (recorded by the suite as a row with status ``omitted: <why>``)."""

    scalars: dict[str, float] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    omitted: dict[str, str] = field(default_factory=dict)


class Metric(torchmetrics.Metric):
    """Subclasses set ``name``, ``version`` and ``higher_is_better`` and implement
    ``score``; metrics that use feature models override ``needs``.

    ``higher_is_better`` is one bool for every key, or a dict from result name (the key
    without its ``[encoder]``) to bool, or None where no direction is better (a flow
    magnitude, a brightness slope), with the default under ``"*"`` (a class attribute,
    as torchmetrics' own; ``is_higher_better(key)`` reads it).
    """

    name: str
    version: str
    higher_is_better: bool | dict[str, bool | None] = True
    is_differentiable = False
    full_state_update = False  # one video's output never depends on the others'

    def is_higher_better(self, key: str) -> bool | None:
        if isinstance(self.higher_is_better, bool):
            return self.higher_is_better
        name = split_key(key)[0]
        return self.higher_is_better.get(name, self.higher_is_better.get("*", True))

    def __init__(self, config: Any = None, models: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """config: the metric's config dataclass (registered with it in METRICS);
        models: loaded feature models by encoder name (metrics/encoders), one for every
        name in ``needs(config)``; kept as given (shared between metrics, so ``.to()``
        moves the states, not the models). kwargs: torchmetrics.Metric's own; by default
        ``compute`` decodes the state each time (``compute_with_cache=False``), so that it never
        answers from before a ``merge_state`` or ``load_state_dict``."""
        super().__init__(**{"compute_with_cache": False, **kwargs})
        self.config = config
        self.models = dict(models or {})
        missing = [n for n in self.needs(config) if n not in self.models]
        if missing:
            raise ValueError(f"metric {self.name!r} needs the encoders {missing}")
        self.add_state("values", default=[], dist_reduce_fx=None)
        self.add_state("layouts", default=[], dist_reduce_fx=None)

    @classmethod
    def needs(cls, config: Any) -> tuple[str, ...]:
        """Encoder names this metric needs under ``config`` (default: none)."""
        return ()

    @classmethod
    def load_extra(cls, config: Any, weights_dir: str | None) -> dict[str, Any]:
        """Weights the metric needs that are not encoders (e.g. a linear head), loaded from
        ``weights_dir``; raises metrics.encoders.EncoderUnavailable when a file is missing."""
        return {}

    @abstractmethod
    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        """frames [T, C, H, W] in [0, 1] -> this video's scalars and series."""

    def update(self, frames: torch.Tensor, meta: VideoMeta) -> None:
        """Score one video (frames [T, C, H, W] in [0, 1]) and keep its output."""
        check_frames(frames)
        values, layout = encode_output(self.score(frames, meta))
        self.values.append(values.to(self.device))
        self.layouts.append(layout.to(self.device))

    def compute(self) -> list[MetricOutput]:
        """Every video's output since the last ``reset``, in the order scored."""
        return [decode_output(v, layout) for v, layout in zip(self.values, self.layouts)]


def encode_output(output: MetricOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """MetricOutput -> (values float64 [N], layout uint8 [B]): the state of one video (module doc)."""
    numbers = [float(v) for v in output.scalars.values()]
    for s in output.series.values():
        numbers += [float(s.fps), *s.starts.tolist(), *s.ends.tolist(), *s.values.tolist()]
    layout = {"scalars": list(output.scalars), "series": [[k, len(s.values)] for k, s in output.series.items()],
              "omitted": dict(output.omitted)}
    text = json.dumps(layout, ensure_ascii=False).encode()
    return torch.tensor(numbers, dtype=torch.float64), torch.frombuffer(bytearray(text), dtype=torch.uint8)


def decode_output(values: torch.Tensor, layout: torch.Tensor) -> MetricOutput:
    """The inverse of ``encode_output``."""
    spec = json.loads(bytes(layout.detach().cpu().to(torch.uint8).tolist()).decode())
    numbers = np.array(values.detach().cpu().tolist(), dtype=float)  # a copy: outputs never alias the state
    at = 0

    def take(n: int) -> np.ndarray:
        nonlocal at
        at += n
        return numbers[at - n:at]

    scalars = {key: float(v) for key, v in zip(spec["scalars"], take(len(spec["scalars"])))}
    series = {}
    for key, n in spec["series"]:
        fps = float(take(1)[0])
        series[key] = Series(take(n), take(n), take(n), fps)
    return MetricOutput(scalars, series, dict(spec["omitted"]))


def check_frames(frames: torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"frames must be [T, C, H, W] with C in (1, 3); got {tuple(frames.shape)}")
    if len(frames) == 0:
        raise ValueError("frames: the video is empty")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"frames must be in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")


def segment_bounds(num_frames: int, fps: float, seconds: float) -> list[tuple[int, int]]:
    """Split frames [0, num_frames) into segments of ``seconds`` (rounded to whole frames).

    A trailing remainder at least half a segment long is a segment of its own; a shorter
    one joins the segment before it (so no segment is shorter than half the length,
    unless the whole video is).
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames={num_frames}: must be > 0")
    if seconds <= 0:
        raise ValueError(f"segment_seconds={seconds}: must be > 0")
    length = max(1, round(seconds * fps))
    full, rest = divmod(num_frames, length)
    bounds = [(i * length, (i + 1) * length) for i in range(full)]
    if rest:
        if not bounds or rest * 2 >= length:
            bounds.append((full * length, num_frames))
        else:
            bounds[-1] = (bounds[-1][0], num_frames)
    return bounds


def segment_series(per_frame: np.ndarray, first_frame: int, meta: VideoMeta, num_frames: int) -> Series:
    """Average a per-frame series (values for frames first_frame..num_frames-1) over segments."""
    per_frame = np.asarray(per_frame, float)
    starts, ends, values = [], [], []
    for start, end in segment_bounds(num_frames, meta.fps, meta.segment_seconds):
        lo, hi = max(start, first_frame) - first_frame, end - first_frame
        if hi > lo:
            starts.append(start)
            ends.append(end)
            values.append(float(per_frame[lo:hi].mean()))
    return Series(np.array(starts), np.array(ends), np.array(values), meta.fps)


def frame_series(values: np.ndarray, first_frame: int, fps: float) -> Series:
    """A per-frame series whose first value belongs to ``first_frame``."""
    starts = first_frame + np.arange(len(values))
    return Series(starts, starts + 1, np.asarray(values, float), fps)


def metric_key(name: str, encoder: str | None = None) -> str:
    return f"{name}[{encoder}]" if encoder else name


def split_key(key: str) -> tuple[str, str]:
    """'subject_consistency[toy-clip]' -> ('subject_consistency', 'toy-clip'); no encoder -> ''."""
    if key.endswith("]") and "[" in key:
        name, encoder = key[:-1].split("[", 1)
        return name, encoder
    return key, ""


def long_rows(output: MetricOutput, metric: Metric) -> list[dict]:
    """One video's output as long-form rows: metric, encoder, segment (-1 = whole video),
    start_s, end_s, value, higher_is_better, version."""
    rows = []

    def common(key: str) -> dict:
        name, encoder = split_key(key)
        return {"metric": key, "name": name, "encoder": encoder, "family": metric.name,
                "higher_is_better": metric.is_higher_better(key), "version": metric.version}

    for key, value in output.scalars.items():
        rows.append({**common(key), "segment": -1, "start_s": math.nan, "end_s": math.nan, "value": float(value)})
    for key, s in output.series.items():
        for i, (a, b, v) in enumerate(zip(s.starts, s.ends, s.values)):
            rows.append({**common(key), "segment": i, "start_s": a / s.fps, "end_s": b / s.fps, "value": float(v)})
    return rows
