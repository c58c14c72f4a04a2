"""Oracle metrics of the toy world: generated frames scored against exact ground truth.

Functions take generated frames ``[T, 3, 32, 32]`` in [0, 1] (numpy) and the
``WorldVideo`` that the same prompt schedule and seed define (core/world.py). Colours
are matched by L-infinity distance in RGB. The canvas layout, camera start and sprite
starts are random per seed, so a *freely* generated video is a different sample of the
prompt's world: it is compared on what must agree (palette, valid tiles, sprite look and
frequency, camera steps, self-consistency on revisits). After a ground-truth prefix
(``prefix_frames`` > 0) the continuation has one right answer, and PSNR against the
ground truth measures whether the cache kept what the video needs.

- continuation_psnr (the primary score): mean over generated frames after the
  ground-truth prefix of their PSNR against the ground-truth frames. Not applicable
  without a prefix.
- psnr_gt: the same over every frame of the range (prefix included).
- palette_fidelity: share of background pixels (not detected as a sprite colour) within
  PALETTE_TOL of a colour of the prompt's palette.
- sprite_presence: share of (frame, prompted sprite) pairs in which the sprite's colour
  is detected (at least DETECT_PIXELS pixels within SPRITE_TOL); ``sprite_presence_gt``
  is the same on the ground-truth video, ``sprite_presence_ratio`` their quotient.
- spurious_colours: share of frames in which a sprite colour that the active prompt does
  not name is detected. Reported with presence: drawing every colour is not a win.
- background_psnr: how well each frame is drawn from the world's tiles: every 8 x 8 tile
  is compared with the nearest tile the palette and pattern can draw (sprite-coloured
  pixels excluded); PSNR of the mean error, mean over frames.
- pan_consistency: share of consecutive frame pairs whose estimated shift (the one-tile
  shift, -1, 0 or +1, under which the overlapping columns match best, uniquely) equals
  the camera's true step.
- revisit_psnr_within / revisit_psnr_beyond: for every frame whose true camera view was
  shown before, PSNR between the frame and the most recent earlier frame of the same
  view (sprite-coloured pixels of both masked), split by whether that frame is at most
  ``window`` frames back. A panning camera returns after W frames (the canvas width).

Every PSNR is torchmetrics' ``peak_signal_noise_ratio`` capped at PSNR_CAP dB (identical
images; metrics/psnr.py). ``oracle(frames, meta, window)`` is the functional form of the
``oracle`` metric (whole video and per segment); the functions above it are its parts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from core.world import PALETTES, SPRITE_COLOURS, TILE, WorldVideo, simulate
from metrics.base import METRICS, Metric, MetricOutput, Series, VideoMeta, segment_bounds
from metrics.psnr import PSNR_CAP, frame_psnr, masked_psnr, psnr  # noqa: F401  (psnr: used by bench/tools)

VERSION = "oracle-v2"
PALETTE_TOL = 0.15
SPRITE_TOL = 0.2
DETECT_PIXELS = 6
_SPRITE_RGB = {name: np.array(rgb, np.float32) for name, rgb in SPRITE_COLOURS.items()}


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
        "sprite_presence_error": float(abs(presence - presence_gt)),
        "spurious_colours": float(spurious),
    }


def tile_drawing(frames: np.ndarray, tiles: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The nearest drawing of each frame from ``tiles``: every 8 x 8 frame tile replaced by
    the candidate with the least squared error on its kept pixels (the first on ties).

    frames: [T, 3, H, W]; tiles: [K, 3, 8, 8] (``WorldVideo.tiles``); keep: [T, H, W] bool
    -> [T, 3, H, W]."""
    T, C, H, W = frames.shape
    blocks = frames.reshape(T, C, H // TILE, TILE, W // TILE, TILE).transpose(0, 2, 4, 1, 3, 5)  # [T, r, c, 3, 8, 8]
    mask = keep.reshape(T, H // TILE, TILE, W // TILE, TILE).transpose(0, 1, 3, 2, 4)  # [T, r, c, 8, 8]
    err = ((blocks[:, :, :, None] - tiles[None, None, None]) ** 2).mean(axis=4)  # [T, r, c, K, 8, 8]
    best = (err * mask[:, :, :, None]).sum(axis=(-2, -1)).argmin(axis=-1)  # [T, r, c]
    return tiles[best].transpose(0, 3, 1, 4, 2, 5).reshape(T, C, H, W)


def tile_fidelity_psnr(frames: np.ndarray, tiles: np.ndarray, sprite: np.ndarray | None = None) -> np.ndarray:
    """Per frame: PSNR of the frame against its nearest drawing from ``tiles`` (``tile_drawing``)
    over the pixels not in ``sprite``.

    frames: [T, 3, H, W]; tiles: [K, 3, 8, 8]; sprite: [T, H, W] pixels left out -> [T]."""
    keep = ~(any_sprite_colour(frames) if sprite is None else sprite)
    return masked_psnr(frames, tile_drawing(frames, tiles, keep), keep)


def tile_shifts(frames: np.ndarray, margin: float = 1e-4) -> np.ndarray:
    """Per consecutive pair (t-1, t): the view shift in tiles (+1: the camera moved right,
    content moved left; -1; 0) under which the overlapping columns match best, or a
    sentinel 99 when no shift wins by ``margin`` (a uniform frame has no shift).

    frames: [T, 3, H, W] -> [T - 1] int."""
    prev, cur = frames[:-1], frames[1:]
    errors = np.stack([
        ((cur[..., :-TILE] - prev[..., TILE:]) ** 2).mean(axis=(1, 2, 3)),  # +1
        ((cur - prev) ** 2).mean(axis=(1, 2, 3)),  # 0
        ((cur[..., TILE:] - prev[..., :-TILE]) ** 2).mean(axis=(1, 2, 3)),  # -1
    ], axis=1)
    order = np.sort(errors, axis=1)
    shift = np.array([1, 0, -1])[errors.argmin(axis=1)]
    return np.where(order[:, 1] - order[:, 0] > margin, shift, 99)


def pan_consistency(frames: np.ndarray, camera_step: np.ndarray) -> float:
    """Share of consecutive pairs of ``frames`` [T, ...] whose estimated shift equals the
    true camera step (``WorldVideo.camera_step`` of the same frames, [T])."""
    if len(frames) < 2:
        return float("nan")
    return float((tile_shifts(np.asarray(frames, np.float32)) == camera_step[1:len(frames)]).mean())


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def revisit_psnr(frames: np.ndarray, camera: np.ndarray, window: int, first: int = 0,
                 sprite: np.ndarray | None = None) -> dict[str, float]:
    """PSNR between returns to an earlier true view (``camera`` [T], tiles) and that view's
    most recent earlier frame, split by how far back it was. Frames before ``first`` count
    as visits, not as returns."""
    sprite = any_sprite_colour(frames) if sprite is None else sprite
    last_seen: dict[int, int] = {}
    pairs, masks = [], []  # (frame, earlier frame of the same view), kept pixels
    for t in range(len(frames)):
        o = int(camera[t])
        if o in last_seen and t >= first:
            s = last_seen[o]
            keep = ~_dilate(sprite[t] | sprite[s])
            if keep.any():
                pairs.append((t, s))
                masks.append(keep)
        last_seen[o] = t
    within, beyond = [], []
    if pairs:
        now, then = (list(x) for x in zip(*pairs))
        for (t, s), db in zip(pairs, masked_psnr(frames[now], frames[then], np.stack(masks))):
            (within if t - s <= window else beyond).append(float(db))
    return {
        "revisit_psnr_within": float(np.mean(within)) if within else float("nan"),
        "revisit_psnr_beyond": float(np.mean(beyond)) if beyond else float("nan"),
        "revisits_within": float(len(within)),
        "revisits_beyond": float(len(beyond)),
    }


def frame_analysis(frames: np.ndarray, gt: WorldVideo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sprite-colour mask [T, H, W], tile-fidelity PSNR [T], PSNR vs ground truth [T]);
    each frame's entries depend on that frame alone, so one analysis serves every prefix."""
    frames = np.asarray(frames, np.float32)
    sprite = any_sprite_colour(frames)
    gt_psnr = frame_psnr(frames, gt.frames[:len(frames)])
    return sprite, tile_fidelity_psnr(frames, gt.tiles, sprite), gt_psnr


def oracle_scores(frames: np.ndarray, gt: WorldVideo, start: int = 0, stop: int | None = None,
                  window: int = 16, analysis: tuple | None = None, prefix_frames: int = 0) -> dict[str, float]:
    """Every oracle metric on frames [start, stop); revisits look back over the whole prefix.

    analysis: ``frame_analysis`` of these frames (or a longer run of them), if computed;
    prefix_frames: leading frames that were given (ground truth), not generated."""
    stop = len(frames) if stop is None else stop
    if stop > gt.frames.shape[0]:
        raise ValueError(f"frames up to {stop} requested but the ground truth has {gt.frames.shape[0]}")
    frames = np.asarray(frames[:stop], np.float32)
    part, gt_part = frames[start:], _slice(gt, start, stop)
    sprite, tile_psnr, gt_psnr = (x[:stop] for x in (analysis or frame_analysis(frames, gt)))
    generated = gt_psnr[max(start, prefix_frames):]
    return {
        "continuation_psnr": float(generated.mean()) if prefix_frames and len(generated) else float("nan"),
        "psnr_gt": float(gt_psnr[start:].mean()),
        "palette_fidelity": float(palette_fidelity(part, gt_part, sprite[start:]).mean()),
        **sprite_scores(part, gt_part),
        "background_psnr": float(tile_psnr[start:].mean()),
        "pan_consistency": pan_consistency(part, gt.camera_step[start:stop]),
        **revisit_psnr(frames, gt.camera, window, first=start, sprite=sprite),
    }


def _slice(gt: WorldVideo, start: int, stop: int) -> WorldVideo:
    return replace(gt, frames=gt.frames[start:stop], camera=gt.camera[start:stop], sprites=gt.sprites[start:stop],
                   sprite_colours=gt.sprite_colours[start:stop], scenes=gt.scenes[start:stop],
                   camera_step=gt.camera_step[start:stop])


@dataclass
class OracleConfig:
    window: int = 16  # revisits at most this many frames back count as "within"


SERIES = ("continuation_psnr", "psnr_gt", "palette_fidelity", "sprite_presence_error", "spurious_colours",
          "background_psnr", "pan_consistency", "revisit_psnr_beyond")


def oracle(frames: torch.Tensor, meta: VideoMeta, window: int = OracleConfig.window) -> MetricOutput:
    """The oracle metrics of a toy-world video: ``oracle_scores`` over the whole video (the
    scalars) and per segment (the series of SERIES; revisits look back over the whole
    prefix). The ground truth is simulated from the prompt timeline and seed.

    frames [T, 3, 32, 32] in [0, 1]; meta: model "toy" with its seed. ValueError otherwise."""
    if meta.model != "toy" or meta.seed is None:
        raise ValueError(f"the oracle metric needs a toy-world video with its seed (model={meta.model!r})")
    video = frames.detach().float().cpu().numpy()
    gt = simulate(meta.prompt_frames(), len(video), meta.seed)
    if video.shape[1:] != gt.frames.shape[1:]:
        h, w = gt.frames.shape[2:]
        raise ValueError(f"the oracle needs {h} x {w} toy-world frames; got {video.shape[2]} x {video.shape[3]}")
    kw = {"window": window, "analysis": frame_analysis(video, gt), "prefix_frames": meta.prefix_frames}
    scalars = oracle_scores(video, gt, 0, len(video), **kw)
    per_segment = [(a, b, oracle_scores(video, gt, a, b, **kw))
                   for a, b in segment_bounds(len(video), meta.fps, meta.segment_seconds)]
    series = {key: Series.from_rows(((a, b, s[key]) for a, b, s in per_segment), meta.fps) for key in SERIES}
    return MetricOutput(scalars, series)


@METRICS.register("oracle", config=OracleConfig)
class OracleMetric(Metric):
    """``oracle`` on the metric interface. Toy world only."""

    name = "oracle"
    version = VERSION
    higher_is_better = {"spurious_colours": False, "sprite_presence_error": False, "sprite_presence": None,
                        "sprite_presence_gt": None, "sprite_presence_ratio": None, "revisits_within": None,
                        "revisits_beyond": None, "*": True}
    SERIES = SERIES

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return oracle(frames, meta, (self.config or OracleConfig()).window)
