"""``forcebench evaluate-toy``: the acceptance sweeps run through the runner, and the report
reads them back with the one run reader and compares every gate with its bar."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.tools import evaluate_toy

TINY_WORLD = ("model.dim=24", "model.layers=1", "model.heads=2", "steps=1", "seed=0",
              "prompts.select=[forest_bricks,city_bricks]")


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_sweeps_rows_and_report(tmp_path):
    """Random tiny weights: the arms, the pairing and the report, not the quality, are under test."""
    evaluate_toy.run_sweeps(tmp_path / "runs", "null", TINY_WORLD)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "cache_use_ground_truth", "cache_use_other_seed", "headroom_16", "headroom_18", "inside"]
    df = evaluate_toy.measurements(tmp_path / "runs")
    assert list(df.prompt) == ["city_bricks", "forest_bricks"] and list(df.width) == [18, 18]
    assert list(df.camera) == ["still", "pans"]
    np.testing.assert_allclose(df.cache_gap_db, df.next_chunk_psnr_right - df.next_chunk_psnr_other)
    pans = df.set_index("prompt").loc["forest_bricks"]
    assert pans.headroom_db_60s == pytest.approx(pans.revisit_beyond_oracle_60s - pans.revisit_beyond_window_60s)
    assert np.isnan(df.set_index("prompt").loc["city_bricks", "headroom_db_60s"])  # a still view never leaves
    gates = {g["measure"]: g for g in evaluate_toy.write_report(df, tmp_path / "out", "test", resamples=200)}
    assert gates["cache_gap_db"]["n"] == 2 and gates["headroom_db_60s"]["n"] == 1
    report = (tmp_path / "out" / "toy_backbone.md").read_text()
    assert "| cache_gap_db | continuation_psnr, ground truth - other seed, paired | >= 8 |" in report
    assert json.loads((tmp_path / "out" / "toy_backbone.json").read_text())["gates"][0]["measure"] == "pan_consistency"


def test_gates_compare_with_the_bar_in_the_right_direction():
    df = pd.DataFrame({"pan_consistency": [0.9, 0.85], "spurious_colours": [0.10, 0.08]})
    gates = {g["measure"]: g for g in evaluate_toy.gate_rows(df, resamples=200)}
    assert gates["pan_consistency"]["met"] and gates["pan_consistency"]["mean"] == pytest.approx(0.875)
    assert not gates["spurious_colours"]["met"]  # lower is better: 0.09 > 0.05
    assert not gates["cache_gap_db"]["met"] and gates["cache_gap_db"]["n"] == 0  # nothing measured is never a pass


def test_missing_runs_are_one_line_errors(tmp_path, capsys):
    assert main(["evaluate-toy", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
