"""``toy-clip``: a small image-text contrastive model trained on the toy world.

It is trained by bench/tools/train_encoder.py, shipped as bench/models/weights/toy_clip.safetensors
and reported under its own name, never as "CLIP".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.toy_text import tokenize
from metrics.encoders.base import ENCODERS, Encoder


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
    word embeddings + MLP. Trained with a symmetric InfoNCE loss (bench/tools/train_encoder.py)."""

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
