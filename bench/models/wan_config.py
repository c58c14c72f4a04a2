"""Sizes and local files of the Wan2.1 DiT (``model=wan_1_3b``, ``model=wan_tiny``).

Defaults are Wan2.1-T2V-1.3B at 480x832. Also the size arithmetic that needs no model:
K/V bytes of a cache and the parameter count.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.models.base import ModelConfig, transformer_geometry
from bench.models.wan_io import VIDEO_FRAMES_PER_LATENT, EmbeddingsFile, Umt5Encoder, WanVae
from core.errors import require
from core.geometry import Geometry
from core.paths import existing_path


@dataclass
class WanConfig(ModelConfig):
    """Sizes of the Wan DiT (defaults: Wan2.1-T2V-1.3B at 480x832) and its local files."""

    name: str = "wan"
    dim: int = 1536
    layers: int = 30
    heads: int = 12
    ffn_dim: int = 8960
    freq_dim: int = 256  # sinusoidal timestep features
    text_dim: int = 4096  # UMT5-XXL features
    text_len: int = 512
    latent_channels: int = 16
    latent_height: int = 60  # 480 / 8
    latent_width: int = 104  # 832 / 8
    patch: int = 2  # spatial patch; the temporal patch is 1
    eps: float = 1e-6
    frames_per_chunk: int = 3
    horizon_frames: int = 21
    fps: float = 4.0  # latent frames per second (81 video frames at 16 fps = 21 latent frames)
    rope_theta: float = 10000.0
    rope_max_positions: int = 1024
    shift: float = 5.0
    num_train_timesteps: int = 1000  # the network sees t * 1000
    init_seed: int = 0
    checkpoint_key: str | None = None  # e.g. generator_ema; None: the first of wan_loader.NESTED_KEYS found
    vae: str | None = None  # diffusers AutoencoderKLWan folder; None: stand-in decode
    text_encoder: str | None = None  # UMT5 folder (transformers)
    text_embeddings: str | None = None  # precomputed features; neither: stand-in features

    def __post_init__(self) -> None:
        for key in ("dim", "layers", "heads", "ffn_dim", "freq_dim", "text_dim", "text_len",
                    "latent_channels", "latent_height", "latent_width", "patch", "frames_per_chunk",
                    "horizon_frames", "num_train_timesteps"):
            require(getattr(self, key) > 0, f"model.{key}", getattr(self, key), "must be > 0")
        require(self.dim % self.heads == 0, "model.heads", self.heads, f"must divide model.dim={self.dim}")
        head_dim = self.dim // self.heads
        require(head_dim % 2 == 0 and head_dim >= 6, "model.dim", self.dim,
                "dim / heads must be an even head_dim >= 6 (3-D RoPE)")
        require(self.freq_dim % 2 == 0, "model.freq_dim", self.freq_dim, "must be even")
        for key in ("latent_height", "latent_width"):
            require(getattr(self, key) % self.patch == 0, f"model.{key}", getattr(self, key),
                    f"must be a multiple of model.patch={self.patch}")
        require(self.horizon_frames % self.frames_per_chunk == 0, "model.horizon_frames",
                self.horizon_frames, f"must be a multiple of frames_per_chunk={self.frames_per_chunk}")
        require(self.fps > 0, "model.fps", self.fps, "must be > 0")
        require(self.shift > 0, "model.shift", self.shift, "must be > 0")
        grid = max(self.latent_height, self.latent_width) // self.patch
        require(self.rope_max_positions >= grid, "model.rope_max_positions", self.rope_max_positions,
                f"must cover the patch grid ({grid})")
        require(not (self.text_encoder and self.text_embeddings), "model.text_embeddings",
                self.text_embeddings, "give model.text_encoder or model.text_embeddings, not both")

    @property
    def prediction(self) -> str:
        """What the network outputs (bench/tools/train_backbone.py reads it): Wan predicts the flow velocity."""
        return "velocity"

    def geometry(self) -> Geometry:
        tokens = (self.latent_height // self.patch) * (self.latent_width // self.patch)
        return transformer_geometry(self, (self.latent_channels, self.latent_height, self.latent_width), tokens)

    def video_frames(self, frames: int) -> int:
        """The Wan VAE decodes T latent frames to 1 + 4 (T - 1) video frames (16 fps)."""
        return 1 + VIDEO_FRAMES_PER_LATENT * (frames - 1) if frames > 0 else 0

    def check(self) -> None:
        """Every configured file must exist (a checkpoint may be a file or a diffusers folder)."""
        if self.checkpoint:
            existing_path(self.checkpoint, "model.checkpoint", "file or folder")
        if self.vae:
            WanVae(self.vae)
        if self.text_encoder:
            Umt5Encoder(self.text_encoder, self.text_len, self.text_dim)
        if self.text_embeddings:
            EmbeddingsFile(self.text_embeddings, self.text_len, self.text_dim)


def kv_cache_bytes(cfg: WanConfig, frames: int, bytes_per_value: int = 2, batch: int = 1) -> int:
    """K + V bytes of a cache holding ``frames`` latent frames in every layer and head."""
    g = cfg.geometry()
    return 2 * batch * frames * g.tokens_per_frame * g.layers * g.heads * g.head_dim * bytes_per_value


def parameter_count(cfg: WanConfig) -> int:
    """Parameters of the DiT for ``cfg``, computed without building it."""
    d, f, C, p = cfg.dim, cfg.ffn_dim, cfg.latent_channels, cfg.patch
    attn = 4 * (d * d + d) + 2 * d
    block = 2 * attn + 2 * d + (d * f + f) + (f * d + d) + 6 * d
    embed = (C * p * p * d + d) + (cfg.text_dim * d + d) + (d * d + d) + (cfg.freq_dim * d + d) + (d * d + d)
    embed += d * 6 * d + 6 * d
    head = d * p * p * C + p * p * C + 2 * d
    return embed + cfg.layers * block + head
