"""Known-answer videos against the direction each metric declares.

For every metric family of conf/metrics/toy.yaml but the oracle, built with that file's
parameters: a video that is clearly better wins by the direction written beside the
value (``higher_is_better`` in metrics.csv, which the leaderboard bolds and ranks by), and
a result without a better value declares no direction. Every whole-video key a family
emits on these videos must be listed here, so a new key cannot slip in without a check.

Videos (48 frames = 12 s at 4 fps, chunks of 3 frames, 32 x 32 px):
- ``clean``: one toy-world frame held still;
- ``degrading``: ``clean`` plus Gaussian noise whose std grows linearly from 0 to 0.3;
- ``washing_out``: ``clean`` fading linearly towards white (40 % at the end);
- ``flashing``: ``clean`` with a white flash every 20 frames (every 5 s) from frame 10;
- ``pan``: a toy-world frame moving right 1 px a frame; ``seams``: the same pan in 3 px
  steps where a chunk starts (still inside chunks); ``hitch``: 1 px a frame inside chunks,
  standing still across every chunk boundary;
- ``follows`` / ``stuck``: prompt A, then B from 6 s; toy-world video of A then of B, or of
  A throughout;
- ``costly``: ``clean`` from a rollout three times slower with three times the cache.

LPIPS weights do not ship: a mean-absolute-difference distance stands in for the trunk
(the direction under test is the metric's, not the trunk's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from core.paths import REPO_DIR
from core.system_numbers import SYSTEM_DIRECTIONS, system_summary
from core.world import simulate
from metrics.base import METRICS, SEGMENT_SECONDS, VideoMeta
from metrics.encoders import load_encoder
from metrics.suite import MetricsConfig, Suite
from metrics.vbench import VBenchConfig

FPS, T, CHUNK, SIZE = 4.0, 48, 3, 32
PROMPT = "forest bricks, red cross bouncing, white ring sliding, camera pans right"
OTHER = "ocean stripes, yellow square sliding, camera pans left"
TOY = OmegaConf.to_container(OmegaConf.load(REPO_DIR / "conf" / "metrics" / "toy.yaml"))
CONFIG = MetricsConfig(**TOY)


class MeanAbs:
    """Stand-in perceptual distance: mean |a - b| over channels and pixels -> [N]."""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))


STAND_INS = {"lpips-alex": MeanAbs()}


@dataclass
class Video:
    frames: torch.Tensor  # [T, 3, SIZE, SIZE] in [0, 1]
    prompts: list[tuple[float, str]] = field(default_factory=lambda: [(0.0, PROMPT)])
    cost: float = 1.0  # chunk records: wall time, KV bytes and tokens scale with it


def chunk_records(cost: float) -> list[SimpleNamespace]:
    """Rollout chunk records [(frame_end, wall_s, kv_bytes, tokens [L=2, H=2], peak memory)]."""
    return [SimpleNamespace(frame_end=end, wall_s=0.1 * cost * (1 + 0.1 * cost * (end % 2)), kv_bytes=int(1000 * cost * end),
                            tokens=np.full((2, 2), 4 * cost * end), peak_memory_bytes=int(2**20 * cost),
                            method_s=0.01 * cost**2, decode_s=0.02 * cost, encode_s=0.05 * cost * (end == CHUNK))
            for end in range(CHUNK, T + 1, CHUNK)]


@cache
def videos() -> dict[str, Video]:
    world = torch.from_numpy(simulate([(0, PROMPT)], T, seed=3).frames)
    clean = world[:1].expand(T, -1, -1, -1).clone()
    ramp = torch.linspace(0, 1, T)[:, None, None, None]  # 0 at the first frame, 1 at the last
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    flash = torch.zeros(T, 1, 1, 1)
    flash[10::20] = 1.0

    def pan(position) -> torch.Tensor:
        return torch.stack([torch.roll(world[0], int(position(t)), dims=2) for t in range(T)])

    other = torch.from_numpy(simulate([(0, OTHER)], T, seed=3).frames)
    switch = [(0.0, PROMPT), (6.0, OTHER)]  # 6 s = frame 24, a chunk start
    return {
        "clean": Video(clean),
        "degrading": Video((clean + 0.3 * ramp * noise).clamp(0, 1)),
        "washing_out": Video(clean + 0.4 * ramp * (1 - clean)),
        "flashing": Video(clean + 0.6 * flash * (1 - clean)),
        "pan": Video(pan(lambda t: t)),
        "seams": Video(pan(lambda t: CHUNK * (t // CHUNK))),
        "hitch": Video(pan(lambda t: t - t // CHUNK)),
        "follows": Video(torch.cat([world[:24], other[24:]]), switch),
        "stuck": Video(world, switch),
        "costly": Video(clean, cost=3.0),
    }


@cache
def metric(family: str):
    entry, cfg = METRICS.get(family), CONFIG.metric_config(family)
    models = {enc: STAND_INS[enc] if enc in STAND_INS else load_encoder(enc) for enc in entry.cls.needs(cfg)}
    return entry.cls(cfg, models)


@cache
def rows(family: str, video: str) -> tuple[dict, ...]:
    """The long-form rows the runner writes for this family and video (metrics.csv)."""
    v = videos()[video]
    meta = VideoMeta(FPS, v.prompts, frames_per_chunk=CHUNK, chunks=chunk_records(v.cost))
    suite = Suite([metric(family)], {}, {}, CONFIG.segment_seconds)
    return tuple(suite.score(v.frames, meta))


def whole(family: str, video: str) -> dict[str, tuple[float, bool | None]]:
    """Whole-video key -> (value, declared direction)."""
    return {r["metric"]: (r["value"], r["higher_is_better"]) for r in rows(family, video)
            if r["status"] == "ok" and r["segment"] == -1}


# (family, key, better video, worse video)
WINS = [
    *[("clip", f"{name}[toy-clip]", "clean", worse) for name in ("clip_first_frame", "clip_prev_frame", "clip_text")
      for worse in ("degrading", "flashing")],
    ("clip", "clip_text_active[toy-clip]", "follows", "stuck"),
    ("clip", "clip_text_previous[toy-clip]", "follows", "stuck"),
    *[("drift", f"{stat}[toy-clip-{series}]", "clean", "degrading")
      for stat in ("drift", "abs_drift", "drift_slope") for series in ("text", "first")],
    *[("drift", f"abs_drift[{stat}]", "clean", "washing_out") for stat in ("brightness", "contrast", "saturation")],
    *[("drift", f"lag_similarity_{lag}[toy-clip]", "clean", "degrading") for lag in (2, 5, 10, 20)],
    *[("vbench", key, "clean", worse) for key in (
        "subject_consistency[toy-clip]", "temporal_flickering", "motion_smoothness[flow-interp-flow-blockmatch]")
      for worse in ("degrading", "flashing")],
    ("vbench", "subject_consistency_clip2clip[toy-clip]", "clean", "degrading"),
    *[("lpips", f"{name}[lpips-alex]", "clean", worse) for name in ("lpips_prev", "lpips_first")
      for worse in ("degrading", "flashing")],
    ("chunk_discontinuity", "chunk_discontinuity", "pan", "seams"),
    ("chunk_discontinuity", "chunk_discontinuity", "pan", "hitch"),
]
# (family, key, a video that emits it): no value is better
NO_DIRECTION = [
    *[("drift", f"{stat}[{series}]", "washing_out") for stat in ("drift", "drift_slope")
      for series in ("brightness", "contrast", "saturation")],
    ("vbench", "dynamic_degree[flow-blockmatch]", "seams"),
    ("vbench", "flow_magnitude[flow-blockmatch]", "seams"),
    ("chunk_discontinuity", "chunk_boundary_diff", "pan"),
    ("chunk_discontinuity", "chunk_inside_diff", "pan"),
]


@pytest.mark.parametrize("family, key, better, worse", WINS, ids=[f"{k}: {b} > {w}" for _, k, b, w in WINS])
def test_the_better_video_wins_by_the_declared_direction(family, key, better, worse):
    (good, direction), (bad, direction_bad) = whole(family, better)[key], whole(family, worse)[key]
    assert direction is not None and direction == direction_bad, f"{key} declares {direction!r}"
    assert np.isfinite(good) and np.isfinite(bad)
    assert good > bad if direction else good < bad, f"{key}: {better}={good:.6g}, {worse}={bad:.6g}"


@pytest.mark.parametrize("key", sorted(SYSTEM_DIRECTIONS))
def test_the_cheaper_run_wins_every_system_number_by_its_direction(key):
    clean, costly = (system_summary(chunk_records(cost), T, FPS) for cost in (1.0, 3.0))
    good, bad = clean[key], costly[key]
    assert np.isfinite(good) and np.isfinite(bad)
    assert good > bad if SYSTEM_DIRECTIONS[key] else good < bad, f"{key}: clean={good:.6g}, costly={bad:.6g}"


@pytest.mark.parametrize("family, key, video", NO_DIRECTION, ids=[f"{k}: none" for _, k, _ in NO_DIRECTION])
def test_a_result_without_a_better_value_declares_no_direction(family, key, video):
    value, direction = whole(family, video)[key]
    assert np.isfinite(value) and direction is None


def test_the_bug_directions_cannot_rank_broken_videos_first():
    """The audit's cases: a brightening video beat a still one on drift[brightness]; a jerky
    video won dynamic_degree. Both values differ, but neither is ranked any more."""
    assert whole("drift", "washing_out")["drift[brightness]"][0] < whole("drift", "clean")["drift[brightness]"][0]
    assert whole("vbench", "seams")["dynamic_degree[flow-blockmatch]"][0] == 1.0
    assert whole("vbench", "clean")["dynamic_degree[flow-blockmatch]"][0] == 0.0


def test_every_family_and_key_of_the_toy_set_is_checked():
    families = {f for f, *_ in WINS} | {f for f, *_ in NO_DIRECTION}
    assert families == set(CONFIG.enabled) - {"oracle", "system"}  # system: whole-video numbers in the summary
    assert whole("system", "clean") == {}  # its scalars are written once, by the summary (checked above)
    for family in families:
        listed = {k for f, k, *_ in WINS + NO_DIRECTION if f == family}
        shown = {v for f, _, *vs in WINS + NO_DIRECTION if f == family for v in vs}
        emitted = set().union(*(whole(family, v) for v in shown))
        assert emitted == listed, f"{family}: keys without a known-answer check: {sorted(emitted - listed)}"


def test_identical_consistency_keys_are_not_both_emitted():
    omitted = [r for r in rows("vbench", "clean") if r["status"].startswith("omitted: ")]
    assert [r["metric"] for r in omitted] == ["background_consistency[toy-clip]"]
    assert "subject_consistency[toy-clip]" in omitted[0]["status"]


def test_segments_resolve_an_artefact_every_5_seconds():
    """Flashes at frames 10, 30 (every 5 s): 2 s segments show them; 5 s segments hold one
    flash each and would be flat."""
    assert CONFIG.segment_seconds == VideoMeta(FPS).segment_seconds == VBenchConfig().clip_seconds == SEGMENT_SECONDS
    assert SEGMENT_SECONDS == 2.0
    clean = {r["segment"]: r["value"] for r in rows("clip", "clean") if r["metric"] == "clip_prev_frame[toy-clip]"}
    flash = {r["segment"]: (r["start_s"], r["end_s"], r["value"]) for r in rows("clip", "flashing")
             if r["metric"] == "clip_prev_frame[toy-clip]" and r["segment"] >= 0}
    assert [(a, b) for a, b, _ in flash.values()] == [(2.0 * i, 2.0 * (i + 1)) for i in range(6)]
    hit = {1, 3}  # frames [8, 16) and [24, 32) hold the flashes (frames 10, 30) and the frames after them
    for i, (_, _, value) in flash.items():
        assert (value < clean[i] - 0.01) if i in hit else value == pytest.approx(clean[i], abs=1e-6)
