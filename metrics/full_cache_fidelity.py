"""Fidelity to the full-cache rollout inside the trained horizon: the primary score where
there is no ground truth (real backbones).

Inside the horizon the full cache is what the backbone was trained on, so its rollout of
the same prompt, seed, prefix and sampler is the best available answer to "what should
these frames be". The runner rolls it out once per run (``horizon_frames`` frames, a few
chunks) and hands it over as ``meta.reference_frames`` ([R, C, H, W] in [0, 1], quantised
like the saved frames). With frames f_t and reference r_t:

- ``full_cache_psnr``: mean over the generated frames inside the horizon (prefix_frames
  <= t < min(T, R)) of PSNR(f_t, r_t), each capped at 60 dB (identical frames). Higher
  is better. A cache method that keeps what the backbone needs inside the horizon matches
  the full cache; one that drops, scrambles or freezes entries does not. Past the
  horizon the full cache itself leaves the trained positions, so no reference exists
  there: long-horizon quality on real backbones is left to the VBench-style families.

Not applicable (ValueError) without a reference or without a generated frame inside it.
The PSNR is torchmetrics' ``peak_signal_noise_ratio`` per frame, capped (metrics/psnr.py);
``full_cache_psnr(frames, reference, prefix_frames)`` is the functional form.
"""

from __future__ import annotations

import torch

from metrics.base import METRICS, Metric, MetricOutput, VideoMeta
from metrics.psnr import frame_psnr

VERSION = "full-cache-fidelity-v1"


def full_cache_psnr(frames: torch.Tensor, reference: torch.Tensor | None, prefix_frames: int = 0) -> float:
    """frames [T, C, H, W] and reference [R, C, H, W] in [0, 1] -> mean PSNR (dB, each frame
    capped at 60) over frames prefix_frames <= t < min(T, R). ValueError without a reference
    or without such a frame."""
    if reference is None:
        raise ValueError("no full-cache reference rollout was given (meta.reference_frames)")
    end = min(len(frames), len(reference))
    if end <= prefix_frames:
        raise ValueError(f"no generated frame inside the {len(reference)}-frame reference "
                         f"(prefix {prefix_frames} frames)")
    return float(frame_psnr(frames[prefix_frames:end], reference[prefix_frames:end]).mean())


@METRICS.register("full_cache_fidelity")
class FullCacheFidelity(Metric):
    """PSNR to the full-cache rollout over the generated frames inside the horizon (module doc)."""

    name = "full_cache_fidelity"
    version = VERSION
    higher_is_better = {"full_cache_psnr": True}

    def score(self, frames: torch.Tensor, meta: VideoMeta) -> MetricOutput:
        return MetricOutput({"full_cache_psnr": full_cache_psnr(frames, meta.reference_frames, meta.prefix_frames)})
