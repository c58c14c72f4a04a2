"""The backbone contract: geometry, one forward over a chunk, prompt encoding, decoding.

A backbone knows its geometry and computes; it never decides what the KV cache keeps.
During a rollout ``forward_chunk`` reads one ``RaggedKV`` view per layer (built by the
cache method) and, on the clean pass, returns the chunk's keys and values so that the
method can store them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING
from safetensors.torch import load_file
from torch import nn

from bench.checkpoint_check import check_checkpoint
from bench.errors import ConfigError
from bench.models.attention import AttentionObserver, CachedSelfAttention, MaskedSelfAttention
from bench.registry import Registry
from kernels import RaggedKV, Rope3D, rope_split

MODELS = Registry("model")
REPO_DIR = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path:
    """A user path; a relative one not found from the working directory is tried from the repository root."""
    file = Path(path).expanduser()
    if not file.is_absolute() and not file.exists() and (REPO_DIR / file).exists():
        return REPO_DIR / file
    return file


PATH_KINDS = {"file": Path.is_file, "folder": Path.is_dir, "file or folder": Path.exists}


def existing_path(path: str, key: str, kind: str = "file") -> Path:
    """``resolve_path(path)`` that is a ``kind`` (file, folder, or file or folder), or a
    one-line ConfigError naming ``key`` and where it looked."""
    found = resolve_path(path)
    if not PATH_KINDS[kind](found):
        raise ConfigError(f"{key}={path!r}: {kind} not found (looked at {found.resolve()})")
    return found


def existing_file(path: str, key: str) -> Path:
    """``existing_path`` for a file."""
    return existing_path(path, key, "file")



@dataclass(frozen=True)
class Geometry:
    """Shapes and time base of a backbone (what a cache method may plan with).

    frame_shape: (C, H, W) of one generated frame in model space (pixels or latents).
    tokens_per_frame: patches per frame; frames_per_chunk: frames generated per AR step.
    rope_split: (temporal, height, width) dims of head_dim for 3-D RoPE.
    horizon_frames: length of the training clips, in frames.
    fps: frames of model-space time per second of video (4 for the toy and for Wan latents).
    rope_max_positions: size of the RoPE position table; positions must stay below it.
    """

    frame_shape: tuple[int, int, int]
    tokens_per_frame: int
    frames_per_chunk: int
    layers: int
    heads: int
    head_dim: int
    rope_split: tuple[int, int, int]
    horizon_frames: int
    fps: float
    rope_max_positions: int

    def frames_for_seconds(self, seconds: float) -> int:
        """Frames needed for ``seconds`` of video, rounded up to whole chunks."""
        chunks = math.ceil(seconds * self.fps / self.frames_per_chunk - 1e-9)
        return max(1, chunks) * self.frames_per_chunk

    @property
    def kv_entries_per_frame(self) -> int:
        """Cache entries one frame adds across all layers and heads."""
        return self.tokens_per_frame * self.layers * self.heads


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
