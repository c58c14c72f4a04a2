"""Attention over per-head ragged KV caches, with the temporal RoPE applied at each entry's
assigned position (so a method re-encodes positions by assigning them; stored keys are never
re-rotated).

Every backbone and method calls attention only through :func:`attention`, which picks an
implementation:

- ``auto`` (default): Triton for CUDA tensors, the PyTorch reference for CPU tensors;
- ``triton``: kernels/triton_attention.py (CUDA, or a CPU with TRITON_INTERPRET=1 set
  before start: the Triton interpreter, float32/float16 only);
- ``reference``: the PyTorch definition in kernels/reference.py.

``FORCEBENCH_ATTENTION``, the run config's ``attention`` key, or :func:`set_backend`
forces one. Both report per cache entry, on request, the attention mass it received
(``return_mass``) and statistics of its pre-softmax logits (``return_logits``, a
:class:`LogitStats`), with the same contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from kernels.reference import LogitStats, ragged_attention_reference
from kernels.rope import Rope3D, rope_split
from kernels.view import RaggedKV

__all__ = ["LogitStats", "RaggedKV", "Rope3D", "attention", "backends", "resolve", "rope_split", "set_backend"]

BACKENDS = ("auto", "reference", "triton")
_forced: str | None = None


def backends() -> list[str]:
    """Names accepted by FORCEBENCH_ATTENTION / the ``attention`` config key / set_backend."""
    return list(BACKENDS)


def set_backend(name: str | None) -> None:
    """Force an implementation for this process (None: back to the environment/auto)."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is unknown; allowed: {', '.join(BACKENDS)}")
    global _forced
    _forced = name


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(device: torch.device, name: str | None = None) -> str:
    """The implementation ('reference' or 'triton') that serves tensors on ``device``, for
    the backend ``name`` (default: the forced one, else FORCEBENCH_ATTENTION, else auto)."""
    name = name or _forced or os.environ.get("FORCEBENCH_ATTENTION", "auto")
    if name not in BACKENDS:
        raise ValueError(f"FORCEBENCH_ATTENTION={name!r} is unknown; allowed: {', '.join(BACKENDS)}")
    if name == "auto":
        return "triton" if device.type == "cuda" else "reference"
    if name == "triton" and device.type != "cuda" and not interpreting():
        raise ValueError(f"attention backend 'triton' needs CUDA tensors (these are on {device}); on a CPU set "
                         f"TRITON_INTERPRET=1 before start, or use auto / reference")
    return name


def _triton(function: str) -> Callable:
    from kernels import (
        triton_attention,  # imported on first use: TRITON_INTERPRET is read at import
    )

    return getattr(triton_attention, function)


def attention(
    q: torch.Tensor,
    k_self: torch.Tensor,
    v_self: torch.Tensor,
    q_pos: torch.Tensor,
    cache: RaggedKV,
    rope: Rope3D,
    return_mass: bool = False,
    return_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, LogitStats]:
    """Head-ragged attention; shapes and semantics in kernels/reference.py. Returns
    (out, mass), or (out, mass, LogitStats) with ``return_logits``."""
    impl = _triton("ragged_attention_triton") if resolve(q.device) == "triton" else ragged_attention_reference
    if return_logits:
        return impl(q, k_self, v_self, q_pos, cache, rope, return_mass=return_mass, return_logits=True)
    return impl(q, k_self, v_self, q_pos, cache, rope, return_mass=return_mass)


