"""Sweeps beyond one process: the Hydra launcher presets of conf/hydra/launcher (joblib,
submitit local, submitit SLURM) through the real `forcebench run -m` command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from conftest import forcebench as run_forcebench

from bench.preflight import check_command_line
from core.errors import ConfigError

# Two jobs (two methods), the tiny backbone, one prompt, 6 frames, no scored metrics.
SWEEP = ["method=full,sink", *TINY_OVERRIDES, "prompts=toy_smoke", "prompts.select=[forest_blocks]",
         "durations=[1]", "steps=1"]


def forcebench(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_forcebench(*args, env={"OMP_NUM_THREADS": "1", **(env or {})})


def statuses(out: Path) -> dict[str, str]:
    """Method -> status of each run directory under ``out``."""
    return {p.name.split("__")[1]: json.loads((p / "summary.json").read_text())["status"]
            for p in out.iterdir() if (p / "summary.json").exists()}


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(sweep_dir.glob("*/run.log")))


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_joblib_sweep_then_a_relaunch_under_submitit_fills_in_only_what_failed(tmp_path):
    out = tmp_path / "runs"
    proc = forcebench("run", "-m", *SWEEP, f"out_dir={out}", "hydra/launcher=parallel",
                      f"hydra.sweep.dir={tmp_path / 'sweep1'}")
    assert proc.returncode == 0, proc.stderr
    assert statuses(out) == {"full": "ok", "sink": "ok"}
    assert job_logs(tmp_path / "sweep1").count("done toy__") == 2

    # The sink run failed (its record says so) and the full one finished: a relaunched
    # sweep, here under submitit's local executor, reruns only the sink run.
    (full,) = out.glob("toy__full__*")
    (sink,) = out.glob("toy__sink__*")
    (sink / "summary.json").write_text(json.dumps({"status": "failed: error", "run": sink.name}))
    finished_at = (full / "summary.json").stat().st_mtime_ns
    proc = forcebench("run", "-m", *SWEEP, f"out_dir={out}", "hydra/launcher=local",
                      f"hydra.sweep.dir={tmp_path / 'sweep2'}")
    assert proc.returncode == 0, proc.stderr
    assert statuses(out) == {"full": "ok", "sink": "ok"}
    assert (full / "summary.json").stat().st_mtime_ns == finished_at
    logs = job_logs(tmp_path / "sweep2")
    assert f"skip {full.name} (finished)" in logs and f"done {sink.name}" in logs
    assert len(list((tmp_path / "sweep2" / ".submitit").glob("*/*_result.pkl"))) == 2  # two submitit jobs


def test_slurm_preset_submits_one_array_with_its_resources(tmp_path):
    """No cluster here: a stand-in sbatch records the job script and refuses it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$SBATCH_RECORD"\necho "sbatch: no cluster" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    record = tmp_path / "job.sbatch"
    out = tmp_path / "runs"
    proc = forcebench("run", "-m", *SWEEP, f"out_dir={out}", "hydra/launcher=slurm",
                      "hydra.launcher.partition=gpu", "hydra.launcher.array_parallelism=1",
                      env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_RECORD": str(record)})
    assert proc.returncode != 0 and "sbatch: no cluster" in proc.stderr
    flags = {line for line in record.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {"#SBATCH --partition=gpu", "#SBATCH --array=0-1%1", "#SBATCH --gpus-per-node=1",
            "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB", "#SBATCH --time=240",
            "#SBATCH --job-name=forcebench", "#SBATCH --ntasks-per-node=1"} <= flags
    assert not [p for p in out.iterdir() if p.name != "_hydra"]  # nothing ran here


def test_preflight_accepts_launcher_presets_and_rejects_bad_fields_in_one_line():
    for launcher in ("parallel", "local", "slurm", "joblib", "submitit_local", "submitit_slurm"):
        runs = check_command_line(["method=full,sink", f"hydra/launcher={launcher}"], multirun=True)
        assert [r.method.name for r in runs] == ["full", "sink"]
    check_command_line(["method=full,sink", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                        "hydra.launcher.gpus_per_node=2", "hydra.launcher.setup=[module load cuda]"], multirun=True)
    cases = [
        (["hydra/launcher=foo"], "hydra/launcher='foo': no such hydra/launcher option; allowed: basic, joblib, local, "
                                 "parallel, slurm, submitit_local, submitit_slurm"),
        (["hydra/launcher=slurm", "hydra.launcher.partitions=gpu"],
         "hydra.launcher.partitions: unknown key for SlurmQueueConf; allowed keys: submitit_folder, "),
        (["hydra/launcher=parallel", "hydra.launcher.n_jobs=many"],
         "hydra.launcher.n_jobs: Value 'many' of type 'str' could not be converted to Integer"),
    ]
    for overrides, expected in cases:
        with pytest.raises(ConfigError) as info:
            check_command_line(["method=full,sink", *overrides], multirun=True)
        assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_slurm_sweeps_leave_the_device_check_to_the_job(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runs = check_command_line(["method=full,sink", "device=cuda", "hydra/launcher=slurm"], multirun=True)
    assert [r.device for r in runs] == ["cuda", "cuda"]
    for launcher in ("basic", "parallel", "local"):
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            check_command_line(["method=full,sink", "device=cuda", f"hydra/launcher={launcher}"], multirun=True)
