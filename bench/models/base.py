"""The backbone contract: geometry, one forward over a chunk, prompt encoding, decoding.

A backbone knows its geometry and computes; it never decides what the KV cache keeps.
During a rollout ``forward_chunk`` reads one ``RaggedKV`` view per layer (built by the
cache method) and, on the clean pass, returns the chunk's keys and values so that the
method can store them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.profiler import record_function

from bench.checkpoint_check import check_checkpoint
from bench.models.attention import AttentionObserver, CachedSelfAttention, MaskedSelfAttention
from core.geometry import Geometry
from core.paths import existing_file
from core.registry import MISSING, Registry
from kernels import RaggedKV, Rope3D, rope_split

MODELS = Registry("model")


@dataclass
class ModelConfig:
    """Base of every backbone config: ``name`` selects the registered backbone."""

    name: str = MISSING
    checkpoint: str | None = None

    def geometry(self) -> Geometry:
        raise NotImplementedError

    def check(self) -> None:
        """Checks done before any work: the configured checkpoint must exist."""
        if self.checkpoint:
            existing_file(self.checkpoint, "model.checkpoint")

    def check_inputs(self, dtype: str, timelines: list[list[tuple[float, str]]]) -> None:
        """Checks of what a run feeds this backbone, before any work: the compute dtype and
        every prompt timeline ([(start second, text)]). Nothing is refused by default."""

    def video_frames(self, frames: int) -> int:
        """Output video frames that ``frames`` model frames decode to (pixel-space backbones: as many)."""
        return frames

    def checkpoint_state(self) -> dict[str, torch.Tensor] | None:
        """The tensors a checkpoint must hold exactly (names, shapes, dtypes), for checking its
        header before any work; None when the backbone maps a checkpoint's names itself."""
        return None


def transformer_geometry(cfg: Any, frame_shape: tuple[int, int, int], tokens_per_frame: int) -> Geometry:
    """The Geometry of a DiT config that has the fields dim, heads, layers, frames_per_chunk,
    horizon_frames, fps and rope_max_positions (head_dim = dim / heads, split for 3-D RoPE)."""
    head_dim = cfg.dim // cfg.heads
    return Geometry(
        frame_shape=frame_shape,
        tokens_per_frame=tokens_per_frame,
        frames_per_chunk=cfg.frames_per_chunk,
        layers=cfg.layers,
        heads=cfg.heads,
        head_dim=head_dim,
        rope_split=rope_split(head_dim),
        horizon_frames=cfg.horizon_frames,
        fps=cfg.fps,
        rope_max_positions=cfg.rope_max_positions,
    )


class Backbone(nn.Module, ABC):
    """A causal video diffusion transformer that generates chunk by chunk.

    Flow-matching convention: x_t = (1 - t) * x0 + t * noise, and the model predicts the
    velocity noise - x0, with t in [0, 1] given per frame.
    """

    cfg: ModelConfig  # the config it was built from
    geometry: Geometry
    rope: Rope3D
    default_shift: float = 1.0

    @abstractmethod
    def encode_prompt(self, text: str) -> Any:
        """Prompt context for cross-attention (backbone-specific, batch of 1)."""

    @abstractmethod
    def _run(self, x: torch.Tensor, t: torch.Tensor, context: Any, attend: Any) -> torch.Tensor:
        """The network on frames x [B, T, C, H, W] with timesteps t [B, T]; ``attend`` is the
        self-attention back-end (bench/models/attention.py). Returns what the network
        predicts, [B, T, C, H, W] (``velocity`` turns it into the velocity)."""

    def velocity(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Network output -> velocity; the identity for networks that predict the velocity."""
        return out

    def forward_chunk(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: Any,
        views: list[RaggedKV],
        return_kv: bool = False,
        observer: AttentionObserver | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """One forward over the current chunk.

        x: [B, F, C, H, W] noisy chunk; t: [B, F] timesteps; views: one per layer.
        Returns (velocity [B, F, C, H, W], kv or None), kv being per layer
        (k, v) of shape [B, H, F * tokens_per_frame, D] with keys spatially rotated only.
        """
        attend = CachedSelfAttention(views, self.rope, self.geometry.tokens_per_frame, return_kv, observer)
        with record_function("forcebench.forward"):  # a label for profilers; free otherwise
            return self.velocity(x, t, self._run(x, t, context, attend)).to(x.dtype), attend.kv

    def forward_sequence(
        self, x: torch.Tensor, t: torch.Tensor, context: Any, frame_pos: torch.Tensor, mask: torch.Tensor,
        raw: bool = False,
    ) -> torch.Tensor:
        """Dense forward over a whole sequence of frames with a frame-level mask (the
        equivalence tests and teacher-forcing training).

        x: [B, T, C, H, W]; t: [B, T]; frame_pos: [T] temporal positions; mask: [T, T].
        Returns the velocity, or with ``raw`` what the network predicts.
        """
        attend = MaskedSelfAttention(frame_pos, mask, self.rope, self.geometry.tokens_per_frame)
        out = self._run(x, t, context, attend)
        return (out if raw else self.velocity(x, t, out)).to(x.dtype)

    @abstractmethod
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space frames [B, T, C, H, W] -> RGB frames [B, T, 3, H', W'] in [0, 1]."""


def load_checkpoint(module: nn.Module, path: str, key: str = "model.checkpoint") -> None:
    """Load a safetensors file into ``module``; its header is checked first (every key, shape
    and dtype must match; bench/checkpoint_check.py), so every failure is one line."""
    file = existing_file(path, key)
    check_checkpoint(file, key, path, module.state_dict())
    module.load_state_dict(load_file(str(file)))


def build_backbone(cfg: ModelConfig) -> Backbone:
    """Instantiate the registered backbone for ``cfg`` (weights loaded if configured)."""
    return MODELS.build(cfg.name, cfg)
