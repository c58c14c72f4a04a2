"""Optical flow models: ``raft`` (RAFT-large, local weights) and ``flow-blockmatch`` (no weights).

``raft``: torchvision's ``raft_large`` built with ``weights=None``; the file holds its
state dict (torchvision's published files, e.g. raft_large_C_T_SKHT_V2-ff5fadd5.pth, are
accepted under their own names). Inputs are scaled to [-1, 1] inside. RAFT's correlation
pyramid needs at least 128 pixels a side, so smaller frames are upsampled by a whole
factor s (bilinear) and the flow is average-pooled back and divided by s; sides are
padded to a multiple of 8 (edge replication, as RAFT's own InputPadder) and cropped back.

``flow-blockmatch`` is a classical stand-in, not RAFT: for every pixel it picks the whole-
pixel displacement d, |d_x|, |d_y| <= radius, that minimises the mean squared RGB
difference between a and b shifted by d over a ``window`` x ``window`` box, plus
``zero_bias * |d|^2`` so that flat regions get zero flow. No sub-pixel precision; pixels
within radius + window // 2 of the border are less reliable. Its numbers are not
comparable with RAFT's; it lets flow-based metrics run on 32 x 32 toy frames.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metrics.encoders.base import ENCODERS, FlowModel, model_device, unit_pair


@dataclass
class RaftConfig:
    """iters: refinement iterations (VBench's dynamic degree uses 20); min_size: smallest
    side RAFT is run at; tiny: torchvision's raft_small, random, for tests."""

    iters: int = 20
    min_size: int = 128
    tiny: bool = False


@ENCODERS.register("raft", config=RaftConfig)
class Raft(FlowModel):
    name = "raft"
    aliases = ("raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft_large_C_T_V2-1bb1363a.pth")

    def __init__(self, cfg: RaftConfig | None = None) -> None:
        from torchvision.models.optical_flow import raft_large, raft_small

        super().__init__()
        self.cfg = cfg = cfg or RaftConfig()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = (raft_small if cfg.tiny else raft_large)(weights=None)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def import_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)

    @torch.no_grad()
    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N, 3, H, W] in [0, 1] -> [N, 2, H, W] float32 (FlowModel.flow)."""
        a, b = unit_pair(a, b, model_device(self))
        n, _, h, w = a.shape
        scale = max(1, math.ceil(self.cfg.min_size / min(h, w)))
        x = torch.cat([a, b]) * 2 - 1
        if scale > 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        hs, ws = x.shape[-2:]
        ph, pw = -hs % 8, -ws % 8
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        flow = self.net(x[:n].contiguous(), x[n:].contiguous(), num_flow_updates=self.cfg.iters)[-1]
        flow = flow[..., ph // 2:ph // 2 + hs, pw // 2:pw // 2 + ws]
        if scale > 1:
            flow = F.avg_pool2d(flow, scale) / scale
        return flow.float()


@dataclass
class BlockMatchConfig:
    """radius: largest displacement searched, in pixels; window: odd side of the box whose
    mean squared difference is compared; zero_bias: cost added per squared pixel of displacement."""

    radius: int = 4
    window: int = 5
    zero_bias: float = 1e-4


@ENCODERS.register("flow-blockmatch", config=BlockMatchConfig)
class BlockMatchFlow(FlowModel):
    name = "flow-blockmatch"
    needs_weights = False

    def __init__(self, cfg: BlockMatchConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or BlockMatchConfig()
        if cfg.radius < 0 or cfg.window < 1 or cfg.window % 2 == 0:
            raise ValueError(f"flow-blockmatch: radius {cfg.radius} must be >= 0 and window "
                             f"{cfg.window} odd and >= 1")

    @torch.no_grad()
    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N, 3, H, W] in [0, 1] -> [N, 2, H, W] float32 whole-pixel flow (module doc);
        computed on the inputs' device."""
        a, b = unit_pair(a, b, a.device)
        n, _, h, w = a.shape
        r, k = self.cfg.radius, self.cfg.window
        padded = F.pad(b, (r, r, r, r), mode="replicate")
        rows = torch.arange(h, device=a.device).view(h, 1)
        cols = torch.arange(w, device=a.device).view(1, w)
        best = torch.full((n, h, w), math.inf, device=a.device)
        flow = torch.zeros(n, 2, h, w, device=a.device)
        # One displacement at a time keeps memory at a few frames' worth at any size.
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                shifted = padded[..., r + dy:r + dy + h, r + dx:r + dx + w]
                cost = F.avg_pool2d(((a - shifted) ** 2).sum(1, keepdim=True), k, stride=1,
                                    padding=k // 2, count_include_pad=False)[:, 0]
                cost = cost + self.cfg.zero_bias * (dx * dx + dy * dy)
                inside = (rows + dy >= 0) & (rows + dy < h) & (cols + dx >= 0) & (cols + dx < w)
                cost = cost.masked_fill(~inside, math.inf)
                better = cost < best
                best = torch.where(better, cost, best)
                flow[:, 0] = torch.where(better, float(dx), flow[:, 0])
                flow[:, 1] = torch.where(better, float(dy), flow[:, 1])
        return flow
