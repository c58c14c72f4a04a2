"""Does the toy backbone use its cache? A short diagnostic, run during training and by
``forcebench evaluate-toy``.

- cache gap: PSNR (dB) against the ground truth of the chunk that follows
  ``context_frames`` ground-truth frames given as context (written to the cache by the
  clean pass), minus the same after the first ``context_frames`` frames of *another seed*
  of the same prompt (a different layout, camera start and sprite starts). A backbone
  that ignores its cache scores the same with both contexts.
- pan consistency inside the horizon: free rollouts of ``horizon_frames`` frames; share
  of consecutive frame pairs whose estimated tile shift equals the camera's true step.

Both use the full cache (inside the horizon every method keeps everything).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.models.base import Backbone
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.world import OTHER_SEED_OFFSET, simulate
from methods import build_method
from methods.full import FullConfig
from metrics.oracle import pan_consistency, psnr


def next_chunk_psnr(model: Backbone, prompt: str, seed: int, context: np.ndarray, truth: np.ndarray,
                    sampler: FlowSampler) -> float:
    """PSNR of the chunk generated after ``context`` [P, 3, H, W] (in [0, 1]) against
    ``truth`` [F, 3, H, W]."""
    g = model.geometry
    P, F = len(context), g.frames_per_chunk
    prefill = torch.from_numpy(context)[None] * 2 - 1
    r = generate(model, build_method(FullConfig(), g), [(0.0, prompt)], P + F, seed, sampler, prefill=prefill)
    return float(psnr(((r.frames[P:].numpy() - truth) ** 2).mean()))


def cache_gap(model: Backbone, prompt: str, seed: int, sampler: FlowSampler, context_frames: int = 18) -> dict:
    """Next-chunk PSNR with the right context vs another seed's context (same prompt)."""
    F = model.geometry.frames_per_chunk
    truth = simulate([(0, prompt)], context_frames + F, seed).frames
    other = simulate([(0, prompt)], context_frames, seed + OTHER_SEED_OFFSET).frames
    right = next_chunk_psnr(model, prompt, seed, truth[:context_frames], truth[context_frames:], sampler)
    wrong = next_chunk_psnr(model, prompt, seed, other, truth[context_frames:], sampler)
    return {"next_chunk_psnr_right": right, "next_chunk_psnr_other": wrong, "cache_gap_db": right - wrong}


def free_pan_consistency(model: Backbone, prompt: str, seed: int, sampler: FlowSampler) -> float:
    """Pan consistency of a free rollout over the trained horizon."""
    g = model.geometry
    frames = g.horizon_frames
    r = generate(model, build_method(FullConfig(), g), [(0.0, prompt)], frames, seed, sampler)
    truth = simulate([(0, prompt)], frames, seed)
    return pan_consistency(r.frames.numpy(), truth.camera_step)


DIAGNOSTIC_PROMPTS = (
    "forest blocks, red square bouncing, camera pans right",
    "desert stripes, white cross sliding, camera pans left",
    "ocean dots, red ring resting, camera pans right",
    "city bricks, yellow square bouncing, camera pans left",
    "forest dots, yellow cross sliding, camera still",
    "city stripes, white ring bouncing, camera still",
)


@torch.no_grad()
def diagnostic(model: Backbone, seeds: tuple[int, ...] = (0, 1), steps: int = 4) -> dict:
    """Mean cache gap (panning and still prompts) and free pan consistency, per prompt too."""
    sampler = FlowSampler(steps=steps, shift=model.default_shift)
    rows = []
    for prompt in DIAGNOSTIC_PROMPTS:
        for seed in seeds:
            row = {"prompt": prompt, "seed": seed, **cache_gap(model, prompt, seed, sampler)}
            if "still" not in prompt:
                row["pan_consistency"] = free_pan_consistency(model, prompt, seed, sampler)
            rows.append(row)
    gaps = [r["cache_gap_db"] for r in rows]
    pans = [r["pan_consistency"] for r in rows if "pan_consistency" in r]
    return {"cache_gap_db": float(np.mean(gaps)), "pan_consistency": float(np.mean(pans)),
            "next_chunk_psnr_right": float(np.mean([r["next_chunk_psnr_right"] for r in rows])),
            "rows": rows}
