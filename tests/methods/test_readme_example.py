"""The README's worked example of adding a method is true: its code, run as written, registers
a method that builds from its config, keeps its budget and rolls out past the horizon."""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch

from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import ConfigError
from core.paths import REPO_DIR
from methods import METHODS, build_method


def readme_method_code() -> str:
    """The python block of the README's "Adding a method" section."""
    text = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    section = text.split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section shows one python block"
    return blocks[0]


@pytest.fixture
def strided_window(monkeypatch) -> dict:
    """The example's module namespace, its method registered only for this test."""
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    module = types.ModuleType("methods.strided_window")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(readme_method_code(), "README.md:methods/strided_window.py", "exec"), module.__dict__)
    return module.__dict__


def test_the_example_registers_checks_and_keeps_its_strided_budget(strided_window, tiny_model):
    assert "strided_window" in METHODS and METHODS.get("strided_window").cls is strided_window["StridedWindow"]
    config_cls = strided_window["StridedWindowConfig"]
    with pytest.raises(ConfigError, match="method.stride=0: allowed: >= 1"):
        config_cls(stride=0)
    config = config_cls(budget_frames=2, positions="repacked")
    g = tiny_model.geometry
    config.check(g, 240)
    method = build_method(config, g)
    seen = []

    def check(rec):
        kept = sorted({int(f) for f in method.layers[0].frame.tolist()})
        seen.append((rec.frame_end, kept))

    out = generate(tiny_model, method, [(0.0, "a"), (30.0, "b")], 240, seed=0, sampler=FlowSampler(steps=1),
                   on_chunk=check)
    assert out.frames.shape[0] == 240 and torch.isfinite(out.frames).all()
    for end, kept in seen:
        assert kept == [f for f in range(max(0, end - 4), end) if f % 2 == 0]  # 2 frames a head, stride 2
