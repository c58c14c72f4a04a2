"""Frames to files: uint8 arrays and GIFs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.files import atomic_write_bytes


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [0, 1] -> [T, H, W, 3] uint8."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def save_gif(path: Path, frames: np.ndarray, fps: float, scale: int = 4) -> None:
    """frames: [T, H, W, 3] uint8; upscaled ``scale`` times (nearest) for viewing."""
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
              for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=0)
    atomic_write_bytes(path, buf.getvalue())


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, H, W] float32 in [0, 1]: the frames as saved, which is what is scored."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
