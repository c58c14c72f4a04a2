"""Read finished run directories back: the one reader of every report (table, leaderboard,
validity, regress, evaluate-toy).

``read_runs(root)`` is the only place that lists run directories and reads ``summary.json``:
every directory directly under ``root`` with its ``RunSummary`` (bench/report/schema.py), or
None for a staging directory (``core.files.is_staging``, never read), an unfinished one (no
summary.json) and one whose summary.json is not a run summary (binary, malformed JSON, a
list, fields missing or of the wrong type: one warning line on stderr naming the file; the
run directory is skipped and the command goes on).

``load(root)`` builds on it for the leaderboard and the validity check: ``Runs``, one row per
(run, requested seconds) of the finished runs (status ok; failed, unfinished and staging
directories are counted and left out) with the system numbers and whole-prefix metric
values, the per-segment series from ``metrics.csv``, and each metric's direction.
``per_video(runs, key)`` gives one value per video (method, seconds, prompt, seed).

Methods whose name starts with ``control_`` are negative controls (methods/controls/); the
prefix is spelled here too so that reading runs does not import the methods.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.schema import RunSummary, SummaryError
from core.errors import require
from core.files import is_staging, read_json_object
from core.system_numbers import SYSTEM_DIRECTIONS

CONTROL_PREFIX = "control_"
METRIC_COLUMNS = ("metric", "higher_is_better", "segment", "seconds", "start_s", "end_s", "value", "status")
NUMERIC_COLUMNS = ("segment", "seconds", "start_s", "end_s")

# Display label and factor applied to the per-video value (raw key -> shown unit).
UNITS = {
    "latency_mean_s": ("latency_mean [ms]", 1000.0),
    "latency_p50_s": ("latency_p50 [ms]", 1000.0),
    "first_chunk_latency_s": ("first_chunk_latency [ms]", 1000.0),
    "kv_bytes": ("kv [MiB]", 2.0**-20),
    "peak_memory_bytes": ("peak_memory [MiB]", 2.0**-20),
}
ID_COLUMNS = ("run", "model", "method", "method_name", "prompt", "seed", "seconds", "seconds_generated",
              "frames", "chunks")


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


def variant(summary: RunSummary, meta: dict) -> dict:
    """What tells apart runs of one method name, besides prompt and seed."""
    key = meta.get("key") or {}
    fields = {"model": summary.model, **{k: v for k, v in summary.method_params.items() if k != "name"}}
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


def read_run_summary(run_dir: Path) -> RunSummary | None:
    """The run directory's summary.json; None when there is none, or (after one warning line
    naming it) when it is not a run summary."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        return RunSummary.from_json(json.loads(path.read_bytes().decode("utf-8")))
    except (OSError, UnicodeDecodeError) as err:
        warn(f"{path}: unreadable or binary ({type(err).__name__}); run directory skipped")
    except json.JSONDecodeError as err:
        warn(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); run directory skipped")
    except SummaryError as err:
        warn(f"{path}: {err}; run directory skipped")
    return None


def read_runs(root: Path) -> list[tuple[Path, RunSummary | None]]:
    """Every run directory directly under ``root`` (by name; names starting with ``_`` or ``.``,
    such as Hydra's ``_hydra``, are not run directories) with its summary, finished or failed:
    None for a staging directory (never read), an unfinished one and one whose summary.json
    is not a run summary (warned). A ConfigError when ``root`` is not a directory."""
    require(Path(root).is_dir(), "runs", str(root), "no such directory; allowed: a directory holding run "
            "directories (the out_dir of forcebench run)")
    dirs = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return [(d, None if is_staging(d) else read_run_summary(d)) for d in dirs]


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
    finished, excluded, entries = [], [], []
    for run_dir, summary in read_runs(root):
        if summary is None or not summary.ok:
            excluded.append(run_dir.name)
            continue
        finished.append(run_dir)
        entries.append((summary, read_json_object(run_dir / "meta.json") or {}))
    require(bool(finished), "runs", str(root), "no finished run directories (summary.json with status ok) "
            "there; allowed: a directory holding finished runs")
    labels = method_labels([(s.method, variant(s, m)) for s, m in entries])
    rows, series, directions, provenance = [], [], {}, Counter()
    for run_dir, (summary, meta), label in zip(finished, entries, labels):
        ident = {"run": summary.run, "model": summary.model, "method": label, "method_name": summary.method,
                 "prompt": summary.prompt_id, "seed": summary.seed}
        for d in summary.durations:
            rows.append({**ident, "seconds_generated": d.seconds_generated, "seconds": d.seconds_requested,
                         **d.values()})
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
