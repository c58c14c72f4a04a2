"""Prompt features and latent decoding of the Wan backbone, from local files only.

Prompt features ([text_len, text_dim] per prompt, zero rows after the last token, as Wan
pads UMT5 output) come from one of:

- ``model.text_encoder``: a UMT5 encoder folder (transformers ``UMT5EncoderModel`` and
  its tokenizer's ``tokenizer.json``; a diffusers pipeline folder with ``text_encoder/`` and
  ``tokenizer/`` subfolders works too). Needs the transformers package (pinned in
  requirements.txt, imported only when the encoder first runs).
- ``model.text_embeddings``: a ``.safetensors`` / ``.pt`` file mapping each prompt text
  to a precomputed [L, text_dim] tensor (L <= text_len).
- neither: **stand-in text embeddings**, a normal vector seeded by a hash of the text
  (deterministic, not UMT5; for tests and timing only).

Decoding: ``model.vae`` names a diffusers ``AutoencoderKLWan`` folder; latents are
un-normalised with the VAE's ``latents_mean`` / ``latents_std`` and decoded. The VAE
turns T latent frames into 1 + 4 (T - 1) video frames at 16 fps; forcebench's time base
is one frame per latent frame (4 a second), so ``decode`` keeps video frame 4 i for latent
frame i (the last video frame each latent frame produces). Without a VAE the
**stand-in decode** maps latent channels 0-2 through a sigmoid (not the Wan VAE).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from core.errors import ConfigError
from core.paths import existing_file, existing_path

STAND_IN_TEXT = "stand-in text embeddings (seeded random, not UMT5)"
STAND_IN_DECODE = "stand-in decode (sigmoid of latent channels 0-2, not the Wan VAE)"
VIDEO_FRAMES_PER_LATENT = 4  # the VAE's temporal stride


def pad_features(features: torch.Tensor, text_len: int, text_dim: int, what: str) -> torch.Tensor:
    """[L, text_dim] (or [1, L, text_dim]) -> [text_len, text_dim] float32, zero-padded."""
    if features.dim() == 3 and features.shape[0] == 1:
        features = features[0]
    if features.dim() != 2 or features.shape[1] != text_dim or features.shape[0] > text_len:
        raise ConfigError(f"{what}: features of shape {tuple(features.shape)}; allowed: "
                          f"[L, {text_dim}] with L <= model.text_len={text_len}")
    out = torch.zeros(text_len, text_dim)
    out[: features.shape[0]] = features.float()
    return out


def stand_in_features(text: str, text_len: int, text_dim: int) -> torch.Tensor:
    """Stand-in for UMT5: [text_len, text_dim], one N(0, 1) row per word plus one, the rest
    zero; seeded by the SHA-256 of the text, so equal texts give equal features."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    rows = min(text_len, 1 + len(text.split()))
    out = torch.zeros(text_len, text_dim)
    out[:rows] = torch.randn(rows, text_dim, generator=torch.Generator().manual_seed(seed))
    return out


class EmbeddingsFile:
    """Precomputed prompt features: prompt text -> [L, text_dim], loaded on first use."""

    def __init__(self, path: str, text_len: int, text_dim: int) -> None:
        self.path, self.text_len, self.text_dim = path, text_len, text_dim
        self.file = existing_file(path, "model.text_embeddings")
        self.table: dict[str, torch.Tensor] | None = None

    def __call__(self, text: str) -> torch.Tensor:
        if self.table is None:
            if self.file.suffix == ".safetensors":
                from safetensors.torch import load_file

                self.table = load_file(str(self.file))
            else:
                self.table = torch.load(str(self.file), map_location="cpu", weights_only=True)
        if text not in self.table:
            raise ConfigError(f"model.text_embeddings={self.path!r} has no entry for the prompt {text!r} "
                              f"({len(self.table)} prompts there; keys are prompt texts)")
        return pad_features(self.table[text], self.text_len, self.text_dim,
                            f"model.text_embeddings={self.path!r}[{text!r}]")


class Umt5Encoder:
    """UMT5 encoder + tokenizer from a local folder, loaded on first use."""

    LAYOUT = ("expected a transformers UMT5EncoderModel folder with its tokenizer, or a diffusers "
              "pipeline folder with text_encoder/ and tokenizer/")

    def __init__(self, path: str, text_len: int, text_dim: int) -> None:
        self.path, self.text_len, self.text_dim = path, text_len, text_dim
        self.folder = existing_path(path, "model.text_encoder", "folder")
        self.encoder_folder = self._part("text_encoder", "config.json")
        self.tokenizer_folder = self._part("tokenizer", "tokenizer.json")
        self.encoder = self.tokenizer = None

    def _part(self, subfolder: str, needed: str) -> Path:
        """``subfolder/`` of a diffusers pipeline folder, else the folder itself; it must hold
        ``needed`` (a one-line ConfigError otherwise)."""
        folder = self.folder / subfolder if (self.folder / subfolder).is_dir() else self.folder
        if not (folder / needed).is_file():
            raise ConfigError(f"model.text_encoder={self.path!r}: no {needed} in {folder.resolve()} "
                              f"({self.LAYOUT})")
        return folder

    def _from_pretrained(self, cls, folder: Path, **kwargs):
        """``cls.from_pretrained(folder)`` offline; transformers' errors become one line."""
        try:
            return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
        except (OSError, ValueError) as error:
            reason = " ".join(str(error).split())
            raise ConfigError(f"model.text_encoder={self.path!r}: {cls.__name__} does not load from "
                              f"{folder.resolve()}: {reason} ({self.LAYOUT})") from None

    def _load(self, device: torch.device, dtype: torch.dtype) -> None:
        try:
            from transformers import AutoTokenizer, UMT5EncoderModel
        except ImportError:
            raise ConfigError(f"model.text_encoder={self.path!r}: UMT5 needs the transformers package "
                              f"(pinned in requirements.txt), which is not installed; allowed: "
                              f"model.text_embeddings=<file of precomputed features>") from None
        self.tokenizer = self._from_pretrained(AutoTokenizer, self.tokenizer_folder)
        model = self._from_pretrained(UMT5EncoderModel, self.encoder_folder, dtype=dtype)
        if model.config.d_model != self.text_dim:
            raise ConfigError(f"model.text_encoder={self.path!r}: the encoder's features are {model.config.d_model}-d; "
                              f"allowed: model.text_dim={self.text_dim} (the backbone's text projection)")
        self.encoder = model.to(device).eval()

    @torch.no_grad()
    def __call__(self, texts: list[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """B prompts -> features [B, text_len, text_dim] float32 on ``device``, zero past each
        prompt's last token (``</s>``; prompts are cut at text_len tokens)."""
        if self.encoder is None:
            self._load(device, dtype)
        batch = self.tokenizer(texts, padding="max_length", max_length=self.text_len, truncation=True,
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return hidden * mask[..., None]  # Wan zeroes the features of padding tokens


class WanVae:
    """The Wan VAE (diffusers ``AutoencoderKLWan``) from a local folder, loaded on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = existing_path(path, "model.vae", "folder")
        if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
            folder = folder / "vae"  # a diffusers pipeline folder
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model.vae={path!r}: no config.json in {folder.resolve()} "
                              f"(expected a diffusers AutoencoderKLWan folder)")
        self.folder: Path = folder
        self.vae = None

    def model(self, device: torch.device, dtype: torch.dtype):
        if self.vae is None:
            from diffusers import AutoencoderKLWan

            vae = AutoencoderKLWan.from_pretrained(str(self.folder), torch_dtype=dtype, local_files_only=True)
            self.vae = vae.to(device).eval()
            z = vae.config.z_dim
            self.mean = torch.tensor(vae.config.latents_mean, device=device).view(1, z, 1, 1, 1)
            self.std = torch.tensor(vae.config.latents_std, device=device).view(1, z, 1, 1, 1)
        return self.vae

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Model latents [B, T, C, h, w] -> the VAE's input [B, C, T, h, w] (un-normalised)."""
        vae = self.model(x.device, x.dtype)
        z = x.permute(0, 2, 1, 3, 4).float() * self.std + self.mean
        return z.to(next(vae.parameters()).dtype)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, all_frames: bool = False) -> torch.Tensor:
        """[B, T, C, h, w] latents -> [B, T, 3, 8 h, 8 w] in [0, 1] (one video frame per
        latent frame), or with ``all_frames`` every video frame [B, 1 + 4 (T - 1), 3, H, W]."""
        video = self.model(x.device, x.dtype).decode(self.latents(x)).sample  # [B, 3, T', H, W]
        if not all_frames:
            video = video[:, :, ::VIDEO_FRAMES_PER_LATENT]
        return ((video.float().permute(0, 2, 1, 3, 4) + 1) / 2).clamp(0, 1)

    def stream(self) -> VaeStream:
        return VaeStream(self)


class VaeStream:
    """Decodes the consecutive chunks of one video with the VAE's causal cache carried
    from chunk to chunk, so chunk-by-chunk decoding gives the frames of decoding the whole
    video at once (decoding each chunk alone restarts the cache and treats the chunk's
    first latent frame as a video's first frame).

    Uses diffusers' decoder loop (``decoder(..., feat_cache, feat_idx, first_chunk)``),
    the one ``AutoencoderKLWan._decode`` runs over latent frames.
    """

    def __init__(self, vae: WanVae) -> None:
        self.vae = vae
        self.cache: list | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Next chunk [B, F, C, h, w] -> [B, F, 3, H, W] in [0, 1], one frame per latent frame."""
        model = self.vae.model(x.device, x.dtype)
        z = model.post_quant_conv(self.vae.latents(x))  # [B, C, F, h, w]
        first = self.cache is None
        if first:
            self.cache = [None] * model._cached_conv_counts["decoder"]
        frames = []
        for i in range(z.shape[2]):
            out = model.decoder(z[:, :, i:i + 1], feat_cache=self.cache, feat_idx=[0],
                                first_chunk=first and i == 0)  # [B, 3, 1 or 4, H, W]
            frames.append(out[:, :, -1].clamp(-1, 1))
        video = torch.stack(frames, dim=1).float()  # [B, F, 3, H, W]
        return ((video + 1) / 2).clamp(0, 1)
