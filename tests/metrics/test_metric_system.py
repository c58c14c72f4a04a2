"""The timing protocol of the system numbers (metrics/system.py), on known chunk records."""

from types import SimpleNamespace

import numpy as np
import pytest

from bench.models.wan_config import WanConfig
from core.system_numbers import SYSTEM_DIRECTIONS, system_summary


def chunk(end, wall, method=0.0, decode=0.0, encode=0.0):
    return SimpleNamespace(frame_end=end, wall_s=wall, kv_bytes=100 * end, tokens=np.full((2, 2), end),
                           peak_memory_bytes=7, method_s=method, decode_s=decode, encode_s=encode)


def test_steady_latency_excludes_the_first_chunk_and_fps_counts_what_it_says():
    chunks = [chunk(3, 1.0, 0.1, 0.5, 2.0), chunk(6, 0.2, 0.02, 0.1), chunk(9, 0.4, 0.04, 0.1), chunk(12, 0.3, 0.03, 0.1)]
    s = system_summary(chunks, 9, fps=4.0, video_frames=33)
    assert (s["frames"], s["chunks"], s["seconds"]) == (9, 3, 2.25)
    assert s["latency_p50_s"] == pytest.approx(0.3) and s["latency_mean_s"] == pytest.approx(0.3)  # chunks 2 and 3
    assert s["latency_p95_s"] == pytest.approx(0.39) and s["latency_spread"] == pytest.approx(0.3)
    assert s["first_chunk_latency_s"] == 1.0 and s["first_chunk_latency_e2e_s"] == pytest.approx(3.5)
    assert s["fps"] == pytest.approx(33 / 1.6) and s["fps_latent"] == pytest.approx(9 / 1.6)
    assert s["fps_e2e"] == pytest.approx(33 / (1.6 + 0.7 + 2.0))
    assert s["method_share"] == pytest.approx(0.16 / 1.6) and s["kv_bytes"] == 900
    assert set(SYSTEM_DIRECTIONS) <= set(s)
    assert system_summary(chunks[:1], 3, fps=4.0)["latency_p50_s"] == 1.0  # one chunk: itself
    with pytest.raises(ValueError, match="no chunk ends"):
        system_summary(chunks, 2, fps=4.0)


def test_video_frames_of_a_latent_backbone():
    assert [WanConfig().video_frames(n) for n in (0, 1, 3, 21, 240)] == [0, 1, 9, 81, 957]
