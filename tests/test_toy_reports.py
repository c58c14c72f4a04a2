"""``forcebench evaluate-toy``: the acceptance rows and gates of the toy backbone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench import evaluate_toy
from bench.models.toy import ToyConfig, ToyDiT


@pytest.fixture(scope="module")
def tiny_model():
    """Random weights: the loop and the report, not the quality, are under test."""
    torch.set_num_threads(1)
    return ToyDiT(ToyConfig(checkpoint=None, dim=48, layers=1)).eval()


def test_evaluate_rows_gates_and_samples(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluate_toy, "ToyDiT", lambda cfg: tiny_model)
    monkeypatch.setattr(evaluate_toy, "SECONDS", (6,))
    result = evaluate_toy.evaluate("unused", "toy_smoke", [0], 24, tmp_path, steps=1)
    df = result["df"]
    assert list(df.prompt) == ["forest_blocks", "city_stripes"] and list(df.width) == [8, 12]
    np.testing.assert_allclose(df.cache_gap_db, df.next_chunk_psnr_right - df.next_chunk_psnr_other)
    np.testing.assert_allclose(df.headroom_db_6s, df.revisit_beyond_oracle_6s - df.revisit_beyond_window_6s)
    assert df.continuation_oracle_6s.notna().all()
    assert result["samples"] == []  # no panning prompt with a canvas wider than the window
    gates = evaluate_toy.write_report(result, tmp_path, "forcebench evaluate-toy --test")
    by_name = {g["measure"]: g for g in gates}
    assert by_name["cache_gap_db"]["n"] == 2 and by_name["headroom_db_60s"]["n"] == 0
    assert not by_name["headroom_db_60s"]["met"]  # nothing measured is never a pass
    assert "| cache_gap_db | >= 8 |" in (tmp_path / "toy_backbone.md").read_text()


def test_gates_compare_with_the_bar_in_the_right_direction():
    df = pd.DataFrame({"pan_consistency": [0.9, 0.85], "spurious_colours": [0.10, 0.08]})
    gates = {g["measure"]: g for g in evaluate_toy.gate_rows(df, bootstrap=200)}
    assert gates["pan_consistency"]["met"] and gates["pan_consistency"]["mean"] == pytest.approx(0.875)
    assert not gates["spurious_colours"]["met"]  # lower is better: 0.09 > 0.05
