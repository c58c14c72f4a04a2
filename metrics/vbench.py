"""VBench dimensions, scored VBench-Long style on fixed-length clips.

Frames f_0..f_{T-1} ([T, C, H, W] in [0, 1]); phi = L2-normalised image features; q(f) =
round(255 f), the uint8 quantisation.

- ``subject_consistency[enc]`` (DINO, default dino-vitb16) and
  ``background_consistency[enc]`` (CLIP, default clip-vit-b32):
  s_i = 0.5 * (max(0, cos(phi_{i-1}, phi_i)) + max(0, cos(phi_0, phi_i))), mean over i >= 1.
  The two differ only by encoder, so when both are asked for with the same encoder (the
  toy set: toy-clip for both) only ``subject_consistency`` (and its clip-to-clip branch)
  is reported; ``background_consistency`` is left out, with the reason in
  ``MetricOutput.omitted`` (a row with status ``omitted: ...`` in metrics.csv).
- ``temporal_flickering``: (255 - mean |q(f_i) - q(f_{i+1})|) / 255.
- ``dynamic_degree[flow]``: frames subsampled to about ``flow_fps`` (every
  max(1, round(fps / flow_fps))-th frame, T' of them); per pair the mean of the top 5 % of
  flow magnitudes |F(p)| (series ``flow_magnitude[flow]``); 1 if at least
  max(1, round(4 T' / 16)) pairs exceed 6 * min(H, W) / 256, else 0. (VBench has no
  max(1, .); without it a frozen two-frame clip would count as dynamic.) No direction:
  more motion is not better (a cache that breaks into jumps scores 1), nor is less.
- ``motion_smoothness[flow-interp-<flow>]``: each odd frame f_{2k+1} is rebuilt from its
  even neighbours a = f_{2k}, b = f_{2k+2} and the flow F = flow(a, b) by backward warping
  halfway, m(p) = 0.5 * (a(p - F(p)/2) + b(p + F(p)/2)) (bilinear, border padding); score
  (255 - mean |q(f_{2k+1}) - q(m)|) / 255. VBench interpolates with AMT-S instead, hence
  the key.
- ``aesthetic_quality[enc]``: LAION linear head on CLIP ViT-L/14 features, mean over
  frames, / 10. The head is read from ``laion_aesthetic.safetensors`` (``weight`` [1, D],
  ``bias`` [1]) in $FORCEBENCH_WEIGHTS or the shipped weights dir, never downloaded.

VBench-Long: the video is split into clips of ``clip_seconds`` (2 s, the default segment
length of every per-segment series, ``SEGMENT_SECONDS``; ``segment_bounds``: a
short tail joins the clip before it); each dimension is scored per clip (the series, one
entry per clip) and the scalar is the mean over clips. ``clip_seconds = None`` scores the
whole video as one clip (plain VBench). Subject and background consistency also score the
clip-to-clip video made of each clip's first frame: ``<dim>_clip2clip[enc]``.
``vbench(frames, meta, models, config)`` is the functional form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import require
from metrics.base import (
    METRICS,
    SEGMENT_SECONDS,
    Metric,
    MetricOutput,
    Series,
    VideoMeta,
    metric_key,
    segment_bounds,
)
from metrics.clip import image_features, map_pairs
from metrics.encoders import WEIGHTS_ENV, EncoderUnavailable, weights_dirs
from metrics.encoders.base import model_device

VERSION = "vbench-v2"  # v2: dynamic_degree has no direction; one consistency key per encoder
DIMENSIONS = ("subject_consistency", "background_consistency", "temporal_flickering",
              "dynamic_degree", "motion_smoothness", "aesthetic_quality")


def vbench_consistency(feats: torch.Tensor) -> float:
    """feats [T, D] normalised, T >= 2 -> mean over i >= 1 of s_i (module doc)."""
    to_prev = (feats[1:] * feats[:-1]).sum(-1).clamp(min=0)
    to_first = (feats[1:] @ feats[0]).clamp(min=0)
    return float((0.5 * (to_prev + to_first)).mean())


def quantise(frames: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> the uint8 values round(255 x), as float32."""
    return (frames.float() * 255).round().clamp(0, 255)


def temporal_flickering(frames: torch.Tensor) -> float:
    """frames [T >= 2, C, H, W] -> (255 - mean |q(f_i) - q(f_{i+1})|) / 255."""
    q = quantise(frames)
    return float((255 - (q[1:] - q[:-1]).abs().mean()) / 255)


def pair_flow(model: Any, a: torch.Tensor, b: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Flow a -> b ([N, 2, H, W] pixel displacement, channel 0 = x) for frames a, b [N, C, H, W]."""
    return map_pairs(model, "flow", a, b, batch)


def top_magnitude(flow: torch.Tensor, share: float = 0.05) -> torch.Tensor:
    """flow [N, 2, H, W] -> [N]: mean of the largest ``share`` of per-pixel magnitudes."""
    rad = flow.norm(dim=1).flatten(1)
    k = max(1, int(rad.shape[1] * share))
    return rad.topk(k, dim=1).values.mean(1)


def warp(frames: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(p) = frames(p + disp(p)); frames [N, C, H, W], disp [N, 2, H, W] pixels."""
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    x = (xs + disp[:, 0]) * 2 / max(w - 1, 1) - 1
    y = (ys + disp[:, 1]) * 2 / max(h - 1, 1) - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def motion_smoothness(frames: torch.Tensor, model: Any, batch: int = 16) -> float:
    """frames [T >= 3, C, H, W] -> (255 - mean |q(f_odd) - q(rebuilt)|) / 255 (module doc)."""
    frames = frames.float().cpu()  # the flow comes back on the CPU; warp beside it
    a, b, real = frames[0:-2:2], frames[2::2], frames[1:-1:2]
    flow = pair_flow(model, a, b, batch)
    mid = 0.5 * (warp(a, -0.5 * flow) + warp(b, 0.5 * flow))
    return float((255 - (quantise(real) - quantise(mid)).abs().mean()) / 255)


def load_aesthetic_head(name: str = "laion-aesthetic", weights_dir: str | Path | None = None) -> nn.Linear:
    """The LAION linear aesthetic head from ``<dir>/<name with _>.safetensors`` (``weight``
    [1, D], ``bias`` [1]), searched like encoder weights: ``weights_dir`` alone if given,
    else $FORCEBENCH_WEIGHTS (if set) and then the shipped weights dir."""
    from safetensors.torch import load_file

    folders = weights_dirs(weights_dir)
    stem = name.replace("-", "_") + ".safetensors"
    found = [f / stem for f in folders if (f / stem).is_file()]
    if not found:
        where = " or ".join(str(f.resolve()) for f in folders)
        raise EncoderUnavailable(f"aesthetic head {name!r}: weights file {stem} not found in {where} "
                                 f"(set {WEIGHTS_ENV} to the directory that holds it)")
    state = load_file(str(found[0]))
    head = nn.Linear(state["weight"].shape[1], 1)
    head.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
    return head.eval()


@dataclass
class VBenchConfig:
    dimensions: list[str] = field(default_factory=lambda: list(DIMENSIONS))
    subject_encoder: str = "dino-vitb16"
    background_encoder: str = "clip-vit-b32"
    aesthetic_encoder: str = "clip-vit-l14"
    aesthetic_head: str = "laion-aesthetic"
    flow: str = "raft"  # or flow-blockmatch
    flow_fps: float = 8.0  # dynamic degree subsamples frames to about this rate
    clip_seconds: float | None = SEGMENT_SECONDS  # VBench-Long clip length; None = the whole video
    batch: int = 32

    def __post_init__(self) -> None:
        bad = [d for d in self.dimensions if d not in DIMENSIONS]
        require(not bad, "vbench.dimensions", bad, f"allowed: {', '.join(DIMENSIONS)}")
        require(self.clip_seconds is None or self.clip_seconds > 0, "vbench.clip_seconds",
                self.clip_seconds, "must be > 0 or null")
        require(self.flow_fps > 0, "vbench.flow_fps", self.flow_fps, "must be > 0")
        require(self.batch > 0, "vbench.batch", self.batch, "must be > 0")


def same_as_subject(cfg: VBenchConfig) -> bool:
    """Would background_consistency repeat subject_consistency (both asked for, one encoder)?"""
    return "subject_consistency" in cfg.dimensions and cfg.background_encoder == cfg.subject_encoder


def vbench(frames: torch.Tensor, meta: VideoMeta, models: dict[str, Any], config: VBenchConfig | None = None
           ) -> MetricOutput:
    """frames [T, C, H, W] in [0, 1] -> the configured dimensions per clip (series) and their
    means over clips (scalars); ``models``: the encoders, flow model and aesthetic head the
    dimensions need, by name (``VBench.needs``)."""
    cfg = config or VBenchConfig()
    T = len(frames)
    clips = segment_bounds(T, meta.fps, cfg.clip_seconds) if cfg.clip_seconds else [(0, T)]
    out, feats = MetricOutput(), {}

    def features(enc: str) -> torch.Tensor:
        if enc not in feats:
            feats[enc] = image_features(models[enc], frames, cfg.batch)
        return feats[enc]

    def put(key: str, rows: list[tuple[int, int, float]]) -> None:
        if rows:
            out.series[key] = series = Series.from_rows(rows, meta.fps)
            out.scalars[key] = float(series.values.mean())

    for dim in cfg.dimensions:
        if dim == "background_consistency" and same_as_subject(cfg):
            why = (f"same encoder ({cfg.background_encoder}) and formula as "
                   f"{metric_key('subject_consistency', cfg.subject_encoder)}: the two would be one number")
            out.omitted[metric_key(dim, cfg.background_encoder)] = why
        elif dim in ("subject_consistency", "background_consistency"):
            enc = cfg.subject_encoder if dim == "subject_consistency" else cfg.background_encoder
            phi = features(enc)
            put(metric_key(dim, enc), [(a, b, vbench_consistency(phi[a:b])) for a, b in clips if b - a >= 2])
            if cfg.clip_seconds and len(clips) >= 2:
                out.scalars[metric_key(f"{dim}_clip2clip", enc)] = vbench_consistency(phi[[a for a, _ in clips]])
        elif dim == "temporal_flickering":
            put(dim, [(a, b, temporal_flickering(frames[a:b])) for a, b in clips if b - a >= 2])
        elif dim == "dynamic_degree":
            verdicts, pairs = dynamic_degree(frames, clips, meta.fps, models[cfg.flow], cfg)
            put(metric_key("dynamic_degree", cfg.flow), verdicts)
            put(metric_key("flow_magnitude", cfg.flow), pairs)
        elif dim == "motion_smoothness":
            model = models[cfg.flow]
            put(metric_key(dim, f"flow-interp-{cfg.flow}"),
                [(a, b, motion_smoothness(frames[a:b], model, cfg.batch)) for a, b in clips if b - a >= 3])
        elif dim == "aesthetic_quality":
            head = models[cfg.aesthetic_head]
            phi, device = features(cfg.aesthetic_encoder), model_device(head)
            with torch.no_grad():
                per_frame = head(phi.to(device) if device else phi).reshape(-1).float().cpu() / 10
            put(metric_key(dim, cfg.aesthetic_encoder), [(a, b, float(per_frame[a:b].mean())) for a, b in clips])
    return out


def dynamic_degree(frames: torch.Tensor, clips: list[tuple[int, int]], fps: float, flow: Any, cfg: VBenchConfig
                   ) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """(per clip (start, end, 1 if dynamic else 0), per subsampled pair (i, j, top-5 % flow
    magnitude)) for frames [T, C, H, W] (module doc)."""
    step = max(1, round(fps / cfg.flow_fps))
    threshold = 6.0 * min(frames.shape[-2:]) / 256
    verdicts, pairs = [], []
    for a, b in clips:
        idx = list(range(a, b, step))
        if len(idx) < 2:
            continue
        mags = top_magnitude(pair_flow(flow, frames[idx[:-1]], frames[idx[1:]], cfg.batch))
        moving = int((mags > threshold).sum()) >= max(1, round(4 * len(idx) / 16))
        verdicts.append((a, b, float(moving)))
        pairs += [(i, j, float(m)) for i, j, m in zip(idx[:-1], idx[1:], mags)]
    return verdicts, pairs


@METRICS.register("vbench", config=VBenchConfig)
class VBench(Metric):
    """The configured VBench dimensions, per clip and averaged over clips."""

    name = "vbench"
    version = VERSION
    higher_is_better = {"flow_magnitude": None, "dynamic_degree": None, "*": True}

    @classmethod
    def needs(cls, config: VBenchConfig | None) -> tuple[str, ...]:
        cfg = config or VBenchConfig()
        by_dim = {"subject_consistency": cfg.subject_encoder, "background_consistency": cfg.background_encoder,
                  "dynamic_degree": cfg.flow, "motion_smoothness": cfg.flow,
                  "aesthetic_quality": cfg.aesthetic_encoder}
        return tuple(dict.fromkeys(by_dim[d] for d in cfg.dimensions if d in by_dim))

    @classmethod
    def load_extra(cls, config: VBenchConfig | None, weights_dir: str | None) -> dict[str, Any]:
        cfg = config or VBenchConfig()
        if "aesthetic_quality" not in cfg.dimensions:
            return {}
        return {cfg.aesthetic_head: load_aesthetic_head(cfg.aesthetic_head, weights_dir)}

    def __init__(self, config: VBenchConfig | None = None, models: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        """The aesthetic head may be passed in ``models`` under ``config.aesthetic_head``;
        otherwise it is loaded from its file here, before any video is scored."""
        super().__init__(config, models, **kwargs)
        cfg = self.config or VBenchConfig()
        if "aesthetic_quality" in cfg.dimensions and cfg.aesthetic_head not in self.models:
            self.models[cfg.aesthetic_head] = load_aesthetic_head(cfg.aesthetic_head)

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return vbench(frames, meta, self.models, self.config)
