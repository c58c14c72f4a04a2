"""CLIP consistency and CLIP text-frame score, plus the feature helpers other metrics share.

With phi_t the L2-normalised image feature of frame t ([T, D]):

- ``clip_first_frame[enc]``: cos(phi_0, phi_i), mean over i >= 1;
- ``clip_prev_frame[enc]``: cos(phi_{i-1}, phi_i), mean over i >= 1;
- ``clip_text[enc]``: max(100 * cos(phi_t, psi(p_t)), 0), mean over all frames t, where
  p_t is the prompt active at frame t and psi the text feature.

Each is a scalar for the whole video and a series of per-segment means (segments of
``meta.segment_seconds``). For multi-prompt runs (several entries in ``meta.prompts``),
per prompt segment k (the frames during which prompt k is active):

- ``clip_text_active[enc]``: the text score against prompt k;
- ``clip_text_previous[enc]``: the text score against prompt k-1 (k >= 1), i.e. how
  much of the old prompt is still on screen after the switch (lower is better; every
  other key: higher).

Their scalars are the mean over prompt segments. ``clip(frames, meta, encoder, name)`` is
the functional form.

``clip_text`` is CLIPScore's formula per frame, but not torchmetrics' ``clip_score``: that
runs a Hugging Face ``CLIPModel`` and ``CLIPProcessor`` (loaded by name, or a callable that
returns such a pair), while these encoders are open_clip and toy-clip models with local
weights and their own preprocessing, and it returns max(mean over the batch of 100 cos, 0),
one number, where the series here need each frame's max(100 cos, 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError, require
from metrics.base import (
    METRICS,
    Metric,
    MetricOutput,
    Series,
    VideoMeta,
    metric_key,
    segment_series,
)
from metrics.encoders.base import model_device

VERSION = "clip-v2"  # v2: clip_text_previous is lower-is-better (was marked higher)


def as_rgb(frames: torch.Tensor) -> torch.Tensor:
    """[N, 1 or 3, H, W] -> [N, 3, H, W] float."""
    frames = frames.float()
    return frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames


@torch.no_grad()
def map_pairs(model: Any, method: str, a: torch.Tensor, b: torch.Tensor, batch: int) -> torch.Tensor:
    """``model.<method>(a_n, b_n)`` (or ``model(...)``) over frame pairs a, b [N, C, H, W], in
    batches on the model's device; the batches' results concatenated on the CPU as float."""
    fn, device = getattr(model, method, model), model_device(model)
    out = []
    for i in range(0, len(a), batch):
        x, y = as_rgb(a[i:i + batch]), as_rgb(b[i:i + batch])
        out.append((fn(x.to(device), y.to(device)) if device else fn(x, y)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def image_features(encoder: Any, frames: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """frames [T, C, H, W] in [0, 1] -> L2-normalised features [T, D] (float32, on the CPU)."""
    device = model_device(encoder)
    out = []
    for i in range(0, len(frames), batch):
        x = as_rgb(frames[i:i + batch])
        out.append(encoder.encode_image(x.to(device) if device else x).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def text_features(encoder: Any, prompts: list[str]) -> torch.Tensor:
    """prompts -> L2-normalised features [P, D]; one-line ConfigError if ``encoder`` has no text tower."""
    try:
        feats = encoder.encode_text(list(prompts))
    except NotImplementedError as err:
        raise ConfigError(f"encoder {getattr(encoder, 'name', encoder)!r}: no text tower; "
                          "a text score needs an image-text encoder") from err
    return F.normalize(feats.float().cpu(), dim=-1)


def consistency_cosines(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """feats [T, D] normalised -> (cos(phi_0, phi_i), cos(phi_{i-1}, phi_i)) for i = 1..T-1, each [T-1]."""
    to_first = (feats[1:] @ feats[0]).numpy()
    to_prev = (feats[1:] * feats[:-1]).sum(-1).numpy()
    return to_first.astype(float), to_prev.astype(float)


def prompt_indices(meta: VideoMeta, num_frames: int) -> np.ndarray:
    """[T] index into ``meta.prompts`` of the prompt active at each frame (-1: none),
    by the same rule as ``VideoMeta.prompt_at`` (``meta.prompt_frames``)."""
    starts = np.array([frame for frame, _ in meta.prompt_frames()], int)
    return (starts[None, :] <= np.arange(num_frames)[:, None]).sum(1) - 1


def text_scores(feats: torch.Tensor, text_feats: torch.Tensor, which: np.ndarray) -> np.ndarray:
    """Per frame max(100 * cos(phi_t, psi_{which[t]}), 0): feats [T, D], text_feats [P, D], which [T] -> [T]."""
    cos = (feats * text_feats[torch.as_tensor(which, dtype=torch.long)]).sum(-1)
    return (100 * cos).clamp(min=0).numpy().astype(float)


def frame_text_scores(encoder: Any, feats: torch.Tensor, meta: VideoMeta) -> np.ndarray:
    """The text score of every frame against its active prompt ([T]); frames before the
    first prompt (none in a valid timeline) score against the first prompt."""
    text = text_features(encoder, [p for _, p in meta.prompts])
    return text_scores(feats, text, np.maximum(prompt_indices(meta, len(feats)), 0))


def prompt_segments(meta: VideoMeta, num_frames: int) -> list[tuple[int, int, int]]:
    """(prompt index, first frame, end frame) for each run of frames with one active prompt."""
    which = prompt_indices(meta, num_frames)
    runs, start = [], 0
    for t in range(1, num_frames + 1):
        if t == num_frames or which[t] != which[start]:
            if which[start] >= 0:
                runs.append((int(which[start]), start, t))
            start = t
    return runs


@dataclass
class ClipConfig:
    encoder: str = "clip-vit-b32"  # any image(-text) encoder name, e.g. toy-clip
    text: bool = True  # also the text-frame score (needs a text tower and prompts)
    batch: int = 64

    def __post_init__(self) -> None:
        require(self.batch > 0, "clip.batch", self.batch, "must be > 0")


def clip(frames: torch.Tensor, meta: VideoMeta, encoder: Any, name: str = ClipConfig.encoder, text: bool = True,
         batch: int = ClipConfig.batch) -> MetricOutput:
    """frames [T, C, H, W] in [0, 1] -> the keys of the module doc for ``encoder`` (reported
    under ``name``): consistency for T >= 2, text scores when ``text`` and there are prompts."""
    T = len(frames)
    feats = image_features(encoder, frames, batch)
    out = MetricOutput()
    if T >= 2:
        to_first, to_prev = consistency_cosines(feats)
        for stat, values in (("clip_first_frame", to_first), ("clip_prev_frame", to_prev)):
            key = metric_key(stat, name)
            out.scalars[key] = float(values.mean())
            out.series[key] = segment_series(values, 1, meta, T)
    if text and meta.prompts:
        text_entries(out, encoder, feats, meta, name)
    return out


def text_entries(out: MetricOutput, encoder: Any, feats: torch.Tensor, meta: VideoMeta, name: str) -> None:
    """Add ``clip_text`` and, for several prompts, ``clip_text_active`` / ``clip_text_previous``
    to ``out``, from the normalised image features ``feats`` [T, D]."""
    T = len(feats)
    text = text_features(encoder, [p for _, p in meta.prompts])
    per_frame = text_scores(feats, text, np.maximum(prompt_indices(meta, T), 0))
    key = metric_key("clip_text", name)
    out.scalars[key] = float(per_frame.mean())
    out.series[key] = segment_series(per_frame, 0, meta, T)
    if len(meta.prompts) < 2:
        return
    for stat, shift in (("clip_text_active", 0), ("clip_text_previous", 1)):
        rows = [(a, b, text_scores(feats[a:b], text, np.full(b - a, k - shift)).mean())
                for k, a, b in prompt_segments(meta, T) if k - shift >= 0]
        if rows:
            series = Series.from_rows(rows, meta.fps)
            out.series[metric_key(stat, name)] = series
            out.scalars[metric_key(stat, name)] = float(series.values.mean())


@METRICS.register("clip", config=ClipConfig)
class ClipConsistency(Metric):
    """Frame-to-first, frame-to-previous and text-frame scores on one encoder."""

    name = "clip"
    version = VERSION
    higher_is_better = {"clip_text_previous": False, "*": True}

    @classmethod
    def needs(cls, config: ClipConfig | None) -> tuple[str, ...]:
        return ((config or ClipConfig()).encoder,)

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        cfg = self.config or ClipConfig()
        return clip(frames, meta, self.models[cfg.encoder], cfg.encoder, cfg.text, cfg.batch)
