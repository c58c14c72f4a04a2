"""Loggers: the W&B logger writes one offline W&B run per forcebench run, grouped by sweep."""

from __future__ import annotations

import pytest
from conftest import TINY_OVERRIDES

from bench.preflight import check_command_line
from bench.run import execute
from core.errors import ConfigError


def test_wandb_logger_writes_one_offline_run_per_forcebench_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (run,) = check_command_line([*TINY_OVERRIDES, "metrics=toy", "metrics.enabled=[system,clip,drift]", "logger=wandb", f"logger.dir={tmp_path}", "durations=[1,6]", "steps=1",
                                 "prompts=toy_smoke", f"out_dir={tmp_path / 'runs'}", "progress=false",
                                 "method=sliding_window", "method.budget_frames=3"], multirun=False)
    dirs = execute(run)
    offline = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == len(dirs) == 2
    for run_dir in offline:
        files = list(run_dir.glob("*.wandb"))
        assert files and files[0].stat().st_size > 1000  # config, metrics, curves, GIF, table
        assert list(run_dir.glob("files/media/videos/*.gif"))


def test_unknown_logger_and_mode_are_one_line_errors():
    with pytest.raises(ConfigError, match="logger='tensorboard': no such logger option; allowed: none, wandb"):
        check_command_line([*TINY_OVERRIDES, "logger=tensorboard"], multirun=False)
    with pytest.raises(ConfigError, match="logger.mode='cloud'.*allowed: offline, online, disabled"):
        check_command_line([*TINY_OVERRIDES, "logger=wandb", "logger.mode=cloud"], multirun=False)
