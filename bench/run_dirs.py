"""Read finished run directories back: the one reader of the reports (leaderboard, validity).

``load(root)`` reads every run directory directly under ``root`` (``summary.json`` with
status ok; failed, unfinished and staging directories are counted and left out) into
``Runs``: one row per (run, requested seconds) with the system numbers and whole-prefix
metric values, the per-segment series from ``metrics.csv``, and each metric's direction.
``per_video(runs, key)`` gives one value per video (method, seconds, prompt, seed).
``read_run_summary(run_dir)`` is the one reader of a ``summary.json`` (``forcebench table``
and ``regress`` use it too): a file that is not a run summary (binary, malformed JSON, a
list, a finished summary without the fields the reports read) is reported as one warning
line on stderr naming it, and that run directory is skipped.

Methods whose name starts with ``control_`` are negative controls (methods/controls/); the
prefix is spelled here too so that reading runs does not import the methods (and torch).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import require
from bench.records import read_json_object

CONTROL_PREFIX = "control_"
SUMMARY_FIELDS = ("run", "model", "method", "prompt_id", "seed", "durations")  # of a finished (status ok) run
METRIC_COLUMNS = ("metric", "higher_is_better", "segment", "seconds", "start_s", "end_s", "value", "status")
NUMERIC_COLUMNS = ("segment", "seconds", "start_s", "end_s")

# Display label and factor applied to the per-video value (raw key -> shown unit).
UNITS = {
    "latency_mean_s": ("latency_mean [ms]", 1000.0),
    "first_chunk_latency_s": ("first_chunk_latency [ms]", 1000.0),
    "kv_bytes": ("kv [MiB]", 2.0**-20),
    "peak_memory_bytes": ("peak_memory [MiB]", 2.0**-20),
}
ID_COLUMNS = ("run", "model", "method", "method_name", "prompt", "seed", "seconds", "seconds_generated",
              "frames", "chunks")
# Directions of the summary's system numbers, for runs written before metrics.csv existed.
SYSTEM_DIRECTIONS = {"fps": True, "latency_mean_s": False, "latency_p50_s": False, "latency_p95_s": False,
                     "first_chunk_latency_s": False, "kv_bytes": False, "kv_mib": False,
                     "tokens_per_head_mean": False, "tokens_per_head_max": False, "tokens_total": False,
                     "peak_memory_bytes": False}


@dataclass
class Runs:
    """Finished runs under ``root``. ``videos``: one row per (run, requested seconds) with
    the summary's system numbers and whole-prefix metric values; ``series``: per-segment
    metric rows (segment >= 0) with the segment centre in seconds; ``directions``: metric
    key -> higher_is_better (None: no direction)."""

    root: Path
    videos: pd.DataFrame
    series: pd.DataFrame
    directions: dict[str, bool | None]
    finished: list[str]
    excluded: list[str]
    provenance: Counter = field(default_factory=Counter)

    def controls(self) -> list[str]:
        """Labels (the ``method`` column) of the negative controls, sorted."""
        names = self.videos.drop_duplicates("method").set_index("method")["method_name"]
        return sorted(label for label, name in names.items() if is_control(name))

    def metric_keys(self) -> set[str]:
        return {c for c in self.videos.columns if c not in ID_COLUMNS and self.videos[c].notna().any()}

    def describe(self) -> str:
        methods = ", ".join(sorted(self.videos.method.unique()))
        seconds = ", ".join(f"{s:g}" for s in sorted(self.videos.seconds.unique()))
        prov = "; ".join(f"{k} ({n} runs)" for k, n in sorted(self.provenance.items())) or "not recorded"
        return (f"{len(self.finished)} finished runs from {self.root} ({len(self.excluded)} unfinished or failed "
                f"run directories left out). Methods: {methods}. Durations (s): {seconds}. Provenance: {prov}.")


def parse_direction(value: object) -> bool | None:
    text = str(value).strip().lower()
    return True if text == "true" else False if text == "false" else None


def variant(summary: dict, meta: dict) -> dict:
    """What tells apart runs of one method name, besides prompt and seed."""
    key = meta.get("key") or {}
    fields = {"model": summary.get("model"), **{k: v for k, v in summary.get("method_params", {}).items()
                                                  if k != "name"}}
    if key:
        fields.update(weights=key.get("weights_sha1"), sampler=(key.get("sampler") or {}).get("kind"),
                      steps=(key.get("sampler") or {}).get("steps"), dtype=key.get("dtype"))
    return fields


def method_labels(entries: list[tuple[str, dict]]) -> list[str]:
    """The method name, plus ``(k=v, ...)`` for the fields that differ between runs of it."""
    by_name: dict[str, list[dict]] = {}
    for name, fields in entries:
        by_name.setdefault(name, []).append(fields)
    varying = {name: [k for k in dict.fromkeys(k for f in fs for k in f)
                      if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in fs}) > 1]
               for name, fs in by_name.items()}
    return [f"{name}({', '.join(f'{k}={fields.get(k)}' for k in varying[name])})" if varying[name] else name
            for name, fields in entries]


def warn(message: str) -> None:
    """One warning line on stderr; the command goes on."""
    print(f"forcebench: warning: {message}", file=sys.stderr)


def _number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_problem(summary: dict, required: tuple[str, ...] = SUMMARY_FIELDS) -> str | None:
    """Why ``summary`` cannot be read as a run's summary with the ``required`` fields when its
    status is ok; None when it can."""
    if not isinstance(summary.get("status"), str):
        return "no status string"
    if "seed" in summary and not (isinstance(summary["seed"], int) and not isinstance(summary["seed"], bool)):
        return f"seed {summary['seed']!r} is not an integer"
    if summary["status"] != "ok":
        return None
    missing = [k for k in dict.fromkeys((*required, "durations")) if k not in summary]
    if missing:
        return f"status ok without {', '.join(missing)}"
    durations = summary["durations"]
    if not isinstance(durations, list) or not durations:
        return "durations is not a non-empty list"
    for d in durations:
        if not isinstance(d, dict) or not _number(d.get("seconds_requested")) or not isinstance(
                d.get("metrics", {}), dict):
            return f"duration {repr(d)[:80]} lacks seconds_requested or has no metrics object"
        bad = [k for k, v in d.get("metrics", {}).items() if v is not None and not _number(v)]
        if bad:
            return f"metric {bad[0]!r} has the non-number value {d['metrics'][bad[0]]!r}"
    return None


def read_run_summary(run_dir: Path, required: tuple[str, ...] = SUMMARY_FIELDS) -> dict | None:
    """The run directory's summary.json as a dict; None when there is none, or (after one
    warning line naming it) when it is not a run summary with the ``required`` fields."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        warn(f"{path}: unreadable or binary ({type(err).__name__}); run directory skipped")
        return None
    except json.JSONDecodeError as err:
        warn(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); run directory skipped")
        return None
    if not isinstance(summary, dict):
        warn(f"{path}: a JSON {type(summary).__name__}, not an object; run directory skipped")
        return None
    problem = summary_problem(summary, required)
    if problem:
        warn(f"{path}: {problem}; run directory skipped")
        return None
    return summary


def read_metrics_csv(path: Path) -> pd.DataFrame | None:
    """A run's metrics.csv (its ok rows); None when missing or empty, or (after one warning
    line naming it) when it is not a metrics table."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        long = pd.read_csv(path)
        missing = [c for c in METRIC_COLUMNS if c not in long.columns]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        long = long[long.status == "ok"]
        long[list(NUMERIC_COLUMNS)].astype(float)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        warn(f"{path}: not a metrics table ({reason}); its per-segment series left out")
        return None
    return long


def load(root: Path) -> Runs:
    """Read every run directory directly under ``root``; only finished ones (summary.json
    with status ok) are kept, the others are counted as excluded."""
    require(root.is_dir(), "runs", str(root), "no such directory; allowed: a directory holding run "
            "directories (the out_dir of forcebench run)")
    finished, excluded, entries = [], [], []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        staging = ".tmp-" in run_dir.name or ".old-" in run_dir.name
        summary = None if staging else read_run_summary(run_dir)
        if not summary or summary.get("status") != "ok":
            excluded.append(run_dir.name)
            continue
        finished.append(run_dir)
        meta = read_json_object(run_dir / "meta.json") or {}
        entries.append((summary, meta))
    require(bool(finished), "runs", str(root), "no finished run directories (summary.json with status ok) "
            "there; allowed: a directory holding finished runs")
    labels = method_labels([(s["method"], variant(s, m)) for s, m in entries])
    rows, series, directions, provenance = [], [], {}, Counter()
    for run_dir, (summary, meta), label in zip(finished, entries, labels):
        ident = {"run": summary["run"], "model": summary["model"], "method": label, "method_name": summary["method"],
                 "prompt": summary["prompt_id"], "seed": summary["seed"]}
        for d in summary["durations"]:
            d = dict(d)
            scalars = d.pop("metrics", {})
            d["seconds_generated"] = d.pop("seconds", None)
            d["seconds"] = float(d.pop("seconds_requested"))
            rows.append({**ident, **d, **scalars})
        git = meta.get("git") or {}
        if git.get("commit"):
            provenance[f"git {git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}"] += 1
        long = read_metrics_csv(run_dir / "metrics.csv")
        if long is not None:
            for key, hib in long.groupby("metric", sort=False)["higher_is_better"].first().items():
                directions.setdefault(key, parse_direction(hib))
            seg = long[long.segment >= 0]
            series.append(pd.DataFrame({**ident, "seconds": seg.seconds.astype(float),
                                        "metric": seg.metric, "segment": seg.segment,
                                        "centre_s": (seg.start_s + seg.end_s) / 2, "value": seg.value}))
    for key, hib in SYSTEM_DIRECTIONS.items():
        directions.setdefault(key, hib)
    series_df = pd.concat(series, ignore_index=True) if series else pd.DataFrame(
        columns=["run", "model", "method", "method_name", "prompt", "seed", "seconds", "metric", "segment",
                 "centre_s", "value"])
    return Runs(root, pd.DataFrame(rows), series_df, directions, [p.name for p in finished], excluded, provenance)


def label_of(key: str) -> str:
    return UNITS.get(key, (key, 1.0))[0]


def per_video(runs: Runs, key: str) -> pd.DataFrame:
    """One value per (method, seconds, prompt, seed) in display units; NaN values dropped
    (a metric undefined for a video, e.g. no revisit beyond the window)."""
    factor = UNITS.get(key, (key, 1.0))[1]
    df = runs.videos[["method", "seconds", "prompt", "seed", key]].rename(columns={key: "value"})
    df = df.dropna(subset=["value"])
    # Duplicate directories of one video (same label, prompt, seed) count once, as their mean.
    df = df.groupby(["method", "seconds", "prompt", "seed"], as_index=False)["value"].mean()
    df["value"] *= factor
    return df


def is_control(method_name: str) -> bool:
    """A negative control (methods/controls/) by its registered method name."""
    return str(method_name).startswith(CONTROL_PREFIX)
