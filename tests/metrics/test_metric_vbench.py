"""VBench dimensions with known answers: stand-in flow models and encoders, toy-clip on toy-world videos."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from core.errors import ConfigError
from core.world import simulate
from metrics.base import VideoMeta, long_rows
from metrics.encoders import EncoderUnavailable, load_encoder
from metrics.vbench import VBench, VBenchConfig, motion_smoothness, temporal_flickering, warp

FPS = 4.0
PROMPT = "forest bricks, red cross bouncing, white ring sliding, camera pans right"


class ShiftFlow:
    """Stand-in flow: the best global integer translation (|d| <= 4 px) of a onto b, everywhere
    (the smallest on ties)."""

    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shifts = sorted(((dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)), key=lambda d: abs(d[0]) + abs(d[1]))
        out = torch.zeros(len(a), 2, *a.shape[-2:])
        for n in range(len(a)):
            err = [float((torch.roll(a[n], (dy, dx), (1, 2)) - b[n]).abs().mean()) for dx, dy in shifts]
            dx, dy = shifts[int(np.argmin(err))]
            out[n, 0], out[n, 1] = dx, dy
        return out


class ConstantFlow:
    """Stand-in flow: the same displacement (dx, dy) at every pixel."""

    def __init__(self, dx: float, dy: float = 0.0) -> None:
        self.d = (dx, dy)

    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.d, dtype=torch.float32)[None, :, None, None].expand(len(a), 2, *a.shape[-2:])


class BrightnessFlow:
    """Stand-in flow: horizontal displacement 100 * |mean(b) - mean(a)| at every pixel."""

    def flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mag = 100 * (b.mean(dim=(1, 2, 3)) - a.mean(dim=(1, 2, 3))).abs()
        return torch.stack([mag, torch.zeros_like(mag)], 1)[:, :, None, None].expand(-1, -1, *a.shape[-2:])


class ColourEncoder:
    """Stand-in encoder: the L2-normalised mean RGB of a frame."""

    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        return F.normalize(frames.mean(dim=(2, 3)), dim=-1)


def pattern(size: int = 32) -> torch.Tensor:
    """A smooth periodic image [3, size, size] in [0.1, 0.9]."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 0.5 + 0.4 * torch.sin(2 * math.pi * x / 16) * torch.cos(2 * math.pi * y / 16)
    return torch.stack([base, base.flip(0), 1 - base])


def solid(values, size: int = 32) -> torch.Tensor:
    """Frames [T, 3, size, size]: grey levels, or RGB triples."""
    v = torch.tensor(values, dtype=torch.float32)
    v = v[:, None].expand(-1, 3) if v.ndim == 1 else v
    return v[:, :, None, None].expand(-1, 3, size, size).clone()


def vbench(dims, models, **cfg) -> VBench:
    return VBench(VBenchConfig(dimensions=dims, **cfg), models)


@pytest.fixture(scope="module")
def world():
    return torch.from_numpy(simulate([(0, PROMPT)], 40, seed=3).frames)


@pytest.fixture(scope="module")
def toy_clip():
    return load_encoder("toy-clip")


def test_static_video(world, toy_clip):
    dims = ["subject_consistency", "background_consistency", "temporal_flickering",
            "dynamic_degree", "motion_smoothness"]
    metric = vbench(dims, {"toy-clip": toy_clip, "shift": ShiftFlow()}, subject_encoder="toy-clip",
                    background_encoder="toy-clip", flow="shift")
    out = metric.score(world[:1].expand(20, -1, -1, -1), VideoMeta(FPS))
    for key in ("subject_consistency[toy-clip]", "subject_consistency_clip2clip[toy-clip]"):
        assert out.scalars[key] == pytest.approx(1.0, abs=1e-5)
    assert out.scalars["temporal_flickering"] == 1.0
    assert out.scalars["motion_smoothness[flow-interp-shift]"] == 1.0
    assert out.scalars["dynamic_degree[shift]"] == 0.0
    assert np.all(out.series["flow_magnitude[shift]"].values == 0)


def test_shuffled_world_video_is_less_consistent(world, toy_clip):
    metric = vbench(["subject_consistency"], {"toy-clip": toy_clip}, subject_encoder="toy-clip")
    meta = VideoMeta(FPS)
    original = metric.score(world, meta).scalars["subject_consistency[toy-clip]"]
    order = torch.from_numpy(np.random.default_rng(0).permutation(40))
    assert metric.score(world[order], meta).scalars["subject_consistency[toy-clip]"] < original - 0.01


def test_flickering_known_value():
    frames = solid([0.0, 0.2] * 5)  # round(0.2 * 255) = 51 grey levels per step
    assert temporal_flickering(frames) == pytest.approx((255 - 51) / 255)


def test_consistency_formula_clips_and_clip_to_clip():
    """Red for 8 frames then green for 5 at 4 fps: clips [0, 8) and [8, 13) are each constant."""
    frames = solid([[1.0, 0, 0]] * 8 + [[0, 1.0, 0]] * 5)
    models = {"colour": ColourEncoder()}
    out = vbench(["subject_consistency"], models, subject_encoder="colour").score(frames, VideoMeta(FPS))
    series = out.series["subject_consistency[colour]"]
    assert series.starts.tolist() == [0, 8] and series.ends.tolist() == [8, 13]
    assert out.scalars["subject_consistency[colour]"] == pytest.approx(1.0)
    assert out.scalars["subject_consistency_clip2clip[colour]"] == pytest.approx(0.0)  # red vs green
    whole = vbench(["subject_consistency"], models, subject_encoder="colour", clip_seconds=None)
    out = whole.score(frames, VideoMeta(FPS))
    # s_i: 1 for frames 1..7, 0 at the cut, 0.5 after it (similar to the previous frame only)
    assert out.scalars["subject_consistency[colour]"] == pytest.approx((7 + 0 + 4 * 0.5) / 12)
    assert "subject_consistency_clip2clip[colour]" not in out.scalars


@pytest.mark.parametrize("frames, bounds", [(13, [(0, 8), (8, 13)]), (11, [(0, 11)])])
def test_uneven_clip_splitting(frames, bounds):
    video = solid(np.random.default_rng(frames).uniform(0, 1, frames))
    out = vbench(["temporal_flickering"], {}).score(video, VideoMeta(FPS))
    series = out.series["temporal_flickering"]
    assert list(zip(series.starts.tolist(), series.ends.tolist())) == bounds
    expected = [temporal_flickering(video[a:b]) for a, b in bounds]
    assert series.values == pytest.approx(expected)
    assert out.scalars["temporal_flickering"] == pytest.approx(np.mean(expected))


def test_dynamic_degree_threshold_scales_with_frame_size():
    """1 px of motion: above 6 * 32 / 256 = 0.75 px, below 6 * 64 / 256 = 1.5 px."""
    models = {"const": ConstantFlow(1.0)}
    for size, expected in ((32, 1.0), (64, 0.0)):
        metric = vbench(["dynamic_degree"], models, flow="const", clip_seconds=None)
        out = metric.score(solid([0.5] * 12, size), VideoMeta(FPS))
        assert out.scalars["dynamic_degree[const]"] == expected
        assert out.series["flow_magnitude[const]"].values == pytest.approx([1.0] * 11)


@pytest.mark.parametrize("moving, expected", [(4, 1.0), (3, 0.0)])
def test_dynamic_degree_needs_round_4t_16_moving_pairs(moving, expected):
    """16 frames: dynamic when at least round(4 * 16 / 16) = 4 pairs move more than 0.75 px."""
    levels = np.concatenate([0.5 + 0.01 * np.arange(moving + 1), np.full(15 - moving, 0.5 + 0.01 * moving)])
    out = vbench(["dynamic_degree"], {"bright": BrightnessFlow()}, flow="bright", clip_seconds=None)
    out = out.score(solid(levels), VideoMeta(FPS))
    assert out.scalars["dynamic_degree[bright]"] == expected
    assert int((out.series["flow_magnitude[bright]"].values > 0.75).sum()) == moving


def test_dynamic_degree_subsamples_to_flow_fps():
    """16 fps -> every 2nd frame (8 fps): 8 frames, 7 pairs (0, 2), (2, 4), ..."""
    out = vbench(["dynamic_degree"], {"const": ConstantFlow(2.0)}, flow="const", clip_seconds=None)
    out = out.score(solid([0.5] * 16), VideoMeta(16.0))
    series = out.series["flow_magnitude[const]"]
    assert series.starts.tolist() == list(range(0, 14, 2)) and series.ends.tolist() == list(range(2, 16, 2))
    assert out.scalars["dynamic_degree[const]"] == 1.0


def test_warp_moves_content_along_the_displacement():
    img = pattern()[None]
    disp = torch.zeros(1, 2, 32, 32)
    disp[:, 0] = 2.0
    shifted = warp(img, disp)  # out(x) = img(x + 2)
    assert torch.allclose(shifted[..., :30], img[..., 2:], atol=1e-5)


def test_motion_smoothness_of_a_linear_translation():
    """2 px per frame to the right; the even pairs' exact flow is 4 px. Only the border
    columns the warp cannot see differ, so the score is near 1; a zero flow blurs the
    pattern (mean of the frames 2 px either side) and scores lower."""
    video = torch.stack([torch.roll(pattern(), 2 * t, dims=2) for t in range(9)])
    assert ShiftFlow().flow(video[:1], video[2:3])[0, :, 0, 0].tolist() == [4.0, 0.0]
    exact = motion_smoothness(video, ShiftFlow())
    assert 0.98 < exact < 1.0
    assert motion_smoothness(video, ConstantFlow(0.0)) < exact - 0.03
    assert motion_smoothness(video, ConstantFlow(-4.0)) < exact - 0.03  # the flow's sign matters
    assert motion_smoothness(video[:1].expand(9, -1, -1, -1), ConstantFlow(0.0)) == 1.0


def test_aesthetic_head_from_models_and_from_file(tmp_path, monkeypatch):
    """Head w = (5, 0, 0), b = 2 on the mean-colour feature: a red frame scores (5 + 2) / 10."""
    head = nn.Linear(3, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[5.0, 0.0, 0.0]]))
        head.bias.fill_(2.0)
    frames, meta = solid([[1.0, 0, 0]] * 6 + [[0, 1.0, 0]] * 2), VideoMeta(FPS)
    dims, enc = ["aesthetic_quality"], {"colour": ColourEncoder()}
    out = vbench(dims, {**enc, "laion-aesthetic": head}, aesthetic_encoder="colour").score(frames, meta)
    assert out.scalars["aesthetic_quality[colour]"] == pytest.approx((6 * 0.7 + 2 * 0.2) / 8)

    monkeypatch.setenv("FORCEBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(EncoderUnavailable, match=re.escape(f"laion_aesthetic.safetensors not found in {tmp_path}")):
        vbench(dims, enc, aesthetic_encoder="colour")
    save_file({"weight": head.weight.detach(), "bias": head.bias.detach()}, str(tmp_path / "laion_aesthetic.safetensors"))
    loaded = vbench(dims, enc, aesthetic_encoder="colour").score(frames, meta)
    assert loaded.scalars == pytest.approx(out.scalars)


def test_needs_config_and_rows():
    assert VBench.needs(VBenchConfig()) == ("dino-vitb16", "clip-vit-b32", "raft", "clip-vit-l14")
    assert VBench.needs(VBenchConfig(dimensions=["temporal_flickering"])) == ()
    with pytest.raises(ConfigError, match="vbench.dimensions"):
        VBenchConfig(dimensions=["imaging_quality"])
    with pytest.raises(ValueError, match="needs the encoders"):
        VBench(VBenchConfig(dimensions=["dynamic_degree"]), {})
    metric = vbench(["temporal_flickering", "dynamic_degree"], {"const": ConstantFlow(1.0)}, flow="const")
    metric.update(solid([0.5] * 12), VideoMeta(FPS))
    rows = long_rows(metric.compute()[0], metric)
    assert {r["version"] for r in rows} == {"vbench-v2"}
    assert {r["metric"] for r in rows} == {"temporal_flickering", "dynamic_degree[const]", "flow_magnitude[const]"}


def test_background_consistency_is_omitted_when_it_would_repeat_subject_consistency():
    """Red for 6 frames then green for 6: one encoder for both -> one key and the reason;
    two encoders -> both keys, each with its own value."""
    frames = solid([[1.0, 0, 0]] * 6 + [[0, 1.0, 0]] * 6)
    dims = ["subject_consistency", "background_consistency"]
    one = vbench(dims, {"colour": ColourEncoder()}, subject_encoder="colour", background_encoder="colour")
    out = one.score(frames, VideoMeta(FPS))
    assert sorted(out.scalars) == ["subject_consistency[colour]", "subject_consistency_clip2clip[colour]"]
    assert list(out.omitted) == ["background_consistency[colour]"]
    assert "same encoder (colour)" in out.omitted["background_consistency[colour]"]
    alone = vbench(["background_consistency"], {"colour": ColourEncoder()}, background_encoder="colour")
    alone = alone.score(frames, VideoMeta(FPS)).scalars  # kept when asked for alone: the very same number
    assert alone["background_consistency[colour]"] == out.scalars["subject_consistency[colour]"] < 1

    class GreyEncoder:  # sees only brightness, so red and green (equal brightness) look alike
        def encode_image(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones(len(x), 1)

    two = vbench(dims, {"colour": ColourEncoder(), "grey": GreyEncoder()}, subject_encoder="colour",
                 background_encoder="grey", clip_seconds=None)
    out = two.score(frames, VideoMeta(FPS))
    assert out.omitted == {}
    assert out.scalars["subject_consistency[colour]"] == pytest.approx((5 + 0 + 5 * 0.5) / 11)  # the cut at 6
    assert out.scalars["background_consistency[grey]"] == pytest.approx(1.0)
