"""The one-command GPU check: its dry run (files, sections, targets, values), its refusal without
a GPU, its time budget, and that its whole path imports none of the packages the GPU machine lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bench.tools import gpu_check
from bench.tools.gpu_check_report import FAIL, NOT_MEASURED, PASS, targets
from core.paths import REPO_DIR

MISSING_ON_THE_GPU_MACHINE = ("hydra", "omegaconf", "diffusers", "wandb", "lpips", "open_clip", "scipy", "jinja2")
# Python code for ``-c``: a finder that makes importing any of those packages fail, then the check.
BLOCKER = f"""
import importlib.abc, runpy, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING_ON_THE_GPU_MACHINE!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")

sys.meta_path.insert(0, Blocker())
if sys.argv[1:2] == ["--import"]:
    __import__(sys.argv[2])
else:
    sys.argv[0] = "gpu_check"
    runpy.run_module("bench.tools.gpu_check", run_name="__main__", alter_sys=True)
"""


def run_blocked(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run in a fresh process that cannot import any of those packages, run from an empty
    folder with --out elsewhere: (process, working folder, out folder)."""
    root = tmp_path_factory.mktemp("gpu_check")
    cwd, out = root / "cwd", root / "out"
    cwd.mkdir()
    return run_blocked(["--dry-run", "--out", str(out)], cwd), cwd, out


def test_the_blocker_blocks(tmp_path):
    proc = run_blocked(["--import", "jinja2"], tmp_path)
    assert proc.returncode == 1 and "jinja2 is not installed on the GPU machine" in proc.stderr


def test_dry_run_needs_none_of_the_missing_packages_and_writes_only_its_two_files(dry_run):
    proc, cwd, out = dry_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check_cpu-dry-run.json", "gpu_check_cpu-dry-run.md"]
    assert list(cwd.iterdir()) == []  # nothing written beside --out (no default results/perf, no role files)
    assert f"wrote {out / 'gpu_check_cpu-dry-run'}.json" in proc.stdout


def test_dry_run_kernels_are_checked_then_timed(dry_run):
    result = json.loads((dry_run[2] / "gpu_check_cpu-dry-run.json").read_text())
    assert result["dry_run"] and result["complete"] and result["label"].startswith("dry run: not a measurement")
    k = result["kernels"]
    assert (k["heads"], k["head_dim"], k["queries"], k["tolerance"]) == (2, 32, 48, 1e-4)
    assert [s["distribution"] for s in k["shapes"]] == ["head_forcing", "full (trained horizon)",
                                                        "sink / uniform (12 frames)"]
    assert [s["largest"] for s in k["shapes"]] == [False, False, True]  # 2 x 192 tokens > 2 x 144 (horizon 9)
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # tests/conftest.py sets it; the process inherits it
    for shape in k["shapes"]:
        rows = {r["implementation"]: r for r in shape["rows"]}
        assert list(rows) == ["triton", "reference", "sdpa_padded", "flex"]
        assert rows["triton"]["status"] == ("ok" if interpreted else "skipped")
        for r in rows.values():
            assert (r["device"], r["dtype"]) == ("cpu", "float32")
            if r["status"] != "ok":
                continue
            assert r["max_abs_err"] <= r["tolerance_abs"] == pytest.approx(1e-4 * r["reference_max_abs"])
            seconds = r["median_ms"] / 1e3
            assert r["bandwidth_gbs"] == pytest.approx(shape["bytes"] / seconds / 1e9)
            assert r["bandwidth_fraction"] == pytest.approx(shape["bytes"] / seconds / (k["copy_bandwidth_gbs"] * 1e9))
            assert r["tflops"] == pytest.approx(shape["flops"] / seconds / 1e12)
        assert rows["reference"]["max_abs_err"] == 0.0  # the float32 reference against itself


def test_dry_run_rollouts_report_every_method_and_duration(dry_run):
    result = json.loads((dry_run[2] / "gpu_check_cpu-dry-run.json").read_text())
    r = result["rollout"]
    assert list(r["methods"]) == ["sliding_window", "head_forcing", "sink"] and r["seconds"] == [5.0, 60.0]
    # tiny Wan: 16 tokens a latent frame, 2 layers x 2 heads of head_dim 32, float32 K and V
    frame_bytes = 16 * 2 * 2 * 32 * 2 * 4
    assert r["dense_horizon_kv_bytes"] == 9 * frame_bytes
    for entry in r["methods"].values():
        assert entry["config"]["budget_frames"] == 12 and entry["notes"] == []
        rows = {w["seconds"]: w for w in entry["rows"]}
        assert sorted(rows) == [5.0, 60.0]
        assert [rows[s]["chunks"] for s in (5.0, 60.0)] == [7, 80]  # 21 and 240 latent frames
        for w in rows.values():
            assert (w["device"], w["dtype"]) == ("cpu", "float32") and w["video_frames"] == 1 + 4 * (w["frames"] - 1)
            assert w["video_fps"] == pytest.approx(w["video_frames"] / w["frames"] * w["latent_fps"])
            assert w["chunk_latency_p95_s"] >= w["chunk_latency_median_s"] > 0
        assert rows[5.0]["first_chunk_latency_s"] == rows[60.0]["first_chunk_latency_s"]  # one rollout, 5 s its prefix
    assert r["methods"]["sliding_window"]["rows"][1]["kv_bytes"] == 12 * frame_bytes  # the last 12 frames
    assert "synthetic" in r["role_map"] and r["methods"]["head_forcing"]["config"]["role_map"].startswith("synthetic")


def test_dry_run_marks_every_target_and_labels_the_page(dry_run):
    out = dry_run[2]
    result = json.loads((out / "gpu_check_cpu-dry-run.json").read_text())
    marked = targets(result)
    assert result["targets"] == [{**t, "device": "cpu", "dtype": "float32"} for t in marked]
    assert len(marked) == 5 and all(t["status"] in (PASS, FAIL) for t in marked[2:])  # bandwidth, latency, KV
    hf = {w["seconds"]: w for w in result["rollout"]["methods"]["head_forcing"]["rows"]}[60.0]
    share = hf["kv_bytes"] / result["rollout"]["dense_horizon_kv_bytes"]
    assert marked[4]["status"] == (PASS if share <= 0.5 else FAIL) and f"{share:.1%}" in marked[4]["measured"]
    md = (out / "gpu_check_cpu-dry-run.md").read_text()
    assert md.startswith("# GPU check: cpu, float32\n\n**dry run: not a measurement")
    for section in ("## Targets", "## 1. Attention kernels", "### head_forcing", "## 2. Rollouts",
                    "Self Forcing as published: 17 FPS and 0.69 s first-chunk latency on an NVIDIA H100, a different GPU"):
        assert section in md
    for t in marked:
        assert f"| {t['target']} | {t['status']} | {t['measured']} | cpu, float32 |" in md
    assert "| head_forcing | 60 | 80 |" in md and "; complete." in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_exits_2_with_one_line_and_writes_nothing(tmp_path):
    proc = run_blocked([], tmp_path)  # the default --out, results/perf, would land in tmp_path
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bench.tools.gpu_check: no CUDA GPU found")
    assert "--dry-run" in proc.stderr and list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--budget-s", "0", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "bench.tools.gpu_check: --budget-s=0.0: allowed: > 0\n"
    (tmp_path / "file").write_text("")
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert gpu_check.main(["--dry-run", "--budget", "x", "--out", str(tmp_path / "out")]) == 2
    assert "--budget-s: invalid float value: 'x'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_spent_budget_skips_every_step_and_says_so(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--budget-s", "1", "--out", str(tmp_path)]) == 0  # 1 s < the 5 s reserve
    result = json.loads((tmp_path / "gpu_check_cpu-dry-run.json").read_text())
    assert result["complete"] and result["kernels"]["shapes"] == [] and result["rollout"]["methods"] == {}
    assert result["skipped"] == ["all kernel shapes: the kernels' share of the time budget is spent before they start",
                                 "sliding_window: the time budget is spent", "head_forcing: the time budget is spent",
                                 "sink: the time budget is spent"]
    assert [t["status"] for t in targets(result)] == [NOT_MEASURED] * 5
    assert "## Skipped\n\n- all kernel shapes" in (tmp_path / "gpu_check_cpu-dry-run.md").read_text()
    assert "skipped sink: the time budget is spent" in capsys.readouterr().err


def test_a_duration_that_would_not_fit_is_skipped_before_it_starts(tmp_path):
    check = gpu_check.new_check(gpu_check.GpuCheckOptions(out=str(tmp_path), dry_run=True))
    # at 1 s a chunk: 5 s (7 chunks + the warm-up) needs 1.25 x 8 = 10 s; 60 s (80 + 1) needs 101 s
    assert gpu_check.plan_seconds(check, "sink", 1.0, 50.0) == [5.0]
    assert check.result["skipped"] == ["sink at 60 s: about 101 s needed, 50 s of its share of the budget left"]
    assert gpu_check.plan_seconds(check, "sink", 1.0, 101.25) == [5.0, 60.0]
    assert gpu_check.plan_seconds(check, "sink", None, 0.1) == [5.0, 60.0]  # nothing measured yet: all, stopped by time


def kernel_rows(**ms: float) -> list[dict]:
    return [{"implementation": name, "status": "ok", "median_ms": t, "bandwidth_fraction": 0.6, "bandwidth_gbs": 600.0}
            for name, t in ms.items()]


def test_targets_from_measurements():
    result = {"kernels": {"copy_bandwidth_gbs": 1000.0, "shapes": [
                  {"distribution": "head_forcing", "largest": False, "rows": kernel_rows(triton=1.0, flex=1.5, sdpa_padded=2.9)},
                  {"distribution": "full (trained horizon)", "largest": True, "rows": kernel_rows(triton=2.0)}]},
              "rollout": {"seconds": [5.0, 60.0], "dense_horizon_kv_bytes": 1000, "methods": {
                  "head_forcing": {"rows": [{"seconds": 60.0, "chunk_latency_median_s": 0.106, "kv_bytes": 501}]},
                  "sliding_window": {"rows": [{"seconds": 60.0, "chunk_latency_median_s": 0.1, "kv_bytes": 600}]}}}}
    got = [(t["status"], t["measured"].split(" ")[0]) for t in targets(result)]
    assert got == [(PASS, "1.50x"), (FAIL, "2.90x"), (PASS, "60.0%"), (FAIL, "1.060x"), (FAIL, "50.1%")]
    result["kernels"]["shapes"][0]["rows"][1]["status"] = "failed correctness"
    del result["rollout"]["methods"]["sliding_window"]
    marked = targets(result)
    assert marked[0]["status"] == NOT_MEASURED and marked[0]["measured"] == "flex not timed on head_forcing"
    assert marked[3] == {"target": "head_forcing per-chunk p50 <= 1.05x sliding_window at 60 s",
                         "status": NOT_MEASURED, "measured": "sliding_window did not reach 60 s"}
