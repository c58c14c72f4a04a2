"""The embedded toy backbone: a small causal video DiT in pixel space.

A miniature of Self Forcing / Wan so that every cache method runs for real on a CPU:
frames of 3 x 32 x 32 pixels, 4 x 4 patches (64 tokens a frame), chunks of 3 frames,
3-D RoPE with Wan's split of head_dim, adaLN timestep modulation, cross-attention on
prompt tokens, trained horizon 21 frames at 4 frames a second ("5 s").

Reads top to bottom: config, prompt tokenizer, layers, the model. Weights are random
(seeded by ``init_seed``) unless ``checkpoint`` names a safetensors file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.base import MODELS, Backbone, ModelConfig, load_checkpoint, transformer_geometry
from core.errors import require
from core.geometry import Geometry
from core.toy_text import tokenize
from core.world import check_switch, parse_prompt
from kernels import Rope3D

SHIPPED_WEIGHTS = "bench/models/weights/toy_dit.safetensors"


@dataclass
class ToyConfig(ModelConfig):
    name: str = "toy"
    frame_size: int = 32
    channels: int = 3
    patch: int = 8
    dim: int = 96
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    frames_per_chunk: int = 3
    horizon_frames: int = 21
    fps: float = 4.0
    text_vocab: int = 1024
    text_len: int = 16
    rope_theta: float = 100.0  # 4 temporal frequencies spread over lags 1..20 (10000 leaves 3 nearly flat)
    rope_max_positions: int = 1024
    shift: float = 1.0
    prediction: str = "x0"  # what the network outputs: x0 (clean frames) or velocity
    init_seed: int = 0

    def __post_init__(self) -> None:
        for key in ("frame_size", "channels", "patch", "dim", "layers", "heads", "mlp_ratio",
                    "frames_per_chunk", "horizon_frames", "text_vocab", "text_len"):
            require(getattr(self, key) > 0, f"model.{key}", getattr(self, key), "must be > 0")
        require(self.frame_size % self.patch == 0, "model.patch", self.patch,
                f"must divide model.frame_size={self.frame_size}")
        require(self.dim % self.heads == 0, "model.heads", self.heads, f"must divide model.dim={self.dim}")
        head_dim = self.dim // self.heads
        require(head_dim % 2 == 0 and head_dim >= 6, "model.dim", self.dim,
                "dim / heads must be an even head_dim >= 6 (3-D RoPE)")
        require(self.horizon_frames % self.frames_per_chunk == 0, "model.horizon_frames",
                self.horizon_frames, f"must be a multiple of frames_per_chunk={self.frames_per_chunk}")
        require(self.fps > 0, "model.fps", self.fps, "must be > 0")
        require(self.shift > 0, "model.shift", self.shift, "must be > 0")
        require(self.prediction in ("x0", "velocity"), "model.prediction", self.prediction,
                "allowed: x0, velocity")
        require(self.rope_max_positions >= self.frame_size // self.patch, "model.rope_max_positions",
                self.rope_max_positions, "must cover the patch grid")

    def geometry(self) -> Geometry:
        grid = self.frame_size // self.patch
        return transformer_geometry(self, (self.channels, self.frame_size, self.frame_size), grid * grid)

    def check_inputs(self, dtype: str, timelines: list[list[tuple[float, str]]]) -> None:
        """float32 only (the timestep embedding is float32), and prompts of the toy world's
        grammar whose switches keep the scene (core/world.py)."""
        require(dtype == "float32", "dtype", dtype, "the toy backbone computes in float32 only; allowed: float32")
        for timeline in timelines:
            scenes = [parse_prompt(text) for _, text in timeline]
            for before, after in zip(scenes, scenes[1:]):
                check_switch(before, after)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state dict of a freshly built instance (the toy backbone is small)."""
        with torch.no_grad():
            return ToyDiT(replace(self, checkpoint=None)).state_dict()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled to 0..1000): [...] -> [..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = (t.float() * 1000.0).unsqueeze(-1) * freqs
    return torch.cat((torch.cos(args), torch.sin(args)), dim=-1)


class Block(nn.Module):
    """adaLN-modulated self-attention (qk RMS-norm, 3-D RoPE), cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim)
        self.k_norm = nn.RMSNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_q = nn.Linear(dim, dim)
        self.cross_kv = nn.Linear(dim, 2 * dim)
        self.cross_proj = nn.Linear(dim, dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, layer: int, x, temb, ctx, ctx_mask, rows, cols, rope: Rope3D, attend) -> torch.Tensor:
        # x, temb: [B, N, dim]; ctx: [B, L, dim]; ctx_mask: [B, L]; rows, cols: [N]
        B, N, dim = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(temb)).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).view(B, N, 3, self.heads, self.head_dim).unbind(2)  # [B, N, H, D]
        q = rope.rotate_spatial(self.q_norm(q).transpose(1, 2), rows, cols)  # [B, H, N, D]
        k = rope.rotate_spatial(self.k_norm(k).transpose(1, 2), rows, cols)
        a = attend(layer, q, k, v.transpose(1, 2))  # [B, H, N, D]
        x = x + gate1 * self.proj(a.transpose(1, 2).reshape(B, N, dim))

        cq = self.cross_q(self.norm2(x)).view(B, N, self.heads, self.head_dim).transpose(1, 2)
        ck, cv = self.cross_kv(ctx).view(B, -1, 2, self.heads, self.head_dim).unbind(2)
        c = F.scaled_dot_product_attention(cq, ck.transpose(1, 2), cv.transpose(1, 2),
                                           attn_mask=ctx_mask[:, None, None, :])
        x = x + self.cross_proj(c.transpose(1, 2).reshape(B, N, dim))

        h = self.norm3(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


@MODELS.register("toy", config=ToyConfig)
class ToyDiT(Backbone):
    """Causal pixel-space video DiT; see the module docstring."""

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry = cfg.geometry()
        self.rope = Rope3D(self.geometry.head_dim, cfg.rope_theta, cfg.rope_max_positions)
        self.default_shift = cfg.shift
        p, C, dim = cfg.patch, cfg.channels, cfg.dim
        self.grid = cfg.frame_size // p
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            self.patch_embed = nn.Linear(C * p * p, dim)
            self.time_embed = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.text_embed = nn.Embedding(cfg.text_vocab, dim)
            self.text_pos = nn.Parameter(0.02 * torch.randn(cfg.text_len, dim))
            self.blocks = nn.ModuleList(Block(dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
            self.out_norm = nn.LayerNorm(dim, elementwise_affine=False)
            self.out_modulation = nn.Linear(dim, 2 * dim)
            self.out = nn.Linear(dim, C * p * p)
        if cfg.checkpoint:
            load_checkpoint(self, cfg.checkpoint)
        idx = torch.arange(self.grid * self.grid)
        self.register_buffer("rows", idx // self.grid, persistent=False)
        self.register_buffer("cols", idx % self.grid, persistent=False)

    # -- prompts and pixels -------------------------------------------------------------
    def encode_prompt(self, text: str) -> dict[str, torch.Tensor]:
        return self.encode_prompts([text])

    def encode_prompts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Context of a batch of prompts: tokens [B, L, dim], mask [B, L] (True = a word)."""
        ids = torch.stack([tokenize(t, self.cfg.text_vocab, self.cfg.text_len) for t in texts])
        ids = ids.to(self.text_pos.device)
        return {"tokens": self.text_embed(ids) + self.text_pos, "mask": ids != 0}

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] -> [B, T * grid^2, C * p * p]."""
        B, T, C, H, W = x.shape
        p, g = self.cfg.patch, self.grid
        x = x.reshape(B, T, C, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(B, T * g * g, C * p * p)

    def unpatchify(self, x: torch.Tensor, T: int) -> torch.Tensor:
        B = x.shape[0]
        p, g, C = self.cfg.patch, self.grid, self.cfg.channels
        x = x.reshape(B, T, g, g, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, T, C, g * p, g * p)

    # -- the transformer ----------------------------------------------------------------
    def _run(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, Any], attend) -> torch.Tensor:
        """x: [B, T, C, H, W]; t: [B, T] -> velocity [B, T, C, H, W]."""
        B, T = x.shape[:2]
        tpf = self.grid * self.grid
        tokens = self.patch_embed(self.patchify(x))  # [B, T * tpf, dim]
        temb = self.time_embed(timestep_embedding(t, 256)).repeat_interleave(tpf, dim=1)
        ctx = context["tokens"].expand(B, -1, -1)
        ctx_mask = context["mask"].expand(B, -1)
        rows, cols = self.rows.repeat(T), self.cols.repeat(T)
        for layer, block in enumerate(self.blocks):
            tokens = block(layer, tokens, temb, ctx, ctx_mask, rows, cols, self.rope, attend)
        shift, scale = self.out_modulation(F.silu(temb)).chunk(2, dim=-1)
        out = self.out(self.out_norm(tokens) * (1 + scale) + shift)
        return self.unpatchify(out, T)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Network output -> velocity. An x0 prediction gives v = (x_t - x0) / t, so that an
        Euler step to t' lands on (1 - t'/t) x0 + (t'/t) x_t, exactly x0 at t' = 0.

        Pixel patches (8 x 8 x 3 = 192 values) are wider than the model (96): predicting the
        clean frame, which is low-dimensional, works where predicting noise cannot.
        """
        if self.cfg.prediction == "velocity":
            return out
        t = t[:, :, None, None, None].to(x.dtype)
        return (x - out) / torch.where(t > 0, t, torch.ones_like(t))  # t = 0: the clean pass, unused
