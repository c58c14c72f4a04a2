"""Attention over per-head ragged KV caches, and RoPE re-encoding.

Every backbone and method calls attention only through :func:`attention`, which picks
an implementation. ``FORCEBENCH_ATTENTION`` (or :func:`set_backend`) forces one:
``auto`` (default) or ``reference`` (the PyTorch definition in kernels/reference.py).
"""

from __future__ import annotations

import os

import torch

from kernels.reference import ragged_attention_reference
from kernels.rope import Rope3D, rope_split
from kernels.view import RaggedKV

__all__ = ["RaggedKV", "Rope3D", "attention", "backends", "rope_split", "set_backend"]

_IMPLEMENTATIONS = {"reference": ragged_attention_reference}
_forced: str | None = None


def backends() -> list[str]:
    """Names accepted by FORCEBENCH_ATTENTION / set_backend."""
    return ["auto", *sorted(_IMPLEMENTATIONS)]


def set_backend(name: str | None) -> None:
    """Force an implementation for this process (None: back to the environment/auto)."""
    if name is not None and name not in backends():
        raise ValueError(f"attention backend {name!r} is unknown; allowed: {', '.join(backends())}")
    global _forced
    _forced = name


def _resolve(device: torch.device) -> str:
    name = _forced or os.environ.get("FORCEBENCH_ATTENTION", "auto")
    if name not in backends():
        raise ValueError(
            f"FORCEBENCH_ATTENTION={name!r} is unknown; allowed: {', '.join(backends())}"
        )
    return "reference" if name == "auto" else name


def attention(
    q: torch.Tensor,
    k_self: torch.Tensor,
    v_self: torch.Tensor,
    q_pos: torch.Tensor,
    cache: RaggedKV,
    rope: Rope3D,
    return_mass: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Head-ragged attention; shapes and semantics in kernels/reference.py."""
    impl = _IMPLEMENTATIONS[_resolve(q.device)]
    return impl(q, k_self, v_self, q_pos, cache, rope, return_mass=return_mass)
