"""CLIP consistency and text-frame score: exact answers with a stand-in encoder, orderings with toy-clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from core.world import simulate
from metrics.base import VideoMeta, long_rows
from metrics.clip import ClipConfig, ClipConsistency, prompt_segments
from metrics.encoders import load_encoder

FPS = 4.0
PROMPT = "forest bricks, red cross bouncing, white ring sliding, camera pans right"
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


class ColourEncoder:
    """Stand-in image-text encoder: a frame's feature is its mean RGB; a prompt's is its colour word."""

    name = "colour"

    def encode_image(self, frames: torch.Tensor) -> torch.Tensor:
        return F.normalize(frames.mean(dim=(2, 3)), dim=-1)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([COLOURS[p] for p in prompts])


def solid(colours: list[str], size: int = 4) -> torch.Tensor:
    """Frames [T, 3, size, size] of solid colours."""
    return torch.tensor([COLOURS[c] for c in colours])[:, :, None, None].expand(-1, 3, size, size).clone()


@pytest.fixture(scope="module")
def toy_clip():
    return load_encoder("toy-clip")


@pytest.fixture(scope="module")
def world():
    return torch.from_numpy(simulate([(0, PROMPT)], 40, seed=3).frames)


def colour_metric() -> ClipConsistency:
    return ClipConsistency(ClipConfig(encoder="colour"), {"colour": ColourEncoder()})


def test_static_video_is_fully_consistent(world, toy_clip):
    metric = ClipConsistency(ClipConfig(encoder="toy-clip"), {"toy-clip": toy_clip})
    out = metric.score(world[:1].expand(12, -1, -1, -1), VideoMeta(FPS, [(0.0, PROMPT)]))
    assert out.scalars["clip_first_frame[toy-clip]"] == pytest.approx(1, abs=1e-5)
    assert out.scalars["clip_prev_frame[toy-clip]"] == pytest.approx(1, abs=1e-5)
    assert 0 < out.scalars["clip_text[toy-clip]"] <= 100


def test_shuffled_video_is_less_consistent(world, toy_clip):
    metric = ClipConsistency(ClipConfig(encoder="toy-clip"), {"toy-clip": toy_clip})
    meta = VideoMeta(FPS, [(0.0, PROMPT)])
    original = metric.score(world, meta).scalars
    shuffled = metric.score(world[torch.from_numpy(np.random.default_rng(0).permutation(40))], meta).scalars
    assert shuffled["clip_prev_frame[toy-clip]"] < original["clip_prev_frame[toy-clip]"] - 0.01
    # the text score is a per-frame mean, so frame order does not change it
    assert shuffled["clip_text[toy-clip]"] == pytest.approx(original["clip_text[toy-clip]"], rel=1e-5)


def test_known_cosines_and_uneven_segments():
    """30 frames at 4 fps: 2 s segments [0, 8), [8, 16), [16, 24) and the 6-frame tail
    [24, 30) (at least half a segment: its own); red until frame 25, then blue."""
    frames = solid(["red"] * 25 + ["blue"] * 5)
    out = colour_metric().score(frames, VideoMeta(FPS, [(0.0, "red")]))
    first = out.series["clip_first_frame[colour]"]
    assert first.starts.tolist() == [0, 8, 16, 24] and first.ends.tolist() == [8, 16, 24, 30]
    assert first.values == pytest.approx([1.0, 1.0, 1.0, 1 / 6])  # frames 24..29: one red, five blue
    assert out.scalars["clip_first_frame[colour]"] == pytest.approx(24 / 29)
    assert out.scalars["clip_prev_frame[colour]"] == pytest.approx(28 / 29)  # one red -> blue cut
    assert out.series["clip_text[colour]"].values == pytest.approx([100.0, 100.0, 100.0, 100 / 6])  # blue: 0


def test_multi_prompt_scores_active_and_previous_prompt():
    """Prompt 'red' then 'green' from 2.5 s (frame 10); the video follows the switch."""
    meta = VideoMeta(FPS, [(0.0, "red"), (2.5, "green")])
    out = colour_metric().score(solid(["red"] * 10 + ["green"] * 10), meta)
    active, previous = out.series["clip_text_active[colour]"], out.series["clip_text_previous[colour]"]
    assert active.starts.tolist() == [0, 10] and active.ends.tolist() == [10, 20]
    assert active.values == pytest.approx([100.0, 100.0])
    assert previous.starts.tolist() == [10] and previous.values == pytest.approx([0.0])
    assert out.scalars["clip_text[colour]"] == pytest.approx(100.0)
    # a video that ignores the switch keeps matching the previous prompt instead
    stuck = colour_metric().score(solid(["red"] * 20), meta)
    assert stuck.series["clip_text_active[colour]"].values == pytest.approx([100.0, 0.0])
    assert stuck.series["clip_text_previous[colour]"].values == pytest.approx([100.0])


@pytest.mark.parametrize("chunk, switch", [(1, 11), (3, 12)])
def test_prompt_segments_follow_prompt_at(chunk, switch):
    """2.6 s = frame 10.4: the switch lands on the next frame, or the next chunk start."""
    meta = VideoMeta(FPS, [(0.0, "red"), (2.6, "green"), (100.0, "blue")], frames_per_chunk=chunk)
    assert prompt_segments(meta, 20) == [(0, 0, switch), (1, switch, 20)]
    assert all(meta.prompt_at(t) == ("red" if t < switch else "green") for t in range(20))


def test_toy_clip_prefers_the_active_prompt(toy_clip):
    a = "forest bricks, red cross bouncing, camera pans right"
    b = "ocean stripes, yellow square sliding, camera pans left"
    frames = np.concatenate([simulate([(0, a)], 20, 1).frames, simulate([(0, b)], 20, 1).frames])
    metric = ClipConsistency(ClipConfig(encoder="toy-clip"), {"toy-clip": toy_clip})
    out = metric.score(torch.from_numpy(frames), VideoMeta(FPS, [(0.0, a), (5.0, b)]))
    active = out.series["clip_text_active[toy-clip]"].values
    previous = out.series["clip_text_previous[toy-clip]"].values
    assert active[1] > previous[0] + 20


def test_text_needs_a_text_tower_and_rows_carry_the_version():
    class ImageOnly(ColourEncoder):
        def encode_text(self, prompts):
            raise NotImplementedError

    metric = ClipConsistency(ClipConfig(encoder="colour"), {"colour": ImageOnly()})
    with pytest.raises(ConfigError, match="no text tower"):
        metric.score(solid(["red"] * 3), VideoMeta(FPS, [(0.0, "red")]))
    assert ClipConsistency.needs(ClipConfig()) == ("clip-vit-b32",)
    metric = colour_metric()
    metric.update(solid(["red"] * 8), VideoMeta(FPS, [(0.0, "red")]))
    rows = long_rows(metric.compute()[0], metric)
    assert {r["version"] for r in rows} == {"clip-v2"} and {r["encoder"] for r in rows} == {"colour"}
    metric.reset()
    assert metric.compute() == []
