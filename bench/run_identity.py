"""What identifies a run, what a request asks of it, and what work a rerun has left.

A run directory holds one rollout, named by its *generation key* (``run_key``): model and
weights digest, method and parameters, prompt entry, seed, sampler, steps, dtype, prefix
and (when not the CPU reference) the attention implementation. Everything that only reads
the frames is *scoring*: for every duration the directory records which metric families
scored it, each with its version and parameters (``scoring_spec``). A rerun of a request
does exactly what is missing (``plan_work``): roll out when no finished rollout covers the
frames needed, else score the missing (duration, metric family) pairs from the saved
frames. A request whose metric version or parameters differ from what a directory holds
is refused (``force=true`` redoes it) rather than replacing finished rows.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import kernels
from bench.config import PromptEntry, RunConfig
from bench.records import file_digest
from core.errors import ConfigError
from core.paths import resolve_path
from metrics.base import METRICS
from metrics.suite import MetricsConfig


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(Path(path))


def weights_digest(checkpoint: str) -> str:
    """Digest of a checkpoint file or folder (cached while it is unchanged)."""
    path = resolve_path(checkpoint)
    stat = os.stat(path)
    return _digest(str(path), stat.st_mtime_ns, stat.st_size)


def attention_impl(run: RunConfig) -> str:
    """The attention implementation a run's rollout uses ('reference' or 'triton')."""
    return kernels.resolve(torch.device(run.device), None if run.attention == "auto" else run.attention)


def run_key(run: RunConfig, prompt: PromptEntry) -> dict:
    """What determines a run's frames. Keys that are at their default (a ground-truth prefix,
    the reference attention) are left out, so that results stay findable across versions."""
    attention = attention_impl(run)
    return {
        "model": asdict(run.model),
        "weights_sha1": weights_digest(run.model.checkpoint) if run.model.checkpoint else None,
        "method": run.method.params(),
        "prompt": asdict(prompt),
        "seed": run.seed,
        "sampler": {"kind": run.sampler, "steps": run.steps},
        "dtype": run.dtype,
        "prefix_frames": run.prefix(),
        **({"prefix_source": run.prefix_source} if run.prefix_source != "ground_truth" else {}),
        **({"attention": attention} if attention != "reference" else {}),
    }


def scoring_spec(cfg: MetricsConfig) -> dict[str, dict]:
    """Per enabled metric family: its version, parameters and segment length."""
    spec = {}
    for name in cfg.enabled:
        config = cfg.metric_config(name)
        spec[name] = {"version": METRICS.get(name).cls.version,
                      "config": asdict(config) if config is not None else None,
                      "segment_seconds": cfg.segment_seconds}
    return spec


@dataclass
class Plan:
    """The work a request leaves for one run directory."""

    generate: bool  # roll out (no finished rollout covers the frames needed)
    score: dict[float, list[str]] = field(default_factory=dict)  # seconds -> metric families to score

    def __bool__(self) -> bool:
        return self.generate or any(self.score.values())

    def describe(self) -> str:
        families = sorted({f for fs in self.score.values() for f in fs})
        seconds = [f"{s:g}" for s, fs in self.score.items() if fs]
        scored = f"scored {', '.join(families) or 'nothing'} at {', '.join(seconds) or '-'} s"
        return ("generated; " if self.generate else "from the saved frames: ") + scored


def recorded_scoring(summary: dict) -> dict[float, dict[str, dict]]:
    """seconds -> family -> what scored it (spec and status) in a finished run's summary."""
    return {float(d["seconds_requested"]): d.get("scoring", {}) for d in summary.get("durations", [])}


def _same_spec(recorded: dict, wanted: dict) -> bool:
    return {k: v for k, v in recorded.items() if k != "status"} == wanted


def plan_work(summary: dict | None, frames_needed: int, durations: list[float], spec: dict[str, dict],
              unavailable: set[str], force: bool, name: str) -> Plan:
    """The missing work of a request on a run directory whose summary is ``summary``.

    A (duration, family) pair recorded as unavailable is scored again when the family is
    available now. Raises ConfigError when a recorded pair was scored with another version
    or other parameters (unless ``force``: then everything requested is redone)."""
    every = {float(d): list(spec) for d in durations}
    finished = bool(summary) and summary.get("status") == "ok"
    if force or not finished:
        return Plan(True, every)
    recorded = recorded_scoring(summary)
    todo: dict[float, list[str]] = {}
    for seconds in every:
        have = recorded.get(seconds, {})
        todo[seconds] = []
        for family, wanted in spec.items():
            old = have.get(family)
            if old is None or (old.get("status") == "unavailable" and family not in unavailable):
                todo[seconds].append(family)
            elif not _same_spec(old, wanted):
                raise ConfigError(
                    f"run {name} was scored at {seconds:g} s with {family} {old.get('version')} "
                    f"{old.get('config')}; this request asks {wanted['version']} {wanted['config']}; "
                    f"allowed: force=true (redo the run) or another out_dir")
    if summary.get("frames_generated", 0) < frames_needed:
        return Plan(True, every)
    return Plan(False, todo)
