"""Shared fixtures: a tiny toy backbone so that every test runs in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch

from bench.models.toy import ToyConfig, ToyDiT

# A toy backbone small enough for unit tests: 16x16 frames, 16 tokens a frame, 2 layers x
# 2 heads of head_dim 16, trained horizon 9 frames (3 chunks of 3).
TINY = dict(frame_size=16, patch=4, dim=32, layers=2, heads=2, mlp_ratio=2, horizon_frames=9)
TINY_OVERRIDES = [f"model.{k}={v}" for k, v in TINY.items()]


@pytest.fixture
def tiny_cfg() -> ToyConfig:
    return ToyConfig(**TINY)


@pytest.fixture
def tiny_model(tiny_cfg) -> ToyDiT:
    torch.manual_seed(0)
    return ToyDiT(tiny_cfg).eval()
