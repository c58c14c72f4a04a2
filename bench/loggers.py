"""Experiment trackers (config group ``conf/logger/``). The run directory's files are always
written; a logger only mirrors a finished run somewhere else.

- ``none``: nothing.
- ``wandb``: one W&B run per forcebench run, grouped by sweep (``logger.group``, default:
  the name of ``out_dir``). Offline by default (``logger.mode``; the ``WANDB_MODE``
  environment variable wins, so CI's ``WANDB_MODE=disabled`` turns it off). Logs the
  resolved config, the metrics of every duration (W&B step = frames of that prefix), the
  drift curves (per-segment series of the longest duration) as line plots, the video
  (the run's GIF) and a summary table (one row per duration).

``check_logger`` runs before any work: W&B needs its package, and online mode an API key
(``WANDB_API_KEY`` or the ``~/.netrc`` entry that ``wandb login`` writes).
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ConfigError
from core.registry import Registry

LOGGERS = Registry("logger")


class RunLogger:
    """Receives every finished run of an ``execute`` call, then ``close``."""

    def __init__(self, cfg: Any, run: Any) -> None:
        self.cfg, self.run = cfg, run

    def log_run(self, run_dir: Path, summary: dict, metric_rows: list[dict]) -> None:
        """run_dir: the finished run directory; summary: its summary.json; metric_rows: metrics.csv rows."""

    def close(self) -> None:
        pass

    @classmethod
    def check(cls, cfg: Any) -> None:
        """What the logger needs before any work (packages, credentials); nothing by default."""


@LOGGERS.register("none")
class NoLogger(RunLogger):
    pass


def wandb_credentials() -> bool:
    """Whether W&B will find credentials: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, or a
    netrc entry (``$NETRC``, else ``~/.netrc``) for the W&B host with a key."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    try:
        entry = netrc.netrc(os.environ.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


@LOGGERS.register("wandb")
class WandbLogger(RunLogger):
    @classmethod
    def check(cls, cfg: Any) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("logger.name='wandb': the wandb package is not installed; allowed: logger=none, "
                              "or install wandb")
        key = "WANDB_MODE" if os.environ.get("WANDB_MODE") else "logger.mode"
        mode = os.environ.get("WANDB_MODE") or cfg.mode
        if mode == "online" and not wandb_credentials():
            raise ConfigError(f"{key}={mode!r}: no W&B API key (neither WANDB_API_KEY nor a netrc entry from "
                              "`wandb login`); allowed: offline, disabled, or log in first")

    def log_run(self, run_dir: Path, summary: dict, metric_rows: list[dict]) -> None:
        import wandb
        from omegaconf import OmegaConf

        cfg = self.cfg
        mode = os.environ.get("WANDB_MODE") or cfg.mode
        config = OmegaConf.to_container(OmegaConf.structured(self.run), resolve=True)
        wb = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group or Path(self.run.out_dir).name,
                        name=summary["run"], job_type=summary["method"], config=config, mode=mode,
                        dir=cfg.dir or str(run_dir.parent), reinit="finish_previous")
        try:
            for d in summary["durations"]:
                wb.log({"seconds": d["seconds_requested"], **{k: v for k, v in d["metrics"].items() if v == v}},
                       step=int(d["frames"]))
            for key, table in drift_tables(metric_rows).items():
                wb.log({f"curves/{key}": wandb.plot.line(table, "seconds", "value", title=key)})
            gif = run_dir / "video.gif"
            if gif.is_file():
                wb.log({"video": wandb.Video(str(gif), format="gif")})
            columns = ["seconds", "frames", "latency_mean_s", "fps", "kv_mib"]
            rows = [[d["seconds_requested"], *(d.get(c) for c in columns[1:])] for d in summary["durations"]]
            wb.log({"summary_table": wandb.Table(columns=columns, data=rows)})
            wb.summary.update({"status": summary["status"], "run_dir": str(run_dir)})
        finally:
            wb.finish()


def drift_tables(metric_rows: list[dict]) -> dict[str, Any]:
    """Per-segment series of the longest duration -> {metric key: wandb.Table(seconds, value)}."""
    import wandb

    ok = [r for r in metric_rows if r.get("status") == "ok" and r["segment"] >= 0]
    if not ok:
        return {}
    longest = max(r["seconds"] for r in ok)
    series: dict[str, list] = defaultdict(list)
    for r in ok:
        if r["seconds"] == longest:
            series[r["metric"]].append([(r["start_s"] + r["end_s"]) / 2, r["value"]])
    return {k: wandb.Table(columns=["seconds", "value"], data=v) for k, v in series.items() if len(v) > 1}


def build_logger(cfg: Any, run: Any) -> RunLogger:
    return LOGGERS.build(cfg.name, cfg, run)


def check_logger(cfg: Any) -> None:
    """The configured logger's checks (``RunLogger.check``), before any work."""
    LOGGERS.get(cfg.name).cls.check(cfg)
