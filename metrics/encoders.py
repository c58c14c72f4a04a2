"""Feature encoders for feature-based metrics, behind one interface.

An encoder maps frames [N, 3, H, W] in [0, 1] to L2-normalised features [N, D] and,
if it is an image-text model, prompts to features in the same space. Every encoder is
registered by name in ``ENCODERS`` and loaded from local weights only.

``toy-clip`` is a small image-text contrastive model trained on the toy world
(bench/train_encoder.py); it is shipped in the repository and reported under its own
name, never as "CLIP".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.models.toy import tokenize
from bench.registry import Registry

ENCODERS = Registry("encoder")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "bench" / "models" / "weights"


class Encoder(nn.Module, ABC):
    name: str
    dim: int

    @abstractmethod
    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, D], L2-normalised."""

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [N, D], L2-normalised (image-text encoders only)."""
        raise NotImplementedError(f"{self.name} has no text tower")


@dataclass
class ToyClipConfig:
    image_size: int = 32
    dim: int = 64
    width: int = 32
    text_vocab: int = 1024
    text_len: int = 16


@ENCODERS.register("toy-clip", config=ToyClipConfig)
class ToyClip(Encoder):
    """Image tower: 3 strided convolutions (32 -> 4 x 4 x 4w) + linear; text tower: mean of
    word embeddings + MLP. Trained with a symmetric InfoNCE loss (bench/train_encoder.py)."""

    name = "toy-clip"

    def __init__(self, cfg: ToyClipConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ToyClipConfig()
        self.cfg, self.dim = cfg, cfg.dim
        w = cfg.width
        self.image = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(), nn.Linear(4 * w * (cfg.image_size // 8) ** 2, cfg.dim),
        )
        self.words = nn.Embedding(cfg.text_vocab, cfg.dim, padding_idx=0)
        self.text = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] != self.cfg.image_size:
            frames = F.interpolate(frames, size=(self.cfg.image_size,) * 2, mode="bilinear", antialias=True)
        return F.normalize(self.image(frames * 2 - 1), dim=-1)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.stack([tokenize(p, self.cfg.text_vocab, self.cfg.text_len) for p in prompts])
        ids = ids.to(self.words.weight.device)
        ids = torch.where(ids == 1, torch.zeros_like(ids), ids)  # drop the start token
        emb = self.words(ids).sum(1) / (ids != 0).sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text(emb), dim=-1)


def load_encoder(name: str, weights_dir: str | Path | None = None) -> Encoder:
    """Build ``name`` and load ``<weights_dir>/<name>.safetensors`` (default: the shipped dir)."""
    from safetensors.torch import load_file

    entry = ENCODERS.get(name)
    folder = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    file = folder / f"{name.replace('-', '_')}.safetensors"
    if not file.is_file():
        raise ConfigError(f"encoder {name!r}: weights file {file.name} not found in {folder.resolve()}")
    model = entry.cls(entry.config())
    model.load_state_dict(load_file(str(file)))
    return model.eval()
