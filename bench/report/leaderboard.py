"""Leaderboard: finished run directories -> per (method, duration) means with bootstrap
confidence intervals, best marks, paired comparisons against a baseline, the validity check
of the negative controls, plots, and Markdown / CSV / HTML exports.

    forcebench leaderboard RUNS_DIR [--out results] [--primary continuation_psnr]
        [--baseline sliding_window] [--metrics KEY ...] [--references sink sliding_window]
        [--alpha 0.01] [--bootstrap 1000] [--seed 0] [--screenshot PATH]

The unit of aggregation is the video (one prompt entry and seed): every statistic is taken
over one whole-prefix value per video, so a 60 s video weighs as much as a 5 s one and no
value is frame-weighted. Intervals are percentile bootstraps over videos (bench/report/stats.py).
The paired comparison matches a method's video with the baseline's video of the same
(prompt, seed, seconds) and bootstraps the mean of the differences (method - baseline).

The primary score (``--primary``; default ``continuation_psnr`` when the runs have it) is
the first metric column and ranks the rows by its direction. Negative controls (methods
``control_*``) sit in their own band below the methods, are not ranked against them and
never take a best mark; the validity check (bench/report/validity.py, the same function as
``forcebench validate``) tests at the longest duration that the references beat each one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cli_args import option, parse
from bench.report.leaderboard_cells import Layout, interval_note
from bench.report.leaderboard_html import render_html, screenshot
from bench.report.leaderboard_md import terminal_summary, to_markdown
from bench.report.leaderboard_plots import make_plots
from bench.report.runs import Runs, label_of, load, per_video
from bench.report.stats import bootstrap_mean, paired_comparison, paired_differences
from bench.report.validity import (
    PRIMARY_METRICS,
    ControlCheckOptions,
    Validity,
    check_controls,
    default_primary,
    resolve_references,
)
from core.errors import require
from core.files import atomic_write_bytes, atomic_write_text
from core.paths import REPO_DIR
from core.timing import NOISY_SPREAD

MDD_ALPHA = 0.05  # the paired tables state the smallest difference detectable at this level (two-sided, power 0.8)
DEFAULT_METRICS = (
    *PRIMARY_METRICS, "palette_fidelity", "sprite_presence_ratio", "revisit_psnr_beyond", "pan_consistency",
    "clip_first_frame[toy-clip]", "clip_first_frame[clip-vit-b32]",
    "subject_consistency[toy-clip]", "subject_consistency[dino-vitb16]",
    "drift[toy-clip-text]", "drift[clip-vit-b32-text]",
    "latency_p50_s", "kv_bytes", "peak_memory_bytes",
)
# Always summarised (the plots need them) even when not shown in the tables.
PLOT_KEYS = ("latency_p50_s", "kv_bytes")
# A latency cell's ``noisy``: the share of its runs whose own chunks disagreed (latency_spread over
# core.timing.NOISY_SPREAD), i.e. timed under changing load; the cell is flagged when any did.
LATENCY_KEYS = ("latency_mean_s", "latency_p50_s", "latency_p95_s")
BOARD_COLUMNS = ["method", "control", "seconds", "metric", "label", "higher_is_better", "videos", "mean", "ci_low",
                 "ci_high", "best", "baseline", "pairs", "diff_mean", "diff_low", "diff_high", "diff_mdd", "noisy"]


def cell_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator per table cell, so a cell's interval depends on the seed and its own
    data only (not on which other methods, durations or metrics are in the table)."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, parts)).encode())])


def build_board(runs: Runs, metrics: list[str], baseline: str | None, resamples: int, seed: int) -> pd.DataFrame:
    """Long table: one row per (method, seconds, metric) with mean, interval, best mark and
    the paired difference to ``baseline`` (NaN for the baseline itself or without one)."""
    controls = set(runs.controls())
    rows = []
    spread = (per_video(runs, "latency_spread") if "latency_spread" in runs.videos else  # absent in older runs
              pd.DataFrame(columns=["method", "prompt", "seed", "seconds", "value"]))
    spread = spread.set_index(["method", "prompt", "seed", "seconds"])["value"]
    for key in metrics:
        vids = per_video(runs, key)
        direction = runs.directions.get(key)
        base = vids[vids.method == baseline].set_index(["prompt", "seed", "seconds"])["value"]
        for (method, seconds), grp in vids.groupby(["method", "seconds"], sort=True):
            mean, lo, hi = bootstrap_mean(grp["value"], resamples, cell_rng(seed, method, seconds, key))
            row = {"method": method, "control": method in controls, "seconds": float(seconds), "metric": key,
                   "label": label_of(key), "higher_is_better": direction, "videos": len(grp), "mean": mean,
                   "ci_low": lo, "ci_high": hi, "baseline": baseline or "", "pairs": 0,
                   "diff_mean": np.nan, "diff_low": np.nan, "diff_high": np.nan, "diff_mdd": np.nan, "noisy": np.nan}
            if key in LATENCY_KEYS:
                own = spread.reindex(pd.MultiIndex.from_frame(grp[["method", "prompt", "seed", "seconds"]]))
                row["noisy"] = float((own > NOISY_SPREAD).mean()) if own.notna().any() else np.nan
            if baseline is not None and method != baseline:
                diff = paired_differences(grp.set_index(["prompt", "seed", "seconds"])["value"], base)
                row["pairs"] = len(diff)
                if len(diff):
                    paired = paired_comparison(diff, resamples, cell_rng(seed, method, seconds, key, "paired", baseline),
                                               MDD_ALPHA, test=False, two_sided=True)
                    row.update(diff_mean=paired.mean, diff_low=paired.lo, diff_high=paired.hi, diff_mdd=paired.mdd)
            rows.append(row)
    board = pd.DataFrame(rows, columns=BOARD_COLUMNS)
    board["best"] = mark_best(board)
    return board


def mark_best(board: pd.DataFrame) -> pd.Series:
    """True where a method's mean is the best of its (seconds, metric) column by the
    metric's direction (ties all marked); False everywhere for metrics without one.
    Controls are not contenders: the best is taken among the methods (among the controls
    only when no method has a value)."""
    best = pd.Series(False, index=board.index)
    for _, col in board.groupby(["seconds", "metric"]):
        direction = col["higher_is_better"].iloc[0]
        contenders = col[~col.control.astype(bool)]
        contenders = col if contenders["mean"].isna().all() else contenders
        if direction not in (True, False) or contenders["mean"].isna().all():
            continue
        target = contenders["mean"].max() if direction else contenders["mean"].min()
        best[contenders.index] = np.isclose(contenders["mean"], target, rtol=1e-12, atol=0.0)
    return best


def resolve_primary(runs: Runs, requested: str | None) -> str | None:
    """An explicit --primary must be a metric of the runs with a direction; the default is
    the first of PRIMARY_METRICS the runs have, else no primary (rows in name order)."""
    present = runs.metric_keys()
    if requested is None:
        return default_primary(present)
    ranked = sorted(k for k in present if runs.directions.get(k) in (True, False))
    require(requested in ranked, "--primary", requested,
            f"not a metric of the runs with a direction; allowed: {', '.join(ranked)}")
    return requested


def select_metrics(runs: Runs, requested: tuple[str, ...] | list[str] | None, primary: str | None = None) -> list[str]:
    """The requested keys (each must be in the runs) or the default keys the runs have; the
    primary metric first."""
    present = runs.metric_keys()
    if requested is None:
        chosen = [k for k in DEFAULT_METRICS if k in present]
    else:
        for key in requested:
            require(key in present, "--metrics", key, f"not in the runs; allowed: {', '.join(sorted(present))}")
        chosen = list(requested)
    return list(dict.fromkeys(([primary] if primary else []) + chosen))


def resolve_baseline(runs: Runs, requested: str | None) -> str | None:
    """An explicit --baseline must name a method of the runs; the default (sliding_window)
    is used only when present, else the paired comparison is left out."""
    methods = sorted(runs.videos["method"].unique())
    if requested is None:
        return "sliding_window" if "sliding_window" in methods else None
    require(requested in methods, "--baseline", requested, f"no such method in the runs; allowed: {', '.join(methods)}")
    return requested


def leaderboard_validity(runs: Runs, primary: str | None, references: list[str], alpha: float, resamples: int,
                         seed: int) -> tuple[Validity | None, str]:
    """The validity check at the longest duration, or None and why it did not run."""
    if not runs.controls():
        return None, "No negative controls (methods control_*) in these runs: the check did not run."
    if primary is None:
        return None, (f"The runs have none of {', '.join(PRIMARY_METRICS)} and no --primary was given: the check of the negative "
                      f"controls ({', '.join(runs.controls())}) did not run.")
    present, missing = resolve_references(runs, references, strict=False)
    if not present:
        return None, (f"None of the references ({', '.join(references)}) is in these runs: the check of the "
                      f"negative controls did not run.")
    seconds = float(runs.videos["seconds"].max())
    validity = check_controls(runs, primary, seconds, present, alpha, resamples, seed)
    validity.missing_references = missing
    return validity, ""


@dataclass
class LeaderboardOptions(ControlCheckOptions):
    """``forcebench leaderboard``'s options (the control check's, and what to show where)."""

    out: str = option("results", "output directory", output="dir")
    primary: str | None = option(None, f"metric that ranks the rows (default: the first of "
                                       f"{', '.join(PRIMARY_METRICS)} the runs have)", metavar="KEY")
    baseline: str | None = option(None, "method for the paired comparison (default: sliding_window when present)")
    metrics: tuple[str, ...] | None = option(None, "metric keys (default: a standard set)", metavar="KEY")
    head_roles: str = option(str(REPO_DIR / "results" / "head_roles"),
                             "directory of head-role maps <model>.json / .png")
    screenshot: str | None = option(None, "also save a PNG screenshot of the HTML", metavar="PATH", output="file")


def main(argv: list[str]) -> int:
    """``forcebench leaderboard``: write leaderboard.md, .csv, .html and leaderboard_plots/*.png."""
    args = parse("forcebench leaderboard", argv, LeaderboardOptions, description=__doc__.split("\n\n")[0])
    out = Path(args.out)
    runs = load(Path(args.runs))
    primary = resolve_primary(runs, args.primary)
    metrics = select_metrics(runs, args.metrics, primary)
    baseline = resolve_baseline(runs, args.baseline)
    summarised = metrics + [k for k in PLOT_KEYS if k in runs.metric_keys() and k not in metrics]
    board = build_board(runs, summarised, baseline, args.bootstrap, args.seed)
    validity, why_not = leaderboard_validity(runs, primary, args.references, args.alpha, args.bootstrap, args.seed)
    plot_dir = out / "leaderboard_plots"
    plots = make_plots(runs, board, metrics, primary, Path(args.head_roles))
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, plot in plots.items():
        atomic_write_bytes(plot_dir / name, plot.png)
    layout = Layout(runs, board, metrics, baseline, primary, validity, why_not,
                    interval_note(runs, args.bootstrap, args.seed), plots)
    atomic_write_text(out / "leaderboard.csv", board[board.metric.isin(metrics)].to_csv(index=False))
    atomic_write_text(out / "leaderboard.md", to_markdown(layout))
    html_path = out / "leaderboard.html"
    atomic_write_text(html_path, render_html(layout))
    written = [out / "leaderboard.md", out / "leaderboard.csv", html_path, plot_dir]
    if args.screenshot:
        written.append(screenshot(html_path, Path(args.screenshot)))
    print(terminal_summary(layout))
    print(f"{len(runs.finished)} runs, {len(metrics)} metrics, {len(plots)} plots; wrote "
          + ", ".join(map(str, written)))
    print(f"leaderboard: {html_path.resolve()}")
    return 0
