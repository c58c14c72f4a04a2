"""3-D rotary position embedding (RoPE), split into temporal / height / width parts.

Convention (the Wan2.1 one): ``head_dim`` D is viewed as D/2 consecutive pairs
``(x[2i], x[2i+1])``; the first ``t_dim`` dims (t_dim/2 pairs) rotate with the temporal
position, the next ``h_dim`` with the row, the last ``w_dim`` with the column. The split
is ``t_dim = D - 4 * (D // 6)``, ``h_dim = w_dim = 2 * (D // 6)``: 44/42/42 for D=128,
12/10/10 for D=32. Each part has its own frequencies ``theta ** (-2j / part_dim)``.

forcebench stores cached keys with their *spatial* rotation applied and *without* the
temporal one; the attention kernels rotate queries and keys temporally at the positions
a cache method assigns, so re-encoding positions never rewrites the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """(temporal, height, width) dims of one head, Wan's rule; each part is even."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"head_dim={head_dim}: RoPE needs an even head_dim >= 6")
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def part_frequencies(part_dim: int, theta: float) -> torch.Tensor:
    """Angular frequencies [part_dim // 2] (float64) of one RoPE part."""
    exponents = torch.arange(0, part_dim, 2, dtype=torch.float64) / part_dim
    return theta ** (-exponents)


def rotate_pairs_by(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of the last dim of ``x`` by angles given as cosines and sines.

    x: [..., 2P]; cos, sin: broadcastable to [..., P]. Computed in float32 (float64 for
    float64 inputs) and returned in x's dtype.
    """
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    pairs = x.to(work).unflatten(-1, (-1, 2))
    cos, sin = cos.to(work), sin.to(work)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


@dataclass(frozen=True)
class Rope3D:
    """The 3-D RoPE of one backbone: head_dim, theta and the size of its position table.

    ``max_positions`` mirrors the precomputed table of the real model (1024 for Wan): a
    temporal, row or column position at or beyond it is an error, never silently wrapped.
    """

    head_dim: int
    theta: float = 10000.0
    max_positions: int = 1024

    @property
    def split(self) -> tuple[int, int, int]:
        return rope_split(self.head_dim)

    def check_positions(self, pos: torch.Tensor, what: str) -> None:
        if pos.numel() == 0:
            return
        lo, hi = int(pos.min()), int(pos.max())
        if lo < 0 or hi >= self.max_positions:
            bad = hi if hi >= self.max_positions else lo
            raise ValueError(
                f"{what} position {bad} is outside the RoPE table [0, {self.max_positions}); "
                f"use a method that re-encodes positions or a shorter duration"
            )

    def cos_sin(self, pos: torch.Tensor, part_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles at positions ``pos`` [...] of one part: [..., part_dim // 2]
        float64 each, rows of the cached table (``angle_table``), so nothing is recomputed."""
        cos, sin = angle_table(part_dim, self.theta, self.max_positions, pos.device)
        return cos[pos], sin[pos]

    def rotate_temporal(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate the temporal dims of ``x`` [..., N, D] at positions ``pos`` [..., N]."""
        self.check_positions(pos, "temporal")
        t_dim = self.split[0]
        rotated = rotate_pairs_by(x[..., :t_dim], *self.cos_sin(pos, t_dim))
        return torch.cat((rotated, x[..., t_dim:]), dim=-1)

    def rotate_spatial(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Rotate the height and width dims of ``x`` [..., N, D]; rows, cols: [N]."""
        self.check_positions(rows, "row")
        self.check_positions(cols, "column")
        t_dim, h_dim, w_dim = self.split
        h = rotate_pairs_by(x[..., t_dim : t_dim + h_dim], *self.cos_sin(rows, h_dim))
        w = rotate_pairs_by(x[..., t_dim + h_dim :], *self.cos_sin(cols, w_dim))
        return torch.cat((x[..., :t_dim], h, w), dim=-1)


_ANGLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def angle_table(part_dim: int, theta: float, max_positions: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position x frequency for every position of the table, [max_positions,
    part_dim // 2] float64 each; computed once per (part, theta, size, device)."""
    key = (part_dim, theta, max_positions, str(device))
    if key not in _ANGLES:
        angles = torch.arange(max_positions, dtype=torch.float64).unsqueeze(-1) * part_frequencies(part_dim, theta)
        _ANGLES[key] = (torch.cos(angles).to(device), torch.sin(angles).to(device))
    return _ANGLES[key]


_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def rotation_table(rope: Rope3D, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every temporal angle, [max_positions, t_dim // 2] float32 each.

    The float64 table rounded once, so a kernel that gathers rows of this table rotates
    exactly as ``Rope3D.rotate_temporal`` does in float32.
    """
    key = (rope.head_dim, rope.theta, rope.max_positions, str(device))
    if key not in _TABLES:
        cos, sin = angle_table(rope.split[0], rope.theta, rope.max_positions, torch.device("cpu"))
        _TABLES[key] = (cos.float().to(device).contiguous(), sin.float().to(device).contiguous())
    return _TABLES[key]
