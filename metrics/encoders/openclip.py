"""``clip-vit-b32`` and ``clip-vit-l14``: open_clip's ViT-B-32 and ViT-L-14, image and text towers.

Built with open_clip's architecture configs and random weights (nothing is downloaded),
then loaded from a local file holding open_clip's CLIP state dict (``visual.*``,
``transformer.*``, ``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``,
``text_projection``, ``logit_scale``). OpenAI's own checkpoints use the same keys; the
extra ``input_resolution``, ``context_length`` and ``vocab_size`` entries of their state
dicts are dropped. TorchScript archives are not read: save their ``state_dict()``.

Preprocessing is CLIP's own, inside ``encode_image``: shorter side to 224 (bicubic,
antialiased), center crop 224 x 224, OpenAI mean/std. Text goes through open_clip's BPE
tokenizer (shipped with open_clip), 77 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metrics.encoders.base import (
    ENCODERS,
    OPENAI_MEAN,
    OPENAI_STD,
    Encoder,
    center_crop,
    model_device,
    normalise,
    resize_shorter,
    unit_frames,
)

# Same layout as the real configs, a few hundred times smaller; the tokenizer's vocabulary stays.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class OpenClipConfig:
    """quick_gelu: True for OpenAI's weights (the CLIP that VBench uses), False for weights
    trained in open_clip with plain GELU (LAION, DataComp); tiny: TINY_CLIP, for tests."""

    quick_gelu: bool = True
    tiny: bool = False


class OpenClipEncoder(Encoder):
    arch: str

    def __init__(self, cfg: OpenClipConfig | None = None) -> None:
        import open_clip
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        super().__init__()
        self.cfg = cfg = cfg or OpenClipConfig()
        model_cfg = open_clip.get_model_config(self.arch) if not cfg.tiny else {
            k: dict(v) if isinstance(v, dict) else v for k, v in TINY_CLIP.items()}
        self.model = CLIP(**model_cfg, quick_gelu=cfg.quick_gelu)
        self.dim = model_cfg["embed_dim"]
        self.image_size = model_cfg["vision_cfg"]["image_size"]
        self.tokenizer = SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}

    def import_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 3, S, S] normalised, S the tower's image size (224)."""
        frames = unit_frames(frames, model_device(self))
        frames = center_crop(resize_shorter(frames, self.image_size), self.image_size)
        return normalise(frames, OPENAI_MEAN, OPENAI_STD)

    @torch.no_grad()
    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, D] float32, L2-normalised (D = 512 for B/32, 768 for L/14)."""
        return self.model.encode_image(self.preprocess(frames), normalize=True).float()

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [N, D] float32, L2-normalised; longer prompts are cut at the context length."""
        ids = self.tokenizer(list(prompts)).to(model_device(self))
        return self.model.encode_text(ids, normalize=True).float()


@ENCODERS.register("clip-vit-b32", config=OpenClipConfig)
class ClipViTB32(OpenClipEncoder):
    name, arch = "clip-vit-b32", "ViT-B-32"


@ENCODERS.register("clip-vit-l14", config=OpenClipConfig)
class ClipViTL14(OpenClipEncoder):
    name, arch = "clip-vit-l14", "ViT-L-14"
