"""A rerun does exactly the missing work; concurrent and killed sweeps never duplicate or lose a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_OVERRIDES, forcebench_process

import bench.run
from bench.cli import main
from bench.preflight import check_command_line
from bench.records import safe_child
from bench.run import execute
from core.errors import ConfigError

# world-sized random-weight toy model: the oracle applies; 1 step keeps it fast
WORLD = ["model.checkpoint=null", "model.dim=24", "model.layers=1", "model.heads=2", "steps=1", "prompts=toy_smoke",
         "prompts.select=[forest_blocks]", "progress=false", "method=sliding_window", "method.budget_frames=6"]


def request(tmp_path, *extra):
    (run,) = check_command_line([*WORLD, f"out_dir={tmp_path}", *extra], multirun=False)
    return run


def files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


def rows(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


def no_rollout(monkeypatch):
    def explode(*args, **kwargs):
        raise AssertionError("this request must not roll out again")

    monkeypatch.setattr(bench.run, "generate", explode)


def test_new_metrics_are_scored_from_the_saved_frames(tmp_path, monkeypatch):
    (run_dir,) = execute(request(tmp_path, "durations=[6]", "metrics.enabled=[system]"))
    before = files(run_dir)
    no_rollout(monkeypatch)
    (again,) = execute(request(tmp_path, "durations=[6]", "metrics.enabled=[system,oracle]"))
    assert again == run_dir  # the metric set is not part of the generation key
    after = files(run_dir)
    for name in ("frames.npy", "meta.json", "chunks.csv", "cache_heads.csv", "video.gif"):
        assert after[name] == before[name]
    table = rows(run_dir)
    assert set(table.family) == {"system", "oracle"}
    old = pd.read_csv(pd.io.common.BytesIO(before["metrics.csv"]))
    pd.testing.assert_frame_equal(table[table.family == "system"].reset_index(drop=True), old, check_dtype=False)  # kept as they were
    summary = json.loads(after["summary.json"])
    (duration,) = summary["durations"]
    assert set(duration["scoring"]) == {"system", "oracle"} and "continuation_psnr" in duration["metrics"]
    mtime = (run_dir / "summary.json").stat().st_mtime_ns
    execute(request(tmp_path, "durations=[6]", "metrics.enabled=[oracle]"))  # nothing missing: skipped
    assert (run_dir / "summary.json").stat().st_mtime_ns == mtime


def test_rescoring_gives_the_rows_a_fresh_run_gives(tmp_path, monkeypatch):
    (fresh,) = execute(request(tmp_path / "a", "durations=[6]", "metrics.enabled=[system,oracle]"))
    (later,) = execute(request(tmp_path / "b", "durations=[6]", "metrics.enabled=[system]"))
    no_rollout(monkeypatch)
    execute(request(tmp_path / "b", "durations=[6]", "metrics.enabled=[system,oracle]"))
    a, b = rows(fresh), rows(later)
    pd.testing.assert_frame_equal(a[a.family == "oracle"].reset_index(drop=True),
                                  b[b.family == "oracle"].reset_index(drop=True))


def test_a_shorter_duration_is_scored_from_the_saved_frames(tmp_path, monkeypatch):
    (run_dir,) = execute(request(tmp_path, "durations=[6]", "metrics.enabled=[oracle]"))
    no_rollout(monkeypatch)
    execute(request(tmp_path, "durations=[5.5]", "metrics.enabled=[oracle]"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [d["seconds_requested"] for d in summary["durations"]] == [5.5, 6.0]
    assert summary["frames_generated"] == 24 and sorted(set(rows(run_dir).seconds)) == [5.5, 6.0]


def test_a_longer_duration_extends_the_rollout_and_keeps_every_row(tmp_path):
    (run_dir,) = execute(request(tmp_path, "durations=[6]", "metrics.enabled=[oracle]"))
    short_frames, short_rows = np.load(run_dir / "frames.npy"), rows(run_dir)
    execute(request(tmp_path, "durations=[7.5]", "metrics.enabled=[system]"))
    frames = np.load(run_dir / "frames.npy")
    assert frames.shape[0] == 30 and np.array_equal(frames[:24], short_frames)  # the same rollout, longer
    table = rows(run_dir)
    kept = table[(table.seconds == 6) & (table.family == "oracle")].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, short_rows, check_dtype=False)
    assert set(table[table.seconds == 7.5].family) == {"system"}


def test_a_request_scored_differently_is_refused_before_any_work(tmp_path, capsys):
    (run_dir,) = execute(request(tmp_path, "durations=[6]", "metrics.enabled=[oracle]"))
    before = files(run_dir)
    with pytest.raises(ConfigError, match="scored at 6 s with oracle"):
        execute(request(tmp_path, "durations=[6]", "metrics.enabled=[oracle]", "metrics.params.oracle.window=8"))
    assert files(run_dir) == before
    assert main(["run", *WORLD, f"out_dir={tmp_path}", "durations=[6]", "metrics.enabled=[oracle]",
                 "metrics.params.oracle.window=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "allowed: force=true" in err[0]


def test_a_claimed_run_is_left_to_its_owner_and_a_dead_claim_is_taken_over(tmp_path, monkeypatch):
    run = request(tmp_path, "durations=[6]", "metrics.enabled=[system]")
    final = tmp_path / bench.run.run_name(bench.run.run_key(run, run.prompts.selected()[0]))
    tmp_path.mkdir(exist_ok=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = final.with_name(f"{final.name}.lock")
        lock.write_text(json.dumps({"host": os.uname().nodename, "pid": owner.pid}))
        execute(run)
        assert not final.exists() and lock.exists()  # a live owner keeps it
    finally:
        owner.kill()
        owner.wait()
    stale_stage = tmp_path / f"{final.name}.tmp-{owner.pid}"
    stale_stage.mkdir()
    failed = tmp_path / f"{final.name}.failed.json"
    failed.write_text(json.dumps({"status": "failed: error", "message": "earlier"}))
    execute(run)  # the owner is dead: its claim and its staging directory go, the run is done once
    assert json.loads((final / "summary.json").read_text())["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]  # no lock, stage or stale failure left


def test_run_exits_3_and_lists_the_failed_runs(tmp_path, monkeypatch, capsys):
    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(bench.run, "generate", explode)
    assert main(["run", *WORLD, f"out_dir={tmp_path}", "durations=[6]", "metrics=none"]) == 3
    err = capsys.readouterr().err
    assert "failed run toy__sliding_window__forest_blocks__s0__" in err and "simulated crash" in err
    monkeypatch.undo()
    assert main(["run", *WORLD, f"out_dir={tmp_path}", "durations=[6]", "metrics=none"]) == 0


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "", "/etc"])
def test_a_run_name_cannot_leave_out_dir(tmp_path, name):
    with pytest.raises(ConfigError, match="leaves out_dir"):
        safe_child(tmp_path, name)


SWEEP = ["run", "-m", "method=sink,sliding_window", "method.budget_frames=3", *TINY_OVERRIDES, "prompts=toy",
         "prompts.select=[forest_blocks,city_stripes,ocean_dots]", "durations=[2]", "steps=1"]


def launch(out, *extra):
    return forcebench_process(*SWEEP, f"out_dir={out}", *extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)


def test_two_identical_sweeps_started_together_compute_every_run_once(tmp_path):
    out = tmp_path / "runs"
    first, second = launch(out), launch(out)
    logs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, logs
    done = [line for log in logs for line in log.splitlines() if " - done toy__" in line]
    runs = sorted(p.name for p in out.iterdir() if p.name != "_hydra")
    assert len(runs) == 6 and len(done) == 6, logs  # six runs, each computed by exactly one sweep
    assert {line.split(" - done ")[1].split(" ")[0] for line in done} == set(runs)


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_a_killed_forced_rerun_leaves_every_finished_run_intact(tmp_path):
    out = tmp_path / "runs"
    assert launch(out).wait(timeout=300) == 0
    before = {p.name: files(p) for p in out.iterdir() if p.name != "_hydra"}
    rerun = launch(out, "force=true")
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.tmp-*")):
        time.sleep(0.02)
    os.killpg(rerun.pid, signal.SIGKILL)
    rerun.wait()
    for name, content in before.items():  # every run is either as it was or a whole new result
        assert (out / name / "summary.json").exists()
        now = files(out / name)
        assert now.keys() == content.keys()
    again = launch(out)
    assert again.wait(timeout=300) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != "_hydra") == sorted(before)  # no stage or lock left


@pytest.mark.parametrize("override", ["+hydra.callbacks.x._target_=os.makedirs", "hydra.callbacks={}",
                                      "+method._target_=os.system"])
def test_overrides_that_name_code_are_refused(tmp_path, capsys, override):
    assert main(["run", *WORLD, f"out_dir={tmp_path / 'x'}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and override in err[0] and "names code to run" in err[0]
    assert not (tmp_path / "x").exists()


def test_two_sweeps_one_killed_mid_run_then_relaunched_finish_every_run_once(tmp_path):
    out = tmp_path / "runs"
    doomed, survivor = launch(out), launch(out)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.lock")):
        time.sleep(0.02)
    os.killpg(doomed.pid, signal.SIGKILL)  # its claims and staging directories stay behind
    doomed.wait()
    log = survivor.communicate(timeout=300)[0]
    assert survivor.returncode == 0, log
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir()
                if p.is_dir() and (p / "summary.json").exists() and ".tmp-" not in p.name}
    again = launch(out)
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0, log
    runs = sorted(p.name for p in out.iterdir() if p.name != "_hydra")
    assert len(runs) == 6 and not any(n.endswith(".lock") or ".tmp-" in n for n in runs)
    for name, mtime in finished.items():  # what either sweep finished is not computed again
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime
    done = [line for line in log.splitlines() if " - done toy__" in line]
    assert len(done) == 6 - len(finished)  # the relaunch computes exactly what the killed sweep left
