"""Oracle metrics of the toy world: generated frames scored against exact ground truth.

Functions take generated frames ``[T, 3, 32, 32]`` in [0, 1] (numpy) and the
``WorldVideo`` that the same prompt schedule and seed define (bench/world.py). Colours
are matched by L-infinity distance in RGB. Camera start, landmarks and sprite starts are
random per seed, so a freely generated video is a *different sample* of the same world:
metrics compare what must agree (palette, sprite look and frequency, step sizes, layout,
self-consistency), and PSNR against the ground-truth frames is only meaningful when the
model was given the ground truth as context.

- palette_fidelity: share of background pixels (not detected as a sprite colour) within
  PALETTE_TOL of a colour of the prompt's palette.
- sprite_presence: share of (frame, prompted sprite) pairs in which the sprite's colour
  is detected (at least DETECT_PIXELS pixels within SPRITE_TOL); ``sprite_presence_gt``
  is the same on the ground-truth video, ``sprite_presence_ratio`` their quotient.
- spurious_colours: share of frames in which a sprite colour that the active prompt does
  not name is detected. Reported with presence: drawing every colour is not a win.
- background_psnr: PSNR of each frame against the true canvas at the best-matching
  horizontal pixel offset (pixels of sprite colours excluded), mean over frames.
- pan_consistency: share of consecutive frame pairs whose best-matching offsets differ by
  the camera's true step (8 px for a pan, 0 when still; the direction is the sample's own).
- revisit_psnr_within / revisit_psnr_beyond: when the (estimated) view returns exactly to
  an earlier one, PSNR between the frame now and at the most recent earlier visit
  (sprite-coloured pixels of both masked), split by whether that visit is at most
  ``window`` frames back.
- psnr_gt: PSNR against the ground-truth frames.

PSNR is capped at PSNR_CAP dB (identical images).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from bench.world import PALETTES, SPRITE_COLOURS, TILE, WorldVideo, simulate
from metrics.base import METRICS, Metric, MetricOutput, Series, VideoMeta, segment_bounds

VERSION = "oracle-v1"
PALETTE_TOL = 0.15
SPRITE_TOL = 0.2
DETECT_PIXELS = 6
PSNR_CAP = 60.0
_SPRITE_RGB = {name: np.array(rgb, np.float32) for name, rgb in SPRITE_COLOURS.items()}


def psnr(mse: np.ndarray | float) -> np.ndarray:
    mse = np.maximum(np.asarray(mse, np.float64), 10 ** (-PSNR_CAP / 10))
    return -10 * np.log10(mse)


def colour_mask(frames: np.ndarray, rgb: np.ndarray, tol: float) -> np.ndarray:
    """[T, 3, H, W] -> [T, H, W] bool: pixels within ``tol`` (L-inf) of ``rgb``."""
    return (np.abs(frames - rgb[None, :, None, None]).max(axis=1) <= tol)


def any_sprite_colour(frames: np.ndarray) -> np.ndarray:
    return np.any([colour_mask(frames, rgb, SPRITE_TOL) for rgb in _SPRITE_RGB.values()], axis=0)


def prompted_colours(gt: WorldVideo, t: int) -> list[str]:
    return list(gt.sprite_colours[t])


def palette_fidelity(frames: np.ndarray, gt: WorldVideo, sprite: np.ndarray | None = None) -> np.ndarray:
    """Per frame: share of background pixels within PALETTE_TOL of a palette colour.

    sprite: [T, H, W] ``any_sprite_colour(frames)`` if already computed."""
    palette = np.array(PALETTES[gt.palette], np.float32)  # [3, 3]
    dist = np.abs(frames[:, None] - palette[None, :, :, None, None]).max(axis=2).min(axis=1)  # [T, H, W]
    background = ~(any_sprite_colour(frames) if sprite is None else sprite)
    return np.array([(d[m] <= PALETTE_TOL).mean() if m.any() else 0.0 for d, m in zip(dist, background)])


def _presence(frames: np.ndarray, gt: WorldVideo) -> tuple[float, float]:
    """(share of (frame, prompted sprite) pairs detected, share of frames with a spurious colour)."""
    detected = {name: colour_mask(frames, rgb, SPRITE_TOL).sum(axis=(1, 2)) >= DETECT_PIXELS
                for name, rgb in _SPRITE_RGB.items()}
    hits = pairs = spurious = 0
    for t in range(len(frames)):
        named = prompted_colours(gt, t)
        hits += sum(bool(detected[c][t]) for c in named)
        pairs += len(named)
        spurious += any(detected[c][t] for c in _SPRITE_RGB if c not in named)
    return hits / max(pairs, 1), spurious / len(frames)


def sprite_scores(frames: np.ndarray, gt: WorldVideo) -> dict[str, float]:
    """Presence of the prompted sprites (generated, ground truth, ratio) and spurious colours."""
    presence, spurious = _presence(frames, gt)
    presence_gt, _ = _presence(gt.frames[: len(frames)], gt)
    return {
        "sprite_presence": float(presence),
        "sprite_presence_gt": float(presence_gt),
        "sprite_presence_ratio": float(presence / presence_gt) if presence_gt else float("nan"),
        "spurious_colours": float(spurious),
    }


def best_offsets(frames: np.ndarray, canvas: np.ndarray,
                 sprite: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (best horizontal pixel offset into the canvas, PSNR there)."""
    T, _, H, W = frames.shape
    n = canvas.shape[2] - W + 1
    windows = np.stack([canvas[:, :, o:o + W] for o in range(n)])  # [n, 3, H, W]
    keep = ~(any_sprite_colour(frames) if sprite is None else sprite)  # [T, H, W]
    offsets, scores = np.zeros(T, np.int64), np.zeros(T)
    for t in range(T):
        err = ((windows - frames[t][None]) ** 2).mean(axis=1)  # [n, H, W]
        m = keep[t] if keep[t].any() else np.ones_like(keep[t])
        mse = err[:, m].mean(axis=1)
        offsets[t] = int(mse.argmin())
        scores[t] = float(psnr(mse.min()))
    return offsets, scores


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def revisit_psnr(frames: np.ndarray, offsets: np.ndarray, window: int, first: int = 0,
                 sprite: np.ndarray | None = None) -> dict[str, float]:
    """PSNR between returns to an exact earlier view (by ``offsets``), split by how far back
    the most recent visit was. Frames before ``first`` count as visits, not as returns."""
    sprite = any_sprite_colour(frames) if sprite is None else sprite
    last_seen: dict[int, int] = {}
    within, beyond = [], []
    for t in range(len(frames)):
        o = int(offsets[t])
        if o in last_seen and t >= first:
            s = last_seen[o]
            keep = ~_dilate(sprite[t] | sprite[s])
            if keep.any():
                mse = ((frames[t] - frames[s]) ** 2).mean(axis=0)[keep].mean()
                (within if t - s <= window else beyond).append(float(psnr(mse)))
        last_seen[o] = t
    return {
        "revisit_psnr_within": float(np.mean(within)) if within else float("nan"),
        "revisit_psnr_beyond": float(np.mean(beyond)) if beyond else float("nan"),
        "revisits_within": float(len(within)),
        "revisits_beyond": float(len(beyond)),
    }


def frame_analysis(frames: np.ndarray, gt: WorldVideo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sprite-colour mask [T, H, W], best offsets [T], background PSNR [T]); each frame's
    entries depend on that frame alone, so one analysis serves every prefix."""
    frames = np.asarray(frames, np.float32)
    sprite = any_sprite_colour(frames)
    offsets, bg_psnr = best_offsets(frames, gt.canvas, sprite)
    return sprite, offsets, bg_psnr


def oracle_scores(frames: np.ndarray, gt: WorldVideo, start: int = 0, stop: int | None = None,
                  window: int = 12, analysis: tuple | None = None) -> dict[str, float]:
    """Every oracle metric on frames [start, stop); revisits look back over the whole prefix.

    analysis: ``frame_analysis`` of these frames (or a longer run of them), if computed."""
    stop = len(frames) if stop is None else stop
    if stop > gt.frames.shape[0]:
        raise ValueError(f"frames up to {stop} requested but the ground truth has {gt.frames.shape[0]}")
    frames = np.asarray(frames[:stop], np.float32)
    part, gt_part = frames[start:], _slice(gt, start, stop)
    sprite, offsets, bg_psnr = (x[:stop] for x in (analysis or frame_analysis(frames, gt)))
    steps = np.abs(np.diff(offsets[start:]))
    true_steps = np.abs(np.diff(gt.camera[start:stop])) * TILE
    return {
        "palette_fidelity": float(palette_fidelity(part, gt_part, sprite[start:]).mean()),
        **sprite_scores(part, gt_part),
        "background_psnr": float(bg_psnr[start:].mean()),
        "pan_consistency": float((steps == true_steps).mean()) if len(part) > 1 else float("nan"),
        "psnr_gt": float(psnr(((part - gt.frames[start:stop]) ** 2).mean(axis=(1, 2, 3))).mean()),
        **revisit_psnr(frames, offsets, window, first=start, sprite=sprite),
    }


def _slice(gt: WorldVideo, start: int, stop: int) -> WorldVideo:
    return replace(gt, frames=gt.frames[start:stop], camera=gt.camera[start:stop], sprites=gt.sprites[start:stop],
                   sprite_colours=gt.sprite_colours[start:stop], scenes=gt.scenes[start:stop])


@dataclass
class OracleConfig:
    window: int = 16  # revisits at most this many frames back count as "within"


@METRICS.register("oracle", config=OracleConfig)
class OracleMetric(Metric):
    """The oracle metrics on the metric interface: scalars over the whole video, and a series
    per segment (revisits look back over the whole prefix). Toy world only: the ground
    truth is simulated from the video's prompt timeline and seed."""

    name = "oracle"
    version = VERSION
    higher_is_better = {"spurious_colours": False, "*": True}
    SERIES = ("palette_fidelity", "sprite_presence_ratio", "spurious_colours", "background_psnr",
              "pan_consistency", "revisit_psnr_beyond")

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        if meta.model != "toy" or meta.seed is None:
            raise ValueError(f"the oracle metric needs a toy-world video with its seed (model={meta.model!r})")
        video = frames.detach().float().cpu().numpy()
        gt = simulate(meta.prompt_frames(), len(video), meta.seed)
        if video.shape[1:] != gt.frames.shape[1:]:
            h, w = gt.frames.shape[2:]
            raise ValueError(f"the oracle needs {h} x {w} toy-world frames; got {video.shape[2]} x {video.shape[3]}")
        window = self.config.window if self.config else OracleConfig().window
        analysis = frame_analysis(video, gt)
        scalars = oracle_scores(video, gt, 0, len(video), window=window, analysis=analysis)
        per_segment = [(a, b, oracle_scores(video, gt, a, b, window=window, analysis=analysis))
                       for a, b in segment_bounds(len(video), meta.fps, meta.segment_seconds)]
        series = {key: Series(np.array([a for a, _, _ in per_segment]), np.array([b for _, b, _ in per_segment]),
                              np.array([s[key] for _, _, s in per_segment]), meta.fps) for key in self.SERIES}
        return MetricOutput(scalars, series)
