"""The shipped toy backbone tells a broken cache from a sound one.

- The cache-use diagnostic (bench/tools/toy_diagnostic.py) on the shipped weights reproduces its
  recorded value (a retrained or damaged checkpoint moves it).
- A small sweep through the runner (sink and sliding_window beside the four negative
  controls on the prompts of the default sweep, 3 panning prompts x 3 seeds, 10 s after the
  ground-truth prefix): every control ranks below both references on the primary score with
  a paired p < 0.01.

Regenerate the recorded diagnostic on purpose (after retraining) with
``python tests/tools/test_toy_backbone_validity.py``.
"""

from __future__ import annotations

import json

import pytest
import torch

from core.paths import REPO_DIR

REFERENCE = REPO_DIR / "tests" / "data" / "toy_diagnostic_reference.json"
SEEDS = (0,)


def diagnostic_now() -> dict:
    from bench.models.toy import SHIPPED_WEIGHTS, ToyConfig, ToyDiT
    from bench.tools.toy_diagnostic import diagnostic

    torch.set_num_threads(1)
    model = ToyDiT(ToyConfig(checkpoint=SHIPPED_WEIGHTS)).eval()
    out = diagnostic(model, seeds=SEEDS)
    return {k: out[k] for k in ("cache_gap_db", "pan_consistency", "next_chunk_psnr_right")}


def test_diagnostic_on_the_shipped_weights_matches_the_record():
    expected = json.loads(REFERENCE.read_text())
    got = diagnostic_now()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-3), key
    assert got["cache_gap_db"] > 3.0  # the backbone reads its cache at all


def test_controls_rank_below_sink_and_sliding_window(tmp_path):
    from bench.preflight import check_command_line
    from bench.report.runs import load
    from bench.report.validity import check_controls
    from bench.run import execute

    controls = "control_random_eviction,control_scrambled_positions,control_stale,control_no_history"
    runs = check_command_line([f"method=sink,sliding_window,{controls}", "seed=0,1,2", "durations=[10]",
                               "prompts.select=[desert_blocks,ocean_blocks,city_blocks]",
                               "metrics.enabled=[oracle]", f"out_dir={tmp_path}", "progress=false"], multirun=True)
    for run in runs:
        execute(run)
    validity = check_controls(load(tmp_path), "continuation_psnr", 10.0, ["sink", "sliding_window"], alpha=0.01)
    assert len(validity.checks) == 8
    failed = [(c.control, c.reference, round(c.diff_mean, 2), c.reason) for c in validity.checks if not c.passed]
    assert not failed


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(diagnostic_now(), indent=2) + "\n")
