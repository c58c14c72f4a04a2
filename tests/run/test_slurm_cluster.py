"""A sweep through a real single-node SLURM cluster (munge + slurmctld + slurmd, started by
tests/slurm/cluster.sh): `hydra/launcher=slurm` submits a job array; one job cancelled with
scancel in the middle and the sweep re-launched finishes every run exactly once.

Marked ``slurm`` (not in `make test`): `make test-slurm` installs Debian's slurm-wlm and
munge when missing and runs it (root needed to start the daemons)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES

from core.paths import REPO_DIR

pytestmark = pytest.mark.slurm
CLUSTER = REPO_DIR / "tests" / "slurm" / "cluster.sh"
PROMPTS = ["forest_blocks", "city_stripes", "ocean_dots", "desert_bricks"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not all(shutil.which(c) for c in ("slurmctld", "slurmd", "munged", "sbatch")) or os.geteuid() != 0:
        pytest.skip("needs slurm-wlm and munge installed and root (make test-slurm)")
    state = tmp_path_factory.mktemp("slurm")
    subprocess.run([str(CLUSTER), "start", str(state)], check=True, timeout=120)
    yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "CI": "1"}
    subprocess.run([str(CLUSTER), "stop", str(state)], timeout=60)


def sweep(out: Path, env: dict) -> subprocess.Popen:
    args = ["run", "-m", "method=sink,sliding_window", "method.budget_frames=3", *TINY_OVERRIDES, "prompts=toy",
            f"prompts.select=[{','.join(PROMPTS)}]", "durations=[60]", "steps=1", f"out_dir={out}",
            "hydra/launcher=slurm", "hydra.launcher.partition=test", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=REPO_DIR, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(out: Path, method: str) -> list[Path]:
    return [p for p in out.glob(f"toy__{method}__*") if p.is_dir() and ".tmp-" not in p.name
            and (p / "summary.json").exists()]


def test_a_cancelled_slurm_job_is_finished_exactly_once_by_a_relaunch(cluster, tmp_path):
    out = tmp_path / "runs"
    first = sweep(out, cluster)
    deadline = time.time() + 240
    while time.time() < deadline and not finished(out, "sliding_window"):
        time.sleep(0.2)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %j"], env=cluster, capture_output=True, text=True).stdout.split()
    assert jobs, "the array's jobs should be running"
    # the array's second task rolls out sliding_window (the sweep's second job): cancel it mid-sweep
    array_id = jobs[0].split("_")[0]
    subprocess.run(["scancel", f"{array_id}_1"], env=cluster, check=True)
    while time.time() < deadline and subprocess.run(["squeue", "-h"], env=cluster, capture_output=True,
                                                    text=True).stdout.strip():
        time.sleep(0.5)
    # Without an accounting database (sacct) submitit cannot learn that a task was cancelled and waits
    # for its result: stop the submitting process as a user would (with slurmdbd it fails by itself)
    first.kill()
    first.communicate()
    done_before = {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir()
                   if p.is_dir() and (p / "summary.json").exists() and ".tmp-" not in p.name}
    assert 1 <= sum("sliding_window" in n for n in done_before) < len(PROMPTS), "cancel it in the middle"

    again = sweep(out, cluster)
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0, log
    runs = sorted(p for p in out.iterdir() if p.name != "_hydra")
    assert len(runs) == 2 * len(PROMPTS), [p.name for p in runs]  # no stage, lock or failure left
    assert all(json.loads((p / "summary.json").read_text())["status"] == "ok" for p in runs)
    for name, mtime in done_before.items():  # finished before the relaunch: not computed again
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime
