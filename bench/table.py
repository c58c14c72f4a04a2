"""Read run directories into one table and print method x duration comparisons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import is_staging
from bench.run_dirs import read_run_summary

COLUMNS = {
    "latency_mean_s": ("ms/chunk", 1000.0),
    "fps": ("FPS", 1.0),
    "kv_mib": ("KV MiB", 1.0),
}


def load_runs(root: Path) -> pd.DataFrame:
    """One row per (run, duration) from every finished ``summary.json`` under ``root`` (one that
    is not a run summary is reported on stderr and skipped: bench/run_dirs.py)."""
    rows = []
    for path in sorted(Path(root).glob("*/summary.json")):
        if is_staging(path.parent):
            continue
        summary = read_run_summary(path.parent)
        if summary is None or summary.get("status") != "ok":
            continue
        for d in summary["durations"]:
            d = dict(d)
            scalars = d.pop("metrics", {})  # metric result key -> value at this duration
            rows.append({"run": summary["run"], "model": summary["model"], "method": summary["method"],
                         "prompt": summary["prompt_id"], "seed": summary["seed"], **d, **scalars})
    return pd.DataFrame(rows)


def method_duration_table(df: pd.DataFrame, metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean over prompts and seeds (each video weighs the same), per (method, requested
    seconds): system columns plus the metric result keys in ``metrics`` that the runs have."""
    grouped = df.groupby(["method", "seconds_requested"])
    shown = [m for m in metrics if m in df.columns]
    table = grouped[list(COLUMNS) + shown].mean()
    table["videos"] = grouped.size()
    for key, (label, factor) in COLUMNS.items():
        table[label] = table.pop(key) * factor
    table.index = table.index.set_names(["method", "seconds"])
    return table[[label for label, _ in COLUMNS.values()] + shown + ["videos"]]


def format_table(table: pd.DataFrame) -> str:
    return table.to_string(float_format=lambda x: f"{x:.2f}")
