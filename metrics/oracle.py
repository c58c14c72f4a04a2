"""Oracle metrics of the toy world: generated frames scored against exact ground truth.

All functions take generated frames ``[T, 3, 32, 32]`` in [0, 1] (numpy) and the
``WorldVideo`` the prompt schedule and seed define (bench/world.py), and score the frame
range ``[start, stop)``. Colours are matched by L-infinity distance in RGB.

- palette_fidelity: share of background pixels (not under a ground-truth sprite) within
  PALETTE_TOL of a colour of the prompt's palette.
- sprite_presence: share of (frame, visible ground-truth sprite) pairs where the sprite's
  prompted colour is detected in the frame (at least DETECT_PIXELS pixels within
  SPRITE_TOL); ``sprite_presence_gt`` is the same on the ground-truth video (1.0) and
  ``sprite_presence_ratio`` their quotient. sprite_position: the colour is detected in
  the sprite's ground-truth tile.
- spurious_colours: share of frames where a sprite colour that no active prompt names is
  detected. Always reported with presence: drawing every colour everywhere is not a win.
- background_psnr: PSNR of each frame against the true canvas at the best-matching
  horizontal pixel offset (pixels detected as sprite colours excluded), mean over frames.
- pan_consistency: share of consecutive frame pairs whose best-matching offsets differ
  by exactly the camera's true move.
- revisit_psnr_within / revisit_psnr_beyond: when the camera returns to the exact view
  of an earlier frame, PSNR between the generated frames now and at the most recent
  earlier visit (ground-truth sprite tiles of both frames masked), split by whether that
  visit is at most ``window`` frames back.
- psnr_gt: PSNR against the ground-truth frames.

PSNR is capped at PSNR_CAP dB (identical images).
"""

from __future__ import annotations

import numpy as np

from bench.world import PALETTES, SHAPE_MASKS, SPRITE_COLOURS, TILE, WorldVideo

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


def gt_sprite_mask(gt: WorldVideo, t: int, dilate: bool = False) -> np.ndarray:
    """[32, 32] bool: pixels covered by ground-truth sprites in frame t (whole tiles if dilate)."""
    mask = np.zeros((32, 32), bool)
    cam = gt.camera[t]
    for (x, y, visible), shape in zip(gt.sprites[t], gt.sprite_shapes):
        if visible:
            sl = (slice(y * TILE, (y + 1) * TILE), slice((x - cam) * TILE, (x - cam + 1) * TILE))
            mask[sl] = True if dilate else mask[sl] | SHAPE_MASKS[shape]
    return mask


def palette_fidelity(frames: np.ndarray, gt: WorldVideo) -> np.ndarray:
    """Per frame: share of background pixels within PALETTE_TOL of a palette colour."""
    palette = np.array(PALETTES[gt.palette], np.float32)  # [3, 3]
    dist = np.abs(frames[:, None] - palette[None, :, :, None, None]).max(axis=2).min(axis=1)  # [T, H, W]
    out = []
    for i, t in enumerate(range(gt.frames.shape[0])[: len(frames)]):
        bg = ~gt_sprite_mask(gt, t)
        out.append(float((dist[i][bg] <= PALETTE_TOL).mean()))
    return np.array(out)


def sprite_scores(frames: np.ndarray, gt: WorldVideo) -> dict[str, float]:
    """Presence (generated and ground truth), position accuracy and spurious-colour rate."""
    detected = {name: colour_mask(frames, rgb, SPRITE_TOL) for name, rgb in _SPRITE_RGB.items()}
    detected_gt = {name: colour_mask(gt.frames[: len(frames)], rgb, SPRITE_TOL) for name, rgb in _SPRITE_RGB.items()}
    visible = present = present_gt = placed = 0
    spurious_frames = 0
    for t in range(len(frames)):
        named = set(gt.sprite_colours[t])
        cam = gt.camera[t]
        for (x, y, vis), colour in zip(gt.sprites[t], gt.sprite_colours[t]):
            if not vis:
                continue
            visible += 1
            present += detected[colour][t].sum() >= DETECT_PIXELS
            present_gt += detected_gt[colour][t].sum() >= DETECT_PIXELS
            tile = detected[colour][t, y * TILE:(y + 1) * TILE, (x - cam) * TILE:(x - cam + 1) * TILE]
            placed += tile.sum() >= DETECT_PIXELS
        others = [c for c in _SPRITE_RGB if c not in named]
        spurious_frames += any(detected[c][t].sum() >= DETECT_PIXELS for c in others)
    presence = present / visible if visible else float("nan")
    presence_gt = present_gt / visible if visible else float("nan")
    return {
        "sprite_presence": float(presence),
        "sprite_presence_gt": float(presence_gt),
        "sprite_presence_ratio": float(presence / presence_gt) if visible and presence_gt else float("nan"),
        "sprite_position": float(placed / visible) if visible else float("nan"),
        "spurious_colours": spurious_frames / len(frames),
        "sprite_visible_instances": float(visible),
    }


def best_offsets(frames: np.ndarray, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (best horizontal pixel offset into the canvas, PSNR there)."""
    T, _, H, W = frames.shape
    n = canvas.shape[2] - W + 1
    windows = np.stack([canvas[:, :, o:o + W] for o in range(n)])  # [n, 3, H, W]
    keep = ~any_sprite_colour(frames)  # [T, H, W]
    offsets, scores = np.zeros(T, np.int64), np.zeros(T)
    for t in range(T):
        err = ((windows - frames[t][None]) ** 2).mean(axis=1)  # [n, H, W]
        m = keep[t] if keep[t].any() else np.ones_like(keep[t])
        mse = err[:, m].mean(axis=1)
        offsets[t] = int(mse.argmin())
        scores[t] = float(psnr(mse.min()))
    return offsets, scores


def revisit_psnr(frames: np.ndarray, gt: WorldVideo, window: int, first: int = 0) -> dict[str, float]:
    """PSNR between returns to an exact earlier view, split by how far back the visit was.

    Frames before ``first`` count as earlier visits but are not scored as returns.
    """
    last_seen: dict[int, int] = {}
    within, beyond = [], []
    for t in range(len(frames)):
        cam = int(gt.camera[t])
        if cam in last_seen and t >= first:
            s = last_seen[cam]
            keep = ~(gt_sprite_mask(gt, t, dilate=True) | gt_sprite_mask(gt, s, dilate=True))
            if keep.any():
                mse = ((frames[t] - frames[s]) ** 2).mean(axis=0)[keep].mean()
                (within if t - s <= window else beyond).append(float(psnr(mse)))
        last_seen[cam] = t
    return {
        "revisit_psnr_within": float(np.mean(within)) if within else float("nan"),
        "revisit_psnr_beyond": float(np.mean(beyond)) if beyond else float("nan"),
        "revisits_within": float(len(within)),
        "revisits_beyond": float(len(beyond)),
    }


def oracle_scores(frames: np.ndarray, gt: WorldVideo, start: int = 0, stop: int | None = None,
                  window: int = 12) -> dict[str, float]:
    """Every oracle metric on frames [start, stop) (the whole prefix is used for revisits)."""
    stop = len(frames) if stop is None else stop
    if len(frames) > gt.frames.shape[0]:
        raise ValueError(f"{len(frames)} generated frames but ground truth has {gt.frames.shape[0]}")
    frames = np.asarray(frames, np.float32)
    part = frames[start:stop]
    gt_part = _slice(gt, start, stop)
    offsets, bg_psnr = best_offsets(part, gt.canvas)
    true_moves = np.diff(gt.camera[start:stop]) * TILE
    scores = {
        "palette_fidelity": float(palette_fidelity(part, gt_part).mean()),
        **sprite_scores(part, gt_part),
        "background_psnr": float(bg_psnr.mean()),
        "pan_consistency": float((np.diff(offsets) == true_moves).mean()) if len(part) > 1 else float("nan"),
        "psnr_gt": float(psnr(((part - gt.frames[start:stop]) ** 2).mean(axis=(1, 2, 3))).mean()),
    }
    revisits = revisit_psnr(frames[:stop], _slice(gt, 0, stop), window, first=start)
    return {**scores, **revisits}


def _slice(gt: WorldVideo, start: int, stop: int) -> WorldVideo:
    from dataclasses import replace

    return replace(gt, frames=gt.frames[start:stop], camera=gt.camera[start:stop], sprites=gt.sprites[start:stop],
                   sprite_colours=gt.sprite_colours[start:stop], scenes=gt.scenes[start:stop])
