"""``dino-vitb16``: DINO ViT-B/16 image features (the CLS token after the final norm).

The architecture is timm's ``vit_base_patch16_224`` with ``num_classes=0`` and random
weights; the file holds timm's ViT state dict (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.<i>.*``, ``norm.*``). DINO's published backbone file
(dino_vitbase16_pretrain.pth) has exactly these keys and is accepted under its own name;
a "backbone." prefix is dropped and "head.*" keys (the DINO projection head) are ignored.

Preprocessing follows VBench's subject consistency: shorter side to 224 (bicubic,
antialiased), no crop, ImageNet mean/std. Other aspect ratios use a bicubically
interpolated position embedding (timm's ``dynamic_img_size``; DINO's own interpolation
differs slightly in rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metrics.encoders.base import (
    ENCODERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    model_device,
    normalise,
    resize_shorter,
    unit_frames,
)

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


@dataclass
class DinoConfig:
    """image_size: shorter side after resizing (the tiny model always uses 32)."""

    image_size: int = 224
    tiny: bool = False


@ENCODERS.register("dino-vitb16", config=DinoConfig)
class DinoViTB16(Encoder):
    name = "dino-vitb16"
    aliases = ("dino_vitbase16_pretrain.pth",)

    def __init__(self, cfg: DinoConfig | None = None) -> None:
        import timm

        super().__init__()
        self.cfg = cfg = cfg or DinoConfig()
        extra = TINY_VIT if cfg.tiny else {}
        self.model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0,
                                       dynamic_img_size=True, **extra)
        self.dim = self.model.num_features
        self.image_size = TINY_VIT["img_size"] if cfg.tiny else cfg.image_size

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in state.items():
            key = key.removeprefix("backbone.")
            if not key.startswith("head."):
                out[key] = value
        return out

    def import_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 3, H', W'] normalised: shorter side image_size, then
        the right and bottom rest past a whole number of patches dropped (as DINO's
        strided patch convolution drops it)."""
        frames = resize_shorter(unit_frames(frames, model_device(self)), self.image_size)
        p = self.model.patch_embed.patch_size[0]
        frames = frames[..., :frames.shape[-2] // p * p, :frames.shape[-1] // p * p]
        return normalise(frames, IMAGENET_MEAN, IMAGENET_STD)

    @torch.no_grad()
    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 768] float32 (32 tiny), L2-normalised CLS features."""
        return F.normalize(self.model(self.preprocess(frames)).float(), dim=-1)
