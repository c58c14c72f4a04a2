"""The metric suite of a run: config checks, unavailable metrics, strict mode, long-form rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_OVERRIDES

from bench.preflight import check_command_line, compose_run_config
from bench.run import execute
from core.errors import ConfigError
from core.world import simulate
from metrics.base import VideoMeta
from metrics.oracle import OracleMetric
from metrics.suite import MetricsConfig, build_suite

PROMPT = "forest blocks, red ring sliding, camera pans right"


def test_bad_metric_names_and_parameters_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"metrics.enabled='fvd'.*allowed: chunk_discontinuity, clip, drift"):
        MetricsConfig(enabled=["fvd"])
    with pytest.raises(ConfigError, match=r"metrics.params.clip.*\['encodr'\].*allowed keys: encoder"):
        MetricsConfig(enabled=["clip"], params={"clip": {"encodr": "toy-clip"}})
    with pytest.raises(ConfigError, match=r"metrics.params='clipp': allowed: chunk_discontinuity, clip, drift"):
        MetricsConfig(enabled=["system"], params={"clipp": {"encoder": "toy-clip"}})


def test_missing_weights_make_a_metric_unavailable_or_fail_in_strict_mode(tmp_path):
    cfg = MetricsConfig(enabled=["clip", "lpips"], params={"clip": {"encoder": "toy-clip"}},
                        weights_dir=str(tmp_path))
    suite = build_suite(cfg)
    assert [m.name for m in suite.metrics] == [] and set(suite.unavailable) == {"clip", "lpips"}
    assert "toy_clip.safetensors not found in" in suite.unavailable["clip"] and str(tmp_path) in suite.unavailable["clip"]
    rows = suite.score(torch.rand(8, 3, 32, 32), VideoMeta(fps=4))
    assert {r["status"].split(":")[0] for r in rows} == {"unavailable"}
    cfg.strict = True
    with pytest.raises(ConfigError, match="metrics.strict=true and metric 'clip' is unavailable: .*toy_clip"):
        build_suite(cfg)


def test_oracle_metric_scores_the_ground_truth_perfectly_per_segment():
    meta = VideoMeta(fps=4, prompts=[(0.0, PROMPT)], frames_per_chunk=3, seed=3, model="toy")
    gt = simulate(meta.prompt_frames(), 49, 3)
    metric = OracleMetric()
    metric.update(torch.from_numpy(gt.frames), meta)
    out = metric.compute()[0]
    assert out.scalars["palette_fidelity"] == 1.0 and out.scalars["pan_consistency"] == 1.0
    series = out.series["background_psnr"]
    # 2 s segments of 8 frames; the 1-frame tail joins the last one
    assert series.starts.tolist() == [0, 8, 16, 24, 32, 40] and series.ends.tolist() == [8, 16, 24, 32, 40, 49]
    np.testing.assert_array_equal(series.values, [60.0] * 6)
    with pytest.raises(ValueError, match="toy-world video"):
        metric.score(torch.from_numpy(gt.frames), VideoMeta(fps=4, model="wan"))


def test_a_run_writes_long_form_metrics_per_duration(tmp_path):
    (run,) = check_command_line([*TINY_OVERRIDES, "metrics=toy", "durations=[1,3]", "steps=1", "prompts=toy_smoke",
                                 "prompts.select=[forest_blocks]", f"out_dir={tmp_path}", "progress=false",
                                 "method=sliding_window", "method.budget_frames=4"], multirun=False)
    (run_dir,) = execute(run)
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert set(rows.seconds) == {1.0, 3.0} and set(rows.run) == {run_dir.name}
    ok = rows[rows.status == "ok"]
    assert {"system", "clip", "drift", "vbench", "chunk_discontinuity"} <= set(ok.family)
    status = rows[rows.status != "ok"].drop_duplicates("family").set_index("family").status
    assert status["lpips"].startswith("unavailable: ")  # no LPIPS trunk ships
    assert status["oracle"].startswith("not applicable: ") and "32 x 32" in status["oracle"]  # tiny 16 px frames
    assert {"clip_first_frame[toy-clip]", "subject_consistency[toy-clip]", "temporal_flickering"} <= set(ok.metric)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics_version"]["vbench"] == "vbench-v2" and "lpips" in summary["metrics_unavailable"]
    # toy-clip would score background consistency exactly as subject consistency: one key, and why
    omitted = rows[rows.status.str.startswith("omitted: ")]
    assert set(omitted.metric) == {"background_consistency[toy-clip]"} and set(omitted.seconds) == {1.0, 3.0}
    assert "background_consistency[toy-clip]" not in set(ok.metric)
    last = summary["durations"][-1]["metrics"]
    whole = ok[(ok.seconds == 3.0) & (ok.segment == -1)].set_index("metric").value
    assert last["temporal_flickering"] == pytest.approx(whole["temporal_flickering"])
    assert last["chunk_discontinuity"] == pytest.approx(whole["chunk_discontinuity"]) and last["chunk_discontinuity"] >= 0
    assert 0 <= last["clip_first_frame[toy-clip]"] <= 1


def test_strict_metrics_fail_before_anything_is_generated(tmp_path):
    overrides = [*TINY_OVERRIDES, "metrics=toy", "metrics.strict=true", "durations=[1]", "steps=1",
                 "prompts=toy_smoke", f"out_dir={tmp_path}", "progress=false"]
    with pytest.raises(ConfigError, match="metric 'lpips' is unavailable: .*lpips_alex"):
        check_command_line(overrides, multirun=False)  # in the preflight, before any job starts
    with pytest.raises(ConfigError, match="metric 'lpips' is unavailable: .*lpips_alex"):
        execute(compose_run_config(overrides))  # and again when a job is started without it
    assert not any(tmp_path.iterdir())
