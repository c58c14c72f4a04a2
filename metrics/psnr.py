"""PSNR for the metrics that report one (oracle, full_cache_fidelity), on torchmetrics.

Every PSNR here is ``torchmetrics.functional.image.peak_signal_noise_ratio`` with
``data_range=1`` (frames in [0, 1]) on float64 copies of the inputs, capped at
``PSNR_CAP`` dB: identical images (MSE 0, infinite PSNR) score the cap, so a mean over
frames stays finite. That is -10 log10(max(MSE, 10^(-PSNR_CAP / 10))), the formula of
``psnr`` below, which is kept for callers that hold an MSE and no images
(bench/tools/toy_diagnostic.py). torchmetrics turns nats into dB with 10 / ln(10) taken in
float32, so its values differ from that formula by less than 1e-7 relative.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

PSNR_CAP = 60.0


def psnr(mse: np.ndarray | float) -> np.ndarray:
    """MSE (of images in [0, 1]) -> PSNR in dB, capped at PSNR_CAP; any shape."""
    mse = np.maximum(np.asarray(mse, np.float64), 10 ** (-PSNR_CAP / 10))
    return -10 * np.log10(mse)


def _as_double(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x).detach().double()


def frame_psnr(frames: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> np.ndarray:
    """frames, reference [T, C, H, W] in [0, 1] -> [T] PSNR per frame (dB, capped), float64."""
    a, b = _as_double(frames), _as_double(reference)
    if a.shape != b.shape:
        raise ValueError(f"frames {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    if len(a) == 0:
        return np.zeros(0)
    db = peak_signal_noise_ratio(a, b.to(a.device), data_range=1.0, reduction="none", dim=tuple(range(1, a.ndim)))
    return db.clamp(max=PSNR_CAP).cpu().numpy()


def masked_psnr(frames: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                keep: torch.Tensor | np.ndarray) -> np.ndarray:
    """PSNR of each frame against its reference over its kept pixels only, in one batch.

    frames, reference [N, C, H, W] in [0, 1]; keep [N, H, W] bool (every channel of a kept
    pixel counts) -> [N] (dB, capped; PSNR_CAP for a frame with no kept pixel). The pixels
    left out are set equal to the reference, so their error is 0; torchmetrics' PSNR over
    all C H W values is then the PSNR over the kept ones shifted by the share of them:
    MSE_kept = MSE_all * H W / kept, i.e. PSNR_kept = PSNR_all - 10 log10(H W / kept)."""
    a, b = _as_double(frames), _as_double(reference)
    b = b.to(a.device)
    if a.shape != b.shape:
        raise ValueError(f"frames {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    if len(a) == 0:
        return np.zeros(0)
    keep = torch.as_tensor(keep, dtype=torch.bool, device=a.device)
    kept = keep.flatten(1).sum(1).double()
    a = torch.where(keep[:, None], a, b)
    db = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=tuple(range(1, a.ndim)))
    db = db - 10 * torch.log10(keep[0].numel() / kept)
    return torch.where(kept > 0, db.clamp(max=PSNR_CAP), PSNR_CAP).cpu().numpy()
