"""A run writes every promised file; reruns skip; failures never touch finished results."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_OVERRIDES, forcebench, forcebench_process
from PIL import Image

import bench.run
from bench.preflight import check_command_line
from bench.run import execute
from core.paths import REPO_DIR

FILES = {"config.yaml", "meta.json", "frames.npy", "video.gif", "chunks.csv", "cache_heads.csv", "metrics.csv",
         "summary.json"}


def tiny_run(tmp_path, *extra):
    (run,) = check_command_line([*TINY_OVERRIDES, "durations=[1,3]", "steps=1", "prompts=toy_smoke", "prompts.select=[forest_blocks]",
                                 f"out_dir={tmp_path}", "progress=false", *extra], multirun=False)
    return run


def test_run_writes_every_promised_file(tmp_path):
    run = tiny_run(tmp_path, "method=sink", "method.sink_frames=1", "method.budget_frames=4")
    (run_dir,) = execute(run)
    assert {p.name for p in run_dir.iterdir()} == FILES
    assert run_dir.name.startswith("toy__sink__forest_blocks__s0__")

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["frames_generated"] == 12
    # 1 s -> 4 frames -> rounded up to 6 (2 chunks); 3 s -> 12 frames (4 chunks)
    assert [(d["seconds_requested"], d["frames"], d["chunks"]) for d in summary["durations"]] == [
        (1.0, 6, 2), (3.0, 12, 4)]
    entry_bytes = 2 * 2 * 2 * 16 * 16 * 4  # K+V, 2 layers x 2 heads, 16 tokens, head_dim 16, fp32
    assert summary["durations"][0]["kv_bytes"] == 4 * entry_bytes  # sink 1 + window 3 frames
    frames = np.load(run_dir / "frames.npy")
    assert frames.shape == (12, 16, 16, 3) and frames.dtype == np.uint8
    gif = Image.open(run_dir / "video.gif")
    assert gif.n_frames == 12 and gif.size == (64, 64)
    chunks = pd.read_csv(run_dir / "chunks.csv")
    assert list(chunks.frame_end) == [3, 6, 9, 12]
    assert list(chunks.tokens_per_head_max) == [48, 64, 64, 64]  # min(frames, 4) * 16 tokens
    heads = pd.read_csv(run_dir / "cache_heads.csv")
    assert len(heads) == 4 * 2 * 2
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"]["sink_frames"] == 1 and config["model"]["dim"] == 32
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {"git", "versions", "device", "method_repr", "key"} <= set(meta)
    assert meta["method_repr"].startswith("Sink(")


def test_finished_runs_are_skipped_and_failures_leave_them_intact(tmp_path, monkeypatch):
    run = tiny_run(tmp_path)
    (run_dir,) = execute(run)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    mtime = (run_dir / "summary.json").stat().st_mtime_ns
    execute(run)  # finished: skipped
    assert (run_dir / "summary.json").stat().st_mtime_ns == mtime

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash in the middle of a rollout")

    monkeypatch.setattr(bench.run, "generate", explode)
    run.force = True
    execute(run)  # the failure is recorded beside the finished run, which stays as it was
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "_hydra") == [run_dir.name, f"{run_dir.name}.failed.json"]
    failure = json.loads((tmp_path / f"{run_dir.name}.failed.json").read_text())
    assert failure["status"] == "failed: error" and "simulated crash" in failure["message"]


def test_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = bench.run.generate

    def flaky(model, method, timeline, *args, **kwargs):
        if "blocks" in timeline[0][1]:
            raise MemoryError("no room")
        out = real(model, method, timeline, *args, **kwargs)
        if "stripes" in timeline[0][1]:
            out.frames[0, 0, 0, 0] = float("nan")
        return out

    monkeypatch.setattr(bench.run, "generate", flaky)
    (run,) = check_command_line([*TINY_OVERRIDES, "durations=[1]", "steps=1", "prompts=toy", f"out_dir={tmp_path}",
                                 "prompts.select=[forest_blocks,city_stripes,ocean_dots]", "progress=false"],
                                multirun=False)
    dirs = execute(run)
    status = {d.name.split("__")[2]: json.loads((d / "summary.json").read_text())["status"] for d in dirs}
    assert status == {"forest_blocks": "failed: out of memory", "city_stripes": "failed: non-finite values",
                      "ocean_dots": "ok"}
    monkeypatch.setattr(bench.run, "generate", real)
    execute(run)  # a re-launch reruns the failed runs only
    assert all(json.loads((d / "summary.json").read_text())["status"] == "ok" for d in dirs)


def test_longer_durations_rerun_an_unfinished_prefix(tmp_path):
    (run_dir,) = execute(tiny_run(tmp_path))
    (again,) = execute(tiny_run(tmp_path, "durations=[1,6]"))
    assert again == run_dir  # same key: durations are prefixes of one rollout
    assert json.loads((run_dir / "summary.json").read_text())["frames_generated"] == 24


def test_cli_multirun_and_table(tmp_path):
    out = tmp_path / "runs"
    proc = forcebench("run", "-m", "method=sink,sliding_window", "method.budget_frames=3",
                      *TINY_OVERRIDES, "prompts=toy_smoke", "durations=[1,2]", "steps=1", f"out_dir={out}", cwd=REPO_DIR)
    assert proc.returncode == 0, proc.stderr
    assert len([p for p in out.iterdir() if (p / "summary.json").exists()]) == 4  # 2 methods x 2 prompts
    proc = forcebench("table", str(out), cwd=REPO_DIR)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "ms/chunk" in lines[0] and "KV MiB" in lines[0]
    assert any(line.startswith("sink") for line in lines) and any("sliding_window" in line for line in lines)


def test_cli_bad_value_is_one_line_and_exit_2(tmp_path):
    proc = forcebench("run", "method=sink", "method.sink_frames=99", f"out_dir={tmp_path}", cwd=REPO_DIR)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("forcebench: error: method.sink_frames=99: the sink must fit the budget; "
                                   "allowed: <= method.budget_frames=12")
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_cli_train_and_profile_options(tmp_path):
    proc = forcebench("train", "backbone", "--help", cwd=REPO_DIR)
    assert proc.returncode == 0 and "--max-minutes" in proc.stdout and "--grid-fraction" in proc.stdout
    proc = forcebench("profile", "--help", cwd=REPO_DIR)
    assert proc.returncode == 0 and "--anchor-sink-mass" in proc.stdout and "--compare-rng-seed" in proc.stdout
    proc = forcebench("train", "unicorn", cwd=REPO_DIR)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "forcebench: error: train 'unicorn': unknown target; allowed: backbone, encoder"


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_a_killed_sweep_relaunched_completes_every_run_exactly_once(tmp_path):
    import signal
    import time

    out = tmp_path / "runs"
    args = ["run", "-m", "method=sink,sliding_window", "method.budget_frames=3", *TINY_OVERRIDES, "prompts=toy",
            "prompts.select=[forest_blocks,city_stripes,ocean_dots]", "durations=[2]", "steps=1", f"out_dir={out}"]
    proc = forcebench_process(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/summary.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.read_bytes() for p in out.glob("*/summary.json") if ".tmp-" not in p.parent.name}
    assert 2 <= len(finished) < 6, "the sweep should be killed in the middle"
    mtimes = {name: (out / name / "summary.json").stat().st_mtime_ns for name in finished}

    again = forcebench(*args, cwd=REPO_DIR)
    assert again.returncode == 0, again.stderr
    runs = sorted(p for p in out.iterdir() if p.name != "_hydra")
    assert len(runs) == 6 and not any(".tmp-" in p.name or ".old-" in p.name for p in runs)
    assert all(json.loads((p / "summary.json").read_text())["status"] == "ok" for p in runs)
    for name, content in finished.items():  # skipped on re-launch: neither rerun nor changed
        assert (out / name / "summary.json").read_bytes() == content
        assert (out / name / "summary.json").stat().st_mtime_ns == mtimes[name]


WORLD_SIZED = ["model.checkpoint=null", "model.dim=24", "model.layers=1", "model.heads=2", "durations=[6]",
               "steps=1", "prompts=toy_smoke", "prompts.select=[forest_blocks]", "progress=false",
               "metrics.enabled=[oracle]"]


def test_a_toy_world_run_starts_after_a_ground_truth_prefix(tmp_path):
    from core.world import simulate

    (run,) = check_command_line([*WORLD_SIZED, "method=sliding_window", f"out_dir={tmp_path}"], multirun=False)
    assert run.prefix() == 18  # the trained horizon (21) minus one chunk
    (run_dir,) = execute(run)
    frames = np.load(run_dir / "frames.npy")
    truth = simulate([(0, run.prompts.selected()[0].text)], 24, seed=0).frames
    expected = np.round(truth[:18].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    assert np.abs(frames[:18].astype(int) - expected.astype(int)).max() <= 1  # the prefix is the ground truth
    summary = json.loads((run_dir / "summary.json").read_text())
    scores = summary["durations"][0]["metrics"]
    assert scores["continuation_psnr"] < scores["psnr_gt"]  # random weights: the 6 generated frames are worse
    assert json.loads((run_dir / "meta.json").read_text())["key"]["prefix_frames"] == 18


def test_prefix_is_checked_before_any_work(tmp_path, capsys):
    from bench.cli import main

    for extra, message in [
        (["prefix_frames=4"], "prefix_frames=4: allowed: a multiple of 3 up to 18"),
        (["prefix_frames=24"], "prefix_frames=24: allowed: a multiple of 3 up to 18"),
        (["prefix_frames=3", "model.frame_size=16", "model.patch=4"], "needs the toy backbone at the toy world's frame"),
    ]:
        assert main(["run", *WORLD_SIZED, *extra, f"out_dir={tmp_path / 'x'}"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_wrong_context_prefix_shows_another_seed_and_keeps_its_own_run(tmp_path):
    from core.world import OTHER_SEED_OFFSET, simulate

    (right,) = check_command_line([*WORLD_SIZED, "method=full", f"out_dir={tmp_path}"], multirun=False)
    (wrong,) = check_command_line([*WORLD_SIZED, "method=full", "prefix_source=other_seed", f"out_dir={tmp_path}"],
                                  multirun=False)
    (right_dir,), (wrong_dir,) = execute(right), execute(wrong)
    assert right_dir != wrong_dir  # the source is part of the run key
    other = simulate([(0, wrong.prompts.selected()[0].text)], 18, seed=OTHER_SEED_OFFSET).frames
    frames = np.load(wrong_dir / "frames.npy")[:18].astype(int)
    assert np.abs(frames - np.round(other.transpose(0, 2, 3, 1) * 255).astype(int)).max() <= 1
    key = json.loads((wrong_dir / "meta.json").read_text())["key"]
    assert key["prefix_source"] == "other_seed" and "prefix_source" not in json.loads(
        (right_dir / "meta.json").read_text())["key"]
