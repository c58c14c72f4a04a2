"""The full-size timing tool's parts that the GPU check shares: configs without Hydra, and a
rollout that stops at a deadline and keeps what it finished."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from bench.preflight import compose_run_config
from bench.tools.perf_backbone import (
    ROLE_MAP_METHODS,
    build_model,
    load_run_config,
    measure_method,
    method_config,
    model_config,
)
from core.paths import REPO_DIR
from methods import METHODS


@pytest.mark.parametrize("model", ["wan_1_3b", "wan_tiny"])
def test_model_config_is_what_hydra_composes(model):
    files = ["model.checkpoint=null", "model.vae=null", "model.text_encoder=null", "model.text_embeddings=null"]
    assert model_config(model) == compose_run_config([f"model={model}", *files, "metrics=none"]).model


def test_method_config_reads_roles_from_the_given_files():
    role_maps = {"roles.json": "/x/roles.json", "pyramid_labels.json": "/x/pyramid_labels.json"}
    for name in METHODS.names():
        cfg = method_config(name, role_maps)
        expected = {"role_map": role_maps[ROLE_MAP_METHODS[name]]} if name in ROLE_MAP_METHODS else {}
        assert cfg == METHODS.get(name).config(name=name, **expected), name
    run = load_run_config("wan_tiny", "sink", "ckpt.pt", None, {})
    assert run.model.checkpoint == "ckpt.pt" and run.method.sink_frames == 3 and run.geometry().heads == 2


def test_a_rollout_past_its_deadline_keeps_the_durations_it_reached():
    model = build_model(model_config("wan_tiny"), torch.float32, torch.device("cpu"))
    cfg = method_config("sliding_window", {})
    # 0.75 s is one chunk; the deadline has passed when that chunk is done, so 4.5 s (6 chunks) is not reached
    result = measure_method(model, cfg, [4.5, 0.75], steps=1, deadline=time.monotonic())
    assert result["stopped"] == "time budget: stopped after chunk 1 of 6 (0.75 s)"
    assert [(r["seconds"], r["chunks"], r["frames"]) for r in result["rows"]] == [(0.75, 1, 3)]
    row = result["rows"][0]
    assert row["latent_fps"] == pytest.approx(3 / row["first_chunk_latency_s"])
    assert row["video_fps"] == pytest.approx((1 + 4 * (row["frames"] - 1)) / row["frames"] * row["latent_fps"])  # Wan: 1 + 4 (T - 1)
    assert row["kv_bytes"] == 3 * 16 * 2 * 2 * 32 * 2 * 4  # 3 frames x 16 tokens x 2 layers x 2 heads x 32 x K, V x 4 B
    full = measure_method(model, cfg, [4.5, 0.75], steps=1)
    assert full["stopped"] is None and [r["chunks"] for r in full["rows"]] == [1, 6]


@pytest.mark.parametrize("argv, line", [
    (["--model", "wan_tiny", "--steps", "0"], "python -m bench.tools.perf_backbone: --steps=0: allowed: >= 1"),
    (["--model", "wan_tiny", "--seconds", "0"], "python -m bench.tools.perf_backbone: --seconds=(0.0,): allowed: "
                                                "durations > 0"),
    (["--bogus"], "python -m bench.tools.perf_backbone: unrecognized arguments: --bogus; see "
                  "python -m bench.tools.perf_backbone --help"),
])
def test_bad_input_run_on_its_own_is_one_line_exit_2(tmp_path, argv, line):
    proc = subprocess.run([sys.executable, "-m", "bench.tools.perf_backbone", *argv, "--out", str(tmp_path / "o")],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")
    assert list(tmp_path.iterdir()) == []
