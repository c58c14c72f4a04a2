"""Shared fixtures: a tiny toy backbone so that every test runs in seconds on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Triton kernels run on the CPU through the interpreter, which is chosen when a kernel is
# defined: set it before anything imports kernels/triton_attention.py.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from bench.models.toy import ToyConfig, ToyDiT  # noqa: E402
from core.paths import REPO_DIR  # noqa: E402
from methods.controls.no_history import NoHistoryConfig  # noqa: E402
from methods.controls.random_eviction import RandomEvictionConfig  # noqa: E402
from methods.controls.scrambled_positions import ScrambledPositionsConfig  # noqa: E402
from methods.controls.stale import StaleConfig  # noqa: E402
from methods.deep_forcing import DeepForcingConfig  # noqa: E402
from methods.dummy_forcing import DummyForcingConfig  # noqa: E402
from methods.forcing_kv import ForcingKVConfig  # noqa: E402
from methods.full import FullConfig  # noqa: E402
from methods.head_forcing import HeadForcingConfig  # noqa: E402
from methods.infinity_rope import InfinityRopeConfig  # noqa: E402
from methods.pyramid_forcing import PyramidForcingConfig  # noqa: E402
from methods.rolling_sink import RollingSinkConfig  # noqa: E402
from methods.sink import SinkConfig  # noqa: E402
from methods.sliding_window import SlidingWindowConfig  # noqa: E402
from methods.two_tier import TwoTierConfig  # noqa: E402
from methods.uniform import UniformConfig  # noqa: E402

# Under pytest-xdist (`make test` runs two workers on two cores) each worker computes on one
# thread: the tests are mostly small tensor ops, so two workers use the cores better than two
# threads in one process.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

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
    roles = [["local", "memory"], ["anchor", "memory"]][:layers]
    local = [[0.9, 0.3], [0.2, 0.4]][:layers]
    path.write_text(json.dumps({"model": "toy", "roles": roles,
                                "stats": {"local_mass": local, "sink_mass": [[0.0, 0.5], [0.0, 0.1]]}}))
    return str(path)


def fast_configs(role_map: str) -> dict:
    """A configuration of every registered method that fits the tiny backbone (horizon 9)."""
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
        "pyramid_forcing": PyramidForcingConfig(labels=[["anchor", "wave"], ["veil", "anchor"]], sink_time_clamp_min=6, sink_time_clamp_max=9),  # the tiny horizon of 9
        "forcing_kv": ForcingKVConfig(roles="all_dynamic"),
        "control_random_eviction": RandomEvictionConfig(budget_frames=4),
        "control_scrambled_positions": ScrambledPositionsConfig(budget_frames=4),
        "control_stale": StaleConfig(budget_frames=4),
        "control_no_history": NoHistoryConfig(budget_frames=4),
    }


@pytest.fixture
def role_map_file(tmp_path) -> str:
    return tiny_role_map(tmp_path / "roles.json")


def forcebench_process(*args, cwd=None, env: dict | None = None, **popen) -> subprocess.Popen:
    """``forcebench ARGS`` started as a child process (CI=1: no progress bars) in the
    repository root (or ``cwd``), for tests of what a command does from the outside."""
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=cwd or REPO_DIR,
                            env={**os.environ, "CI": "1", **(env or {})}, text=True, **popen)


def forcebench(*args, cwd=None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``forcebench ARGS`` run to its end; stdout and stderr captured."""
    proc = forcebench_process(*args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
