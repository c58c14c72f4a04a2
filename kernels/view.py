"""The data a cache method hands to the attention kernels for one layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RaggedKV:
    """One layer's cached keys and values, packed head after head (heads differ in length).

    Head ``h`` owns entries ``offsets[h]:offsets[h+1]`` of ``k``, ``v`` and ``pos``. Keys
    carry their spatial RoPE rotation and no temporal one; ``pos`` is the temporal
    position the method assigns to each entry *for this attention call*, and ``q_pos``
    the positions of the current chunk's frames, per head (head-wise re-encoding may
    place each head's queries differently).

    ``bias`` (optional) is added to each entry's attention logit: log(w) for an entry that
    stands for w merged raw entries.

    Shapes: k, v [B, N, D]; pos [N] (int64); offsets [H + 1] (int64, on the CPU);
    q_pos [H, F] (int64), F = frames per chunk; bias [N] (float32) or None.
    """

    k: torch.Tensor
    v: torch.Tensor
    pos: torch.Tensor
    offsets: torch.Tensor
    q_pos: torch.Tensor
    bias: torch.Tensor | None = None
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per view and ``key``: what every attention call over this view
        derives from it alike (rotated keys, head groups). A view is built per chunk and read, never
        changed, by that chunk's forwards, so a memo cannot go stale."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    @property
    def heads(self) -> int:
        return self.offsets.numel() - 1

    def lengths(self) -> torch.Tensor:
        """Entries per head, [H]."""
        return self.offsets[1:] - self.offsets[:-1]

    def head_slice(self, h: int) -> slice:
        return slice(int(self.offsets[h]), int(self.offsets[h + 1]))
