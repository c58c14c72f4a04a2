"""The three feature-model interfaces, their registry and the input checks they share.

- ``Encoder``: frames [N, 3, H, W] in [0, 1] -> L2-normalised features [N, D]; image-text
  encoders also map prompts to [N, D] in the same space.
- ``FlowModel``: two frame batches [N, 3, H, W] in [0, 1] -> pixel displacement
  [N, 2, H, W] from the first to the second.
- ``PerceptualDistance``: two frame batches [N, 3, H, W] in [0, 1] -> distances [N].

Every model records its registered ``name`` and the ``weights_file`` it was loaded from
(None for a model built without weights). Models read and write their weights in one
file layout (``export_state_dict``); ``adapt_state_dict`` maps other published layouts
onto it before the keys are checked.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import Registry

ENCODERS = Registry("encoder")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureModel(nn.Module):
    """Common part of every registered model: name, weights bookkeeping, file layout."""

    name: str
    needs_weights: bool = True
    # Published file names accepted besides <name with underscores>.<suffix>.
    aliases: tuple[str, ...] = ()
    weights_file: Path | None = None

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict in the layout of this model's weights file."""
        return self.state_dict()

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map another published layout of the same weights onto ``export_state_dict``'s."""
        return state

    def import_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict already checked against ``export_state_dict``'s keys and shapes."""
        self.load_state_dict(state)

    def describe(self) -> dict[str, str | None]:
        """What a result record needs to name this model."""
        return {"encoder": self.name, "weights_file": str(self.weights_file) if self.weights_file else None}


class Encoder(FeatureModel, ABC):
    dim: int

    @abstractmethod
    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, D], L2-normalised."""

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [N, D], L2-normalised (image-text encoders only)."""
        raise NotImplementedError(f"{self.name} has no text tower")


class FlowModel(FeatureModel, ABC):
    @abstractmethod
    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N, 3, H, W] in [0, 1] -> [N, 2, H, W] float32 pixel displacement from a to b:
        channel 0 is x (columns, right > 0), channel 1 is y (rows, down > 0), so that
        a[y, x] matches b[y + flow_y, x + flow_x]."""


class PerceptualDistance(FeatureModel, ABC):
    @abstractmethod
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N, 3, H, W] in [0, 1] -> [N] float32, 0 for identical frames."""


def unit_frames(frames: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Check frames [N, 1 or 3, H, W] of floats in [0, 1]; return them as float32 RGB on ``device``.

    Raises ValueError for another shape, an integer dtype or values outside [0, 1].
    """
    if frames.ndim != 4 or frames.shape[1] not in (1, 3) or len(frames) == 0:
        raise ValueError(f"frames must be [N, 3, H, W] (or [N, 1, H, W]); got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be floats in [0, 1]; got dtype {frames.dtype}")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -1e-6 or hi > 1 + 1e-6 or lo != lo or hi != hi:
        raise ValueError(f"frames must be in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
    frames = frames.to(device=device, dtype=torch.float32)
    return frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames


def unit_pair(a: torch.Tensor, b: torch.Tensor, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``unit_frames`` on both, which must have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"frame batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return unit_frames(a, device), unit_frames(b, device)


def resize_shorter(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> shorter side ``size``, aspect kept (longer side truncated, as
    torchvision's Resize(size) does); bicubic with antialiasing, clamped back to [0, 1]
    the way an 8-bit image resize clips its overshoot."""
    h, w = frames.shape[-2:]
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    if new == (h, w):
        return frames
    out = F.interpolate(frames, size=new, mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0, 1)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] with H, W >= size -> [N, C, size, size] (offsets rounded as torchvision's)."""
    h, w = frames.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return frames[..., top:top + size, left:left + size]


def normalise(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x - mean) / std on [N, 3, H, W]."""
    m = frames.new_tensor(mean).view(1, 3, 1, 1)
    s = frames.new_tensor(std).view(1, 3, 1, 1)
    return (frames - m) / s


def model_device(model: Any) -> torch.device | None:
    """The device of a module's first parameter or buffer, or ``model.device`` for another
    object (a test stand-in); None for neither: it runs wherever its inputs are."""
    if isinstance(model, nn.Module):
        tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
        return tensor.device if tensor is not None else None
    return getattr(model, "device", None)
