"""Self-attention back-ends shared by the backbones.

A transformer block computes q, k, v (spatially rotated, [B, H, N, D]) and hands them to
one of these objects, which owns the temporal positions:

- ``CachedSelfAttention``: the rollout path. The chunk attends to each head's cache view
  (through kernels.attention) and to itself; the chunk's k, v are kept for the cache, and
  what the cache method asked to see of each call (attention mass, logit statistics) is
  handed to its observers.
- ``MaskedSelfAttention``: one dense forward over a whole sequence with a frame-level
  mask (block-causal, or teacher forcing). Used by training and by the equivalence test
  that proves the cache path right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.profiler import record_function

import kernels
from kernels import LogitStats, RaggedKV, Rope3D

# (layer, mass [N]) -> None: attention probability each cache entry received in one call.
AttentionObserver = Callable[[int, torch.Tensor], None]
# (layer, stats) -> None: pre-softmax logit statistics of the cache entries in one call,
# ``stats.logit_sum`` / ``stats.positive`` [F, N] per query frame (kernels.LogitStats).
LogitObserver = Callable[[int, LogitStats], None]


@dataclass
class AttentionObservers:
    """The observers of a method that asks for logit statistics (``needs_attention_logits``),
    passed where a plain ``AttentionObserver`` goes: ``mass`` (or None) and ``logits``."""

    mass: AttentionObserver | None = None
    logits: LogitObserver | None = None


class CachedSelfAttention:
    """Attention of one chunk over per-layer cache views."""

    def __init__(
        self,
        views: list[RaggedKV],
        rope: Rope3D,
        tokens_per_frame: int,
        keep_kv: bool = False,
        observer: AttentionObserver | AttentionObservers | None = None,
    ) -> None:
        self.views = views
        self.rope = rope
        self.tokens_per_frame = tokens_per_frame
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if keep_kv else None
        self.logit_observer: LogitObserver | None = None
        if isinstance(observer, AttentionObservers):
            observer, self.logit_observer = observer.mass, observer.logits
        self.observer = observer

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        view = self.views[layer]
        q_pos = view.q_pos.repeat_interleave(self.tokens_per_frame, dim=1)  # [H, F * tpf]
        with record_function("forcebench.attention"):  # a label for profilers; free otherwise
            if self.logit_observer is None:
                out, mass = kernels.attention(
                    q, k, v, q_pos, view, self.rope, return_mass=self.observer is not None
                )
            else:
                out, mass, stats = kernels.attention(
                    q, k, v, q_pos, view, self.rope, return_mass=self.observer is not None, return_logits=True
                )
        if self.kv is not None:
            self.kv.append((k, v))
        if self.observer is not None:
            self.observer(layer, mass)
        if self.logit_observer is not None:
            self.logit_observer(layer, stats)
        return out


class MaskedSelfAttention:
    """Dense attention over a sequence of frames with a frame-level boolean mask.

    frame_pos: [T] temporal position of every frame; mask: [T, T], mask[i, j] = frame i
    may attend to frame j.
    """

    def __init__(self, frame_pos: torch.Tensor, mask: torch.Tensor, rope: Rope3D, tokens_per_frame: int):
        self.rope = rope
        self.pos = frame_pos.repeat_interleave(tokens_per_frame)  # [N]
        self.mask = mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        q = self.rope.rotate_temporal(q.to(work), self.pos)
        k = self.rope.rotate_temporal(k.to(work), self.pos)
        out = F.scaled_dot_product_attention(q, k, v.to(work), attn_mask=self.mask.to(q.device))
        return out.to(v.dtype)


def block_causal_mask(num_frames: int, frames_per_chunk: int) -> torch.Tensor:
    """[T, T] mask: a frame sees every frame of its own chunk and of earlier chunks."""
    chunk = torch.arange(num_frames) // frames_per_chunk
    return chunk[:, None] >= chunk[None, :]


def teacher_forcing_mask(num_frames: int, frames_per_chunk: int) -> torch.Tensor:
    """[2T, 2T] mask for the sequence [clean frames ; noisy frames].

    Clean frames are block-causal among themselves; the noisy frames of chunk c see the
    clean frames of chunks < c and the noisy frames of chunk c. This is exactly what chunk
    c sees during a rollout with a full cache, so one forward computes every chunk's
    denoising step at once.
    """
    chunk = torch.arange(num_frames) // frames_per_chunk
    causal = chunk[:, None] >= chunk[None, :]
    earlier = chunk[:, None] > chunk[None, :]
    same = chunk[:, None] == chunk[None, :]
    none = torch.zeros_like(causal)
    top = torch.cat((causal, none), dim=1)
    bottom = torch.cat((earlier, same), dim=1)
    return torch.cat((top, bottom), dim=0)
