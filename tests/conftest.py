"""Shared fixtures: a tiny toy backbone so that every test runs in seconds on a CPU."""

from __future__ import annotations

import os

# Triton kernels run on the CPU through the interpreter, which is chosen when a kernel is
# defined: set it before anything imports kernels/triton_attention.py.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from bench.models.toy import ToyConfig, ToyDiT  # noqa: E402

# A toy backbone small enough for unit tests: 16x16 frames, 16 tokens a frame, 2 layers x
# 2 heads of head_dim 16, trained horizon 9 frames (3 chunks of 3).
TINY = dict(frame_size=16, patch=4, dim=32, layers=2, heads=2, mlp_ratio=2, horizon_frames=9)
TINY_OVERRIDES = [f"model.{k}={v}" for k, v in TINY.items()] + ["model.checkpoint=null", "metrics=none"]


@pytest.fixture
def tiny_cfg() -> ToyConfig:
    return ToyConfig(**TINY)


@pytest.fixture
def tiny_model(tiny_cfg) -> ToyDiT:
    torch.manual_seed(0)
    return ToyDiT(tiny_cfg).eval()


def tiny_role_map(path, layers=2, heads=2) -> str:
    """A role map for the tiny backbone: one head of each role, the rest memory."""
    import json

    roles = [["local", "memory"], ["anchor", "memory"]][:layers]
    local = [[0.9, 0.3], [0.2, 0.4]][:layers]
    path.write_text(json.dumps({"model": "toy", "roles": roles,
                                "stats": {"local_mass": local, "sink_mass": [[0.0, 0.5], [0.0, 0.1]]}}))
    return str(path)


def fast_configs(role_map: str) -> dict:
    """A configuration of every registered method that fits the tiny backbone (horizon 9)."""
    from methods.controls.no_history import NoHistoryConfig
    from methods.controls.random_eviction import RandomEvictionConfig
    from methods.controls.scrambled_positions import ScrambledPositionsConfig
    from methods.controls.stale import StaleConfig
    from methods.deep_forcing import DeepForcingConfig
    from methods.dummy_forcing import DummyForcingConfig
    from methods.full import FullConfig
    from methods.head_forcing import HeadForcingConfig
    from methods.infinity_rope import InfinityRopeConfig
    from methods.rolling_sink import RollingSinkConfig
    from methods.sink import SinkConfig
    from methods.sliding_window import SlidingWindowConfig
    from methods.two_tier import TwoTierConfig
    from methods.uniform import UniformConfig

    return {
        "full": FullConfig(),
        "sliding_window": SlidingWindowConfig(budget_frames=4),
        "sink": SinkConfig(sink_frames=1, budget_frames=4),
        "uniform": UniformConfig(budget_frames=4, recent_frames=2),
        "deep_forcing": DeepForcingConfig(budget_frames=5, sink_frames=2, recent_frames=2),
        "infinity_rope": InfinityRopeConfig(budget_frames=4, sink_frames=1),
        "two_tier": TwoTierConfig(role_map=role_map, budget_frames=4, small_sink_frames=1, small_recent_frames=1),
        "head_forcing": HeadForcingConfig(role_map=role_map, budget_frames=4, local_frames=2, anchor_sink_frames=1,
                                          anchor_window_frames=2, memory_window_frames=2, episode_max_frames=4),
        "rolling_sink": RollingSinkConfig(budget_frames=9),  # the tiny horizon: 6 replayed frames + 1 chunk
        "dummy_forcing": DummyForcingConfig(),
        "pyramid_forcing": __import__("methods.pyramid_forcing", fromlist=["PyramidForcingConfig"]).PyramidForcingConfig(labels=[["anchor", "wave"], ["veil", "anchor"]], sink_time_clamp_min=6, sink_time_clamp_max=9),  # the tiny horizon of 9
        "forcing_kv": __import__("methods.forcing_kv", fromlist=["ForcingKVConfig"]).ForcingKVConfig(roles="all_dynamic"),
        "control_random_eviction": RandomEvictionConfig(budget_frames=4),
        "control_scrambled_positions": ScrambledPositionsConfig(budget_frames=4),
        "control_stale": StaleConfig(budget_frames=4),
        "control_no_history": NoHistoryConfig(budget_frames=4),
    }


@pytest.fixture
def role_map_file(tmp_path) -> str:
    return tiny_role_map(tmp_path / "roles.json")
