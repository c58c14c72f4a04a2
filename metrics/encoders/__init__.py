"""Feature models for the metrics, one registry (``ENCODERS``), local weights only.

Three interfaces (metrics/encoders/base.py), all on frames [N, 3, H, W] in [0, 1]. Values
outside [0, 1] or integer frames raise ValueError and [N, 1, H, W] is taken as grey RGB,
except in toy-clip, which is kept exactly as it was trained and checks nothing:

- ``Encoder``: ``encode_image(frames) -> [N, D]`` and, for image-text models,
  ``encode_text(prompts) -> [N, D]``, both L2-normalised float32.
- ``FlowModel``: ``flow(a, b) -> [N, 2, H, W]``, pixel displacement (x, y) from a to b.
- ``PerceptualDistance``: ``distance(a, b) -> [N]``.

``load_encoder(name, weights_dir=None, device="cpu")`` builds a model and loads its file;
``build_encoder(name, tiny=True)`` builds a small random one of the same architecture for
tests. Without ``weights_dir`` the files are looked for in $FORCEBENCH_WEIGHTS, then in
the shipped bench/models/weights; a missing file raises ``EncoderUnavailable``, a file that
does not fit raises ``EncoderWeightsError`` (both one-line ``ConfigError``s). Each model
records ``name`` and ``weights_file``.

| name | kind | architecture | file (``.safetensors``, or ``.pt``/``.pth``/``.bin``) | contents; also accepted |
|---|---|---|---|---|
| toy-clip | Encoder, text | ToyClip (toy.py), 64-d | toy_clip (shipped) | ToyClip state dict |
| clip-vit-b32 | Encoder, text | open_clip ViT-B-32, 512-d | clip_vit_b32 | open_clip CLIP state dict (OpenAI keys too) |
| clip-vit-l14 | Encoder, text | open_clip ViT-L-14, 768-d | clip_vit_l14 | open_clip CLIP state dict (OpenAI keys too) |
| dino-vitb16 | Encoder | timm vit_base_patch16_224, CLS, 768-d | dino_vitb16 | timm ViT state dict; dino_vitbase16_pretrain.pth |
| raft | FlowModel | torchvision raft_large | raft | torchvision state dict; raft_large_C_T_SKHT_V2-ff5fadd5.pth, raft_large_C_T_V2-1bb1363a.pth |
| flow-blockmatch | FlowModel | whole-pixel block matching (stand-in) | none | - |
| lpips-alex | PerceptualDistance | lpips LPIPS v0.1, AlexNet trunk | lpips_alex | torchvision AlexNet state dict (features.*); alexnet-owt-7be5be79.pth |
| lpips-vgg | PerceptualDistance | lpips LPIPS v0.1, VGG-16 trunk | lpips_vgg | torchvision VGG-16 state dict (features.*); vgg16-397923af.pth |

CLIP uses QuickGELU by default (OpenAI's weights; ``quick_gelu=False`` for weights trained
with GELU). The LPIPS heads come from the lpips package itself. ``flow-blockmatch`` needs
no file and is a classical stand-in for RAFT, not RAFT (flow.py).
"""

from metrics.encoders import dino, flow, openclip, perceptual, toy  # noqa: F401  (registration)
from metrics.encoders.base import (
    ENCODERS,
    Encoder,
    FeatureModel,
    FlowModel,
    PerceptualDistance,
)
from metrics.encoders.dino import DinoConfig, DinoViTB16
from metrics.encoders.flow import BlockMatchConfig, BlockMatchFlow, Raft, RaftConfig
from metrics.encoders.openclip import ClipViTB32, ClipViTL14, OpenClipConfig, OpenClipEncoder
from metrics.encoders.perceptual import LpipsAlex, LpipsNet, LpipsNetConfig, LpipsVgg
from metrics.encoders.toy import ToyClip, ToyClipConfig
from metrics.encoders.weights import (
    SUFFIXES,
    WEIGHTS_DIR,
    WEIGHTS_ENV,
    EncoderUnavailable,
    EncoderWeightsError,
    build_encoder,
    find_weights,
    load_encoder,
    read_state_dict,
    weights_dirs,
)

__all__ = [
    "ENCODERS", "SUFFIXES", "WEIGHTS_DIR", "WEIGHTS_ENV", "BlockMatchConfig", "BlockMatchFlow",
    "ClipViTB32", "ClipViTL14", "DinoConfig", "DinoViTB16", "Encoder", "EncoderUnavailable",
    "EncoderWeightsError", "FeatureModel", "FlowModel", "LpipsAlex", "LpipsNet", "LpipsNetConfig",
    "LpipsVgg", "OpenClipConfig", "OpenClipEncoder", "PerceptualDistance", "Raft", "RaftConfig",
    "ToyClip", "ToyClipConfig", "build_encoder", "find_weights", "load_encoder",
    "read_state_dict", "weights_dirs",
]
