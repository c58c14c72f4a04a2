"""Metrics are torchmetrics metrics: state, update/compute/reset, devices, and torchmetrics' PSNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchmetrics

from core.world import TILE, simulate
from metrics.base import METRICS, MetricOutput, Series, VideoMeta, decode_output, encode_output
from metrics.chunk_discontinuity import ChunkDiscontinuity, chunk_discontinuity
from metrics.oracle import any_sprite_colour, revisit_psnr, tile_fidelity_psnr
from metrics.psnr import PSNR_CAP, frame_psnr, masked_psnr, psnr
from metrics.suite import register_metrics

FPS = 4.0
PROMPT = "forest bricks, red cross bouncing, white ring sliding, camera pans right"


def videos(n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(13 + 3 * i, 3, 8, 8, generator=g) for i in range(n)]


def meta() -> VideoMeta:
    return VideoMeta(FPS, frames_per_chunk=3)


def same(a: MetricOutput, b: MetricOutput) -> bool:
    series = a.series.keys() == b.series.keys() and all(
        np.array_equal(a.series[k].starts, b.series[k].starts) and np.array_equal(a.series[k].ends, b.series[k].ends)
        and np.array_equal(a.series[k].values, b.series[k].values, equal_nan=True)
        and a.series[k].fps == b.series[k].fps
        for k in a.series)
    scalars = a.scalars.keys() == b.scalars.keys() and all(
        a.scalars[k] == b.scalars[k] or (math.isnan(a.scalars[k]) and math.isnan(b.scalars[k])) for k in a.scalars)
    return series and scalars and a.omitted == b.omitted


def test_every_registered_metric_is_a_torchmetrics_metric():
    register_metrics()
    for name in METRICS.names():
        cls = METRICS.get(name).cls
        assert issubclass(cls, torchmetrics.Metric), name
        assert cls.full_state_update is False and cls.is_differentiable is False
    metric = ChunkDiscontinuity()
    assert isinstance(metric, torchmetrics.Metric) and set(metric.metric_state) == {"values", "layouts"}


def test_update_compute_reset():
    metric, (a, b) = ChunkDiscontinuity(), videos()
    metric.update(a, meta())
    metric.update(b, meta())
    outs = metric.compute()
    assert len(outs) == 2 and metric.update_count == 2
    assert same(outs[0], chunk_discontinuity(a, meta())) and same(outs[1], metric.score(b, meta()))
    assert all(v.dtype == torch.float64 for v in metric.values) and all(t.dtype == torch.uint8 for t in metric.layouts)
    metric.reset()
    assert metric.values == [] and metric.layouts == []
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' own notice; the answer is []
        assert metric.compute() == []
    metric.update(b, meta())  # scoring goes on after a reset
    assert len(metric.compute()) == 1 and same(metric.compute()[0], outs[1])


def test_a_failed_update_keeps_no_state():
    metric = ChunkDiscontinuity()
    with pytest.raises(ValueError, match="no chunk boundary"):
        metric.update(videos()[0][:3], meta())
    assert metric.values == [] and metric.layouts == []


def test_state_survives_moves_copies_and_merges():
    metric, (a, b) = ChunkDiscontinuity(), videos()
    metric.update(a, meta())
    want = metric.compute()[0]
    moved = metric.to("cpu")
    assert moved is metric and metric.device == torch.device("cpu") and same(metric.compute()[0], want)
    assert same(metric.clone().compute()[0], want)
    other = ChunkDiscontinuity()
    other.update(b, meta())
    metric.merge_state(other)  # list states without a reduction: the videos of both, the incoming ones first
    merged = metric.compute()
    assert len(merged) == 2 and same(merged[0], other.compute()[0]) and same(merged[1], want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_state_moves_to_the_gpu_and_back():
    metric, (a, _) = ChunkDiscontinuity(), videos()
    metric.update(a, meta())
    want = metric.compute()[0]
    metric.to("cuda")
    assert all(v.is_cuda for v in metric.values) and same(metric.compute()[0], want)
    metric.update(a.cuda(), meta())  # new state is kept where the metric is
    assert metric.values[-1].is_cuda and same(metric.compute()[1], want)
    metric.to("cpu")
    assert not metric.values[0].is_cuda and same(metric.compute()[0], want)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # a loaded state counts no update
def test_state_dict_round_trip():
    metric, (a, b) = ChunkDiscontinuity(), videos()
    metric.persistent(True)
    metric.update(a, meta())
    metric.update(b, meta())
    fresh = ChunkDiscontinuity()
    fresh.load_state_dict(metric.state_dict())
    assert all(same(x, y) for x, y in zip(fresh.compute(), metric.compute(), strict=True))


def test_forward_scores_one_video_and_keeps_it():
    metric, (a, b) = ChunkDiscontinuity(), videos()
    metric.update(a, meta())
    (out,) = metric(b, meta())
    assert same(out, chunk_discontinuity(b, meta())) and len(metric.compute()) == 2


def test_encoding_is_exact():
    out = MetricOutput({"a": 1 / 3, "b": float("nan"), "c[enc]": -0.0, "big": 2.0**60 + 1},
                       {"s[é]": Series([0, 8, 16], [8, 16, 23], [0.1, float("nan"), 1e-300], 16.0),
                        "empty": Series.from_rows([], 4.0)},
                       {"x[enc]": "why — not"})
    back = decode_output(*encode_output(out))
    assert same(back, out) and list(back.scalars) == list(out.scalars) and list(back.series) == list(out.series)
    assert back.series["s[é]"].starts.dtype.kind == "i"
    assert same(decode_output(*encode_output(MetricOutput())), MetricOutput())


def old_psnr(mse):
    """The formula before torchmetrics: -10 log10(max(MSE, 1e-6))."""
    return -10 * np.log10(np.maximum(np.asarray(mse, np.float64), 1e-6))


def test_torchmetrics_psnr_equals_the_formula_on_known_inputs():
    zero, tenth = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1)
    # MSE 0.01; torchmetrics turns nats into dB with 10 / ln(10) in float32: relative error < 1e-7
    assert frame_psnr(zero, tenth) == pytest.approx([20.0, 20.0], rel=1e-7)
    assert frame_psnr(tenth, tenth).tolist() == [PSNR_CAP, PSNR_CAP]  # identical: the cap, not inf
    assert frame_psnr(zero, zero + 1e-4).tolist() == [PSNR_CAP, PSNR_CAP]  # MSE 1e-8: capped
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(5, 3, 16, 16, generator=g), torch.rand(5, 3, 16, 16, generator=g)
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(frame_psnr(a, b), old_psnr(mse), rtol=1e-7)
    np.testing.assert_allclose(frame_psnr(a.numpy(), b.numpy()), old_psnr(mse), rtol=1e-7)
    np.testing.assert_allclose(psnr(mse), old_psnr(mse), rtol=0)
    keep = torch.rand(5, 16, 16, generator=g) > 0.5
    keep[3] = False  # no kept pixel: the cap
    keep[4] = True  # every pixel: the plain PSNR
    masked = [((x.double() - y.double()) ** 2).mean(0)[k].mean() if k.any() else 0.0 for x, y, k in zip(a, b, keep)]
    np.testing.assert_allclose(masked_psnr(a, b, keep), old_psnr(masked), rtol=1e-7)
    assert masked_psnr(a, b, keep)[3] == PSNR_CAP
    np.testing.assert_allclose(masked_psnr(a, b, keep)[4], frame_psnr(a, b)[4], rtol=1e-12)
    np.testing.assert_allclose(masked_psnr(a.numpy(), b.numpy(), keep.numpy()), masked_psnr(a, b, keep), rtol=0)


def old_tile_fidelity_psnr(frames, tiles, sprite):
    """metrics/oracle.py's tile fidelity before torchmetrics (minimum masked error per tile)."""
    T, C, H, W = frames.shape
    keep = ~sprite
    blocks = frames.reshape(T, C, H // TILE, TILE, W // TILE, TILE).transpose(0, 2, 4, 1, 3, 5)
    mask = keep.reshape(T, H // TILE, TILE, W // TILE, TILE).transpose(0, 1, 3, 2, 4)
    err = ((blocks[:, :, :, None] - tiles[None, None, None]) ** 2).mean(axis=4)
    sums = (err * mask[:, :, :, None]).sum(axis=(-2, -1)).min(axis=-1)
    mse = sums.sum(axis=(1, 2)) / np.maximum(mask.sum(axis=(-2, -1)).sum(axis=(1, 2)), 1)
    return old_psnr(mse)


def test_oracle_psnrs_equal_the_old_formulas():
    gt = simulate([(0, PROMPT)], 40, seed=3)
    noisy = np.clip(gt.frames + 0.05 * np.random.default_rng(0).standard_normal(gt.frames.shape), 0, 1)
    noisy = noisy.astype(np.float32)
    sprite = any_sprite_colour(noisy)
    np.testing.assert_allclose(tile_fidelity_psnr(noisy, gt.tiles, sprite),
                               old_tile_fidelity_psnr(noisy, gt.tiles, sprite), rtol=1e-6)
    assert (tile_fidelity_psnr(gt.frames, gt.tiles) == PSNR_CAP).all()
    out = revisit_psnr(noisy, gt.camera, window=16, sprite=sprite)
    assert out["revisits_beyond"] > 0
    assert out["revisit_psnr_beyond"] == pytest.approx(old_revisit_beyond(noisy, gt.camera, sprite), rel=1e-7)


def old_revisit_beyond(frames, camera, sprite):
    """Mean revisit PSNR (all revisits are beyond a 16-frame window on an 18-tile canvas), as
    metrics/oracle.py computed it before torchmetrics."""
    from metrics.oracle import _dilate

    last, out = {}, []
    for t, o in enumerate(camera):
        if o in last:
            keep = ~_dilate(sprite[t] | sprite[last[o]])
            out.append(old_psnr(((frames[t] - frames[last[o]]) ** 2).mean(axis=0)[keep].mean()))
        last[int(o)] = t
    return float(np.mean(out))
