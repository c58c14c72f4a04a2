"""Self Forcing / Wan2.1-T2V-1.3B: the causal video DiT, on forcebench's backbone contract.

The architecture of Wan2.1 (and of its causal Self Forcing / CausVid variant), written
for forcebench: latents [B, F, 16, h, w] are cut into (1, 2, 2) patches by a Conv3d
(h/2 * w/2 tokens a latent frame: 1560 at 480x832), each block runs adaLN-modulated
self-attention (q/k RMS-norm over the whole width, 3-D RoPE split 44/42/42 for head_dim
128), cross-attention to the projected UMT5 prompt features (its own affine LayerNorm,
q/k RMS-norm) and a GELU-tanh FFN; a modulated head and unpatchify give the flow
velocity v = noise - x0. Timesteps are per latent frame (t in [0, 1], embedded at
1000 t), as Self Forcing denoises a chunk with per-frame timesteps.

Self-attention goes only through the attention back-ends of bench/models/attention.py
(kernels.attention over each head's cache view during a rollout), so every cache method,
head-wise ones included, runs unchanged. The residual stream and the modulation stay in
float32 whatever the weights' dtype, as in the Wan code.

Parameter names are those of the original Wan code, so Wan / Self Forcing / CausVid
checkpoints load by stripping their wrapper prefix; diffusers folders are renamed
(bench/models/wan_loader.py). Prompt features and the VAE: bench/models/wan_io.py; sizes and
local paths: bench/models/wan_config.py.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.base import MODELS, Backbone
from bench.models.wan_config import WanConfig
from bench.models.wan_io import (
    STAND_IN_DECODE,
    STAND_IN_TEXT,
    EmbeddingsFile,
    Umt5Encoder,
    WanVae,
    stand_in_features,
)
from bench.models.wan_loader import load_wan_checkpoint
from kernels import Rope3D


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's sinusoidal embedding, in float64: t [...] (0..1000) -> [..., dim] as [cos, sin]."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat((torch.cos(args), torch.sin(args)), dim=-1)


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm in float32 (as Wan's WanLayerNorm), result in float32."""
    return F.layer_norm(x.float(), norm.normalized_shape,
                        None if norm.weight is None else norm.weight.float(),
                        None if norm.bias is None else norm.bias.float(), norm.eps)


class Attention(nn.Module):
    """Projections q, k, v, o and RMS-norm of q and k over the whole width (Wan's qk-norm)."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, dim] -> [B, H, N, D]."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, N, D] -> o([B, N, dim])."""
        return self.o(x.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """One Wan block: modulated self-attention, cross-attention, modulated FFN.

    Wan's names: norm1 (self-attention, no affine), norm3 (cross-attention, affine),
    norm2 (FFN, no affine); modulation [1, 6, dim] = shift, scale, gate of self-attention
    then of the FFN, added to the per-frame timestep projection.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.self_attn = Attention(dim, heads, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        self.cross_attn = Attention(dim, heads, eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, layer: int, x, e0, ctx, rows, cols, rope: Rope3D, attend) -> torch.Tensor:
        # x: [B, T, S, dim] float32 (S tokens a frame); e0: [B, T, 6, dim]; ctx: [B, L, dim]
        B, T, S, dim = x.shape
        dtype = self.self_attn.q.weight.dtype  # the sublayers' dtype; x stays float32
        mod = (self.modulation.float() + e0).unsqueeze(3)  # [B, T, 6, 1, dim]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(2)  # each [B, T, 1, dim]

        h = (layer_norm(self.norm1, x) * (1 + scale1) + shift1).to(dtype).flatten(1, 2)  # [B, N, dim]
        sa = self.self_attn
        q = rope.rotate_spatial(sa.split(sa.norm_q(sa.q(h))), rows, cols)  # [B, H, N, D]
        k = rope.rotate_spatial(sa.split(sa.norm_k(sa.k(h))), rows, cols)
        a = attend(layer, q, k, sa.split(sa.v(h)))  # [B, H, N, D]
        x = x + sa.merge(a).float().view(B, T, S, dim) * gate1

        ca = self.cross_attn
        h = layer_norm(self.norm3, x).to(dtype).flatten(1, 2)
        cq = ca.split(ca.norm_q(ca.q(h)))
        ck, cv = ca.split(ca.norm_k(ca.k(ctx))), ca.split(ca.v(ctx))  # [B, H, L, D]
        c = F.scaled_dot_product_attention(cq, ck, cv)  # Wan attends to all text_len tokens
        x = x + ca.merge(c).float().view(B, T, S, dim)

        h = (layer_norm(self.norm2, x) * (1 + scale2) + shift2).to(dtype)
        return x + self.ffn(h).float() * gate2


class Head(nn.Module):
    """Output head: modulated LayerNorm (modulation [1, 2, dim] = shift, scale) and a linear
    map to the patch's values, laid out (p_t, p_h, p_w, channels)."""

    def __init__(self, dim: int, out: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # x: [B, T, S, dim] float32; e: [B, T, dim] (the time embedding before projection)
        shift, scale = (self.modulation.float() + e.unsqueeze(2)).unsqueeze(3).unbind(2)  # [B, T, 1, dim]
        h = layer_norm(self.norm, x) * (1 + scale) + shift
        return self.head(h.to(self.head.weight.dtype))  # [B, T, S, p * p * C]


@MODELS.register("wan", config=WanConfig)
class WanDiT(Backbone):
    """Causal Wan2.1 DiT over latent chunks; see the module docstring."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry = g = cfg.geometry()
        self.rope = Rope3D(g.head_dim, cfg.rope_theta, cfg.rope_max_positions)
        self.default_shift = cfg.shift
        dim, C, p = cfg.dim, cfg.latent_channels, cfg.patch
        self.grid = (cfg.latent_height // p, cfg.latent_width // p)
        # Random weights use PyTorch's default initialisation: Wan's own init zeroes the
        # output head, which would make every untrained output zero.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            self.patch_embedding = nn.Conv3d(C, dim, kernel_size=(1, p, p), stride=(1, p, p))
            self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"),
                                                nn.Linear(dim, dim))
            self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
            self.blocks = nn.ModuleList(Block(dim, cfg.heads, cfg.ffn_dim, cfg.eps) for _ in range(cfg.layers))
            self.head = Head(dim, p * p * C, cfg.eps)
        if cfg.checkpoint:
            load_wan_checkpoint(self, cfg.checkpoint, nested_key=cfg.checkpoint_key)
        idx = torch.arange(self.grid[0] * self.grid[1])
        self.register_buffer("rows", idx // self.grid[1], persistent=False)
        self.register_buffer("cols", idx % self.grid[1], persistent=False)
        # Plain attributes, not submodules: never in the state dict, loaded on first use.
        self.vae = WanVae(cfg.vae) if cfg.vae else None
        self.text_source: Any = None
        if cfg.text_encoder:
            self.text_source = Umt5Encoder(cfg.text_encoder, cfg.text_len, cfg.text_dim)
        elif cfg.text_embeddings:
            self.text_source = EmbeddingsFile(cfg.text_embeddings, cfg.text_len, cfg.text_dim)

    @property
    def sources(self) -> dict[str, str]:
        """Where prompt features and frames come from (stand-ins are named as such)."""
        text = self.cfg.text_encoder or self.cfg.text_embeddings or STAND_IN_TEXT
        return {"text": text, "decode": self.cfg.vae or STAND_IN_DECODE}

    # -- prompts and frames -------------------------------------------------------------
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Prompt features [B, text_len, text_dim] (float32, zero-padded) on the model's device."""
        device = self.rows.device
        if isinstance(self.text_source, Umt5Encoder):
            return self.text_source(texts, device, self.patch_embedding.weight.dtype)
        c = self.cfg
        if self.text_source is not None:
            rows = [self.text_source(t) for t in texts]
        else:
            rows = [stand_in_features(t, c.text_len, c.text_dim) for t in texts]
        return torch.stack(rows).to(device)

    def context(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features [B, L, text_dim] -> cross-attention context {"tokens": [B, L, dim]}."""
        w = self.text_embedding[0].weight
        return {"tokens": self.text_embedding(features.to(device=w.device, dtype=w.dtype))}

    def encode_prompt(self, text: str) -> dict[str, torch.Tensor]:
        return self.encode_prompts([text])

    def encode_prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.context(self.text_features(texts))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [B, T, C, h, w] -> [B, T, 3, H, W] in [0, 1]: the VAE's frame 4 i for latent
        frame i (bench/models/wan_io.py), or without a VAE the stand-in [B, T, 3, h, w]."""
        if self.vae is not None:
            return self.vae.decode(x)
        return torch.sigmoid(x[:, :, :3].float())

    def decode_stream(self):
        """A decoder for the consecutive chunks of one video (VAE cache carried over)."""
        return self.vae.stream() if self.vae is not None else self.decode

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C, h, w] -> tokens [B, T, S, dim] (S = h/p * w/p), float32."""
        w = self.patch_embedding.weight
        out = self.patch_embedding(x.transpose(1, 2).to(w.dtype))  # [B, dim, T, h/p, w/p]
        return out.flatten(3).permute(0, 2, 3, 1).float()

    def unpatchify(self, out: torch.Tensor) -> torch.Tensor:
        """[B, T, S, p * p * C] -> [B, T, C, h, w]."""
        B, T = out.shape[:2]
        (gh, gw), p, C = self.grid, self.cfg.patch, self.cfg.latent_channels
        out = out.reshape(B, T, gh, gw, p, p, C).permute(0, 1, 6, 2, 4, 3, 5)
        return out.reshape(B, T, C, gh * p, gw * p)

    # -- the transformer ----------------------------------------------------------------
    def _run(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, Any], attend) -> torch.Tensor:
        """x: [B, T, C, h, w]; t: [B, T] in [0, 1] -> velocity [B, T, C, h, w] (float32)."""
        B, T = x.shape[:2]
        dtype = self.patch_embedding.weight.dtype
        tokens = self.patchify(x)  # [B, T, S, dim]
        sinus = timestep_embedding(t * self.cfg.num_train_timesteps, self.cfg.freq_dim)  # [B, T, freq_dim]
        e = self.time_embedding(sinus.to(dtype)).float()  # [B, T, dim]
        e0 = self.time_projection(e.to(dtype)).float().unflatten(-1, (6, self.cfg.dim))  # [B, T, 6, dim]
        ctx = context["tokens"].expand(B, -1, -1)
        rows, cols = self.rows.repeat(T), self.cols.repeat(T)
        for layer, block in enumerate(self.blocks):
            tokens = block(layer, tokens, e0, ctx, rows, cols, self.rope, attend)
        return self.unpatchify(self.head(tokens, e).float())
