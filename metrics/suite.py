"""The metric suite of a run: which metrics, with which encoders, and what is unavailable.

``MetricsConfig`` (config group ``conf/metrics/``) names the enabled metrics and their
parameters. ``build_suite`` loads every encoder they need before anything is generated:
a missing weights file makes the metric *unavailable* (recorded with the reason in the
run's results), or, with ``strict: true``, fails the run at once with a one-line error.
``Suite.score`` turns one video (or a prefix of it) into long-form rows: one row per
metric, encoder and segment (segment -1 = the whole video), plus a status row for each
unavailable metric, each metric that does not apply to the video, and each result a
metric left out on purpose (``omitted: <why>``). Aggregation across videos is by video
(see metrics/base.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from core.errors import ConfigError, require
from metrics.base import METRICS, SEGMENT_SECONDS, Metric, VideoMeta, long_rows, split_key
from metrics.encoders import EncoderUnavailable, load_encoder

METRIC_MODULES = ("oracle", "system", "drift", "clip", "vbench", "lpips", "chunk_discontinuity",
                  "full_cache_fidelity")


def register_metrics() -> None:
    """Import every metric module so that each registers itself in METRICS."""
    for module in METRIC_MODULES:
        importlib.import_module(f"metrics.{module}")


@dataclass
class MetricsConfig:
    name: str = "none"
    enabled: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # metric name -> its config fields
    weights_dir: str | None = None  # else $FORCEBENCH_WEIGHTS, else the shipped weights
    strict: bool = False  # a missing weights file fails the run before generation
    segment_seconds: float = SEGMENT_SECONDS

    def __post_init__(self) -> None:
        register_metrics()
        names = METRICS.names()
        for name in self.enabled:
            require(name in METRICS, "metrics.enabled", name, f"allowed: {', '.join(names)}")
        for name in self.params:  # parameters of metrics that are not enabled are kept but unused
            require(name in METRICS, "metrics.params", name, f"allowed: {', '.join(names)}")
        require(self.segment_seconds > 0, "metrics.segment_seconds", self.segment_seconds, "allowed: > 0")
        for name in self.enabled:
            self.metric_config(name)  # unknown or bad parameters fail here

    def metric_config(self, name: str) -> Any:
        entry = METRICS.get(name)
        params = dict(self.params.get(name) or {})
        if entry.config is None:
            require(not params, f"metrics.params.{name}", sorted(params), "this metric takes no parameters")
            return None
        allowed = [f.name for f in fields(entry.config)]
        unknown = sorted(set(params) - set(allowed))
        require(not unknown, f"metrics.params.{name}", unknown, f"allowed keys: {', '.join(allowed)}")
        try:
            return entry.config(**params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"metrics.params.{name}: {str(err).splitlines()[0]}") from None


@dataclass
class Suite:
    metrics: list[Metric]
    unavailable: dict[str, str]  # metric name -> reason
    encoders: dict[str, dict]  # encoder name -> what was loaded (name, weights file)
    segment_seconds: float = SEGMENT_SECONDS

    def score(self, frames: torch.Tensor, meta: VideoMeta, families: Collection[str] | None = None) -> list[dict]:
        """frames [T, C, H, W] in [0, 1] -> long-form rows for every metric (see long_rows), or
        for the metric families named in ``families``."""
        meta.segment_seconds = self.segment_seconds
        wanted = set(self.names() if families is None else families)
        rows = []
        for metric in (m for m in self.metrics if m.name in wanted):
            metric.reset()
            try:
                metric.update(frames, meta)
            except ValueError as err:  # a metric that does not apply to this video (e.g. oracle off the toy world)
                rows.append(status_row(metric.name, metric.version, f"not applicable: {err}"))
                continue
            output = metric.compute()[0]
            rows.extend({**r, "status": "ok"} for r in long_rows(output, metric))
            rows.extend(status_row(metric.name, metric.version, f"omitted: {why}", key)
                        for key, why in output.omitted.items())
        rows.extend(status_row(name, "", f"unavailable: {reason}") for name, reason in self.unavailable.items()
                    if name in wanted)
        return rows

    def names(self) -> list[str]:
        """Every enabled family: the built ones and the unavailable ones."""
        return [m.name for m in self.metrics] + list(self.unavailable)

    def versions(self) -> dict[str, str]:
        return {m.name: m.version for m in self.metrics}


def status_row(family: str, version: str, status: str, key: str | None = None) -> dict:
    """A row without a value that says why: for the whole family, or for one result ``key``."""
    name, encoder = split_key(key or family)
    return {"metric": key or family, "name": name, "encoder": encoder, "family": family, "higher_is_better": None,
            "version": version, "segment": -1, "start_s": float("nan"), "end_s": float("nan"),
            "value": float("nan"), "status": status}


def build_suite(cfg: MetricsConfig, device: str | torch.device = "cpu") -> Suite:
    """Build every enabled metric and load its encoders (once each)."""
    loaded: dict[str, Any] = {}
    metrics, unavailable = [], {}
    for name in cfg.enabled:
        entry = METRICS.get(name)
        config = cfg.metric_config(name)
        try:
            models = {}
            for encoder in entry.cls.needs(config):
                if encoder not in loaded:
                    loaded[encoder] = load_encoder(encoder, cfg.weights_dir, device=device)
                models[encoder] = loaded[encoder]
            models.update(entry.cls.load_extra(config, cfg.weights_dir))
        except EncoderUnavailable as err:
            if cfg.strict:
                raise ConfigError(f"metrics.strict=true and metric {name!r} is unavailable: {err}") from None
            unavailable[name] = str(err)
            continue
        metrics.append(entry.cls(config, models))
    described = {n: m.describe() if hasattr(m, "describe") else {"encoder": n} for n, m in loaded.items()}
    return Suite(metrics, unavailable, described, cfg.segment_seconds)

