"""Read run directories into one table and print method x duration comparisons.

    forcebench table [RUNS_DIR] [--metrics KEY ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cli_args import Options, option, parse
from bench.report.runs import read_runs
from core.errors import ConfigError

COLUMNS = {
    "latency_p50_s": ("ms/chunk", 1000.0),  # steady-state median (runs written before the timing protocol: the mean)
    "fps": ("FPS", 1.0),
    "kv_mib": ("KV MiB", 1.0),
}


def load_runs(root: Path) -> pd.DataFrame:
    """One row per (run, duration) of the finished runs under ``root``, read by the reports'
    one reader (bench/report/runs.py: staging, unfinished and failed run directories are
    left out; a summary.json that is not a run summary is reported on stderr and skipped)."""
    rows = []
    for _, summary in read_runs(Path(root)):
        if summary is None or not summary.ok:
            continue
        for d in summary.durations:
            rows.append({"run": summary.run, "model": summary.model, "method": summary.method,
                         "prompt": summary.prompt_id, "seed": summary.seed, "seconds_requested": d.seconds_requested,
                         "seconds": d.seconds_generated, **d.values()})
    return pd.DataFrame(rows)


def method_duration_table(df: pd.DataFrame, metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean over prompts and seeds (each video weighs the same), per (method, requested
    seconds): system columns plus the metric result keys in ``metrics`` that the runs have."""
    if "latency_p50_s" not in df.columns and "latency_mean_s" in df.columns:
        df = df.assign(latency_p50_s=df["latency_mean_s"])
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


@dataclass
class TableOptions(Options):
    """``forcebench table``'s options."""

    runs: str = option("runs", "directory holding run directories", positional=True)
    metrics: tuple[str, ...] = option(("palette_fidelity", "sprite_presence_ratio", "clip_consistency_first[toy-clip]"),
                                      "metric result keys shown beside the system columns (when the runs have them)",
                                      nargs="*", metavar="KEY")


def main(argv: list[str]) -> int:
    """``forcebench table``: print the method x duration table of the finished runs."""
    options = parse("forcebench table", argv, TableOptions, description=__doc__.splitlines()[0])
    df = load_runs(Path(options.runs))
    if df.empty:
        raise ConfigError(f"runs={options.runs!r}: no finished run directories found there")
    print(format_table(method_duration_table(df, options.metrics)))
    return 0
