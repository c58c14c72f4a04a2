"""Leaderboard: finished run directories -> per (method, duration) means with bootstrap
confidence intervals, best marks, paired comparisons against a baseline, plots, and
Markdown / CSV / HTML exports.

    forcebench leaderboard RUNS_DIR [--out results] [--baseline sliding_window]
        [--metrics KEY ...] [--bootstrap 1000] [--seed 0] [--screenshot PATH]

The unit of aggregation is the video (one prompt entry and seed): every statistic is taken
over one whole-prefix value per video, so a 60 s video weighs as much as a 5 s one and no
value is frame-weighted. Intervals are percentile bootstraps over videos: B resamples of
the n videos with replacement, the 2.5th and 97.5th percentiles of the resampled means.
The paired comparison matches a method's video with the baseline's video of the same
(prompt, seed, seconds) and bootstraps the mean of the differences (method - baseline).
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import require
from bench.records import REPO_DIR, atomic_write_bytes, atomic_write_text

DEFAULT_METRICS = (
    "palette_fidelity", "sprite_presence_ratio", "revisit_psnr_beyond", "pan_consistency",
    "clip_first_frame[toy-clip]", "clip_first_frame[clip-vit-b32]",
    "subject_consistency[toy-clip]", "subject_consistency[dino-vitb16]",
    "drift[toy-clip-text]", "drift[clip-vit-b32-text]",
    "latency_mean_s", "kv_bytes", "peak_memory_bytes",
)
# Display label and factor applied to the per-video value (raw key -> shown unit).
UNITS = {
    "latency_mean_s": ("latency_mean [ms]", 1000.0),
    "first_chunk_latency_s": ("first_chunk_latency [ms]", 1000.0),
    "kv_bytes": ("kv [MiB]", 2.0**-20),
    "peak_memory_bytes": ("peak_memory [MiB]", 2.0**-20),
}
# Always summarised (the plots need them) even when not shown in the tables.
PLOT_KEYS = ("latency_mean_s", "kv_bytes")
BOARD_COLUMNS = ["method", "seconds", "metric", "label", "higher_is_better", "videos", "mean", "ci_low",
                 "ci_high", "best", "baseline", "pairs", "diff_mean", "diff_low", "diff_high"]

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


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load(root: Path) -> Runs:
    """Read every run directory directly under ``root``; only finished ones (summary.json
    with status ok) are kept, the others are counted as excluded."""
    require(root.is_dir(), "runs", str(root), "no such directory; allowed: a directory holding run "
            "directories (the out_dir of forcebench run)")
    finished, excluded, entries = [], [], []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        summary = read_json(run_dir / "summary.json")
        if not summary or summary.get("status") != "ok" or ".tmp-" in run_dir.name or ".old-" in run_dir.name:
            excluded.append(run_dir.name)
            continue
        finished.append(run_dir)
        meta = read_json(run_dir / "meta.json") or {}
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
        csv_path = run_dir / "metrics.csv"
        if csv_path.exists():
            long = pd.read_csv(csv_path)
            long = long[long.status == "ok"]
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


def bootstrap_ci(values: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``values`` (NaN when empty)."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def cell_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator per table cell, so a cell's interval depends on the seed and its own
    data only (not on which other methods, durations or metrics are in the table)."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, parts)).encode())])


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


def build_board(runs: Runs, metrics: list[str], baseline: str | None, resamples: int, seed: int) -> pd.DataFrame:
    """Long table: one row per (method, seconds, metric) with mean, interval, best mark and
    the paired difference to ``baseline`` (NaN for the baseline itself or without one)."""
    rows = []
    for key in metrics:
        vids = per_video(runs, key)
        direction = runs.directions.get(key)
        base = vids[vids.method == baseline].set_index(["prompt", "seed", "seconds"])["value"]
        for (method, seconds), grp in vids.groupby(["method", "seconds"], sort=True):
            x = grp["value"].to_numpy()
            lo, hi = bootstrap_ci(x, resamples, cell_rng(seed, method, seconds, key))
            row = {"method": method, "seconds": float(seconds), "metric": key, "label": label_of(key),
                   "higher_is_better": direction, "videos": len(x), "mean": float(x.mean()),
                   "ci_low": lo, "ci_high": hi, "baseline": baseline or "", "pairs": 0,
                   "diff_mean": np.nan, "diff_low": np.nan, "diff_high": np.nan}
            if baseline is not None and method != baseline:
                mine = grp.set_index(["prompt", "seed", "seconds"])["value"]
                diff = (mine - base.reindex(mine.index)).dropna().to_numpy()
                row["pairs"] = len(diff)
                if len(diff):
                    row["diff_mean"] = float(diff.mean())
                    row["diff_low"], row["diff_high"] = bootstrap_ci(
                        diff, resamples, cell_rng(seed, method, seconds, key, "paired", baseline))
            rows.append(row)
    board = pd.DataFrame(rows, columns=BOARD_COLUMNS)
    board["best"] = mark_best(board)
    return board


def mark_best(board: pd.DataFrame) -> pd.Series:
    """True where a method's mean is the best of its (seconds, metric) column by the
    metric's direction (ties all marked); False everywhere for metrics without one."""
    best = pd.Series(False, index=board.index)
    for _, col in board.groupby(["seconds", "metric"]):
        direction = col["higher_is_better"].iloc[0]
        if direction not in (True, False) or col["mean"].isna().all():
            continue
        target = col["mean"].max() if direction else col["mean"].min()
        best[col.index] = np.isclose(col["mean"], target, rtol=1e-12, atol=0.0)
    return best


def select_metrics(runs: Runs, requested: list[str] | None) -> list[str]:
    """The requested keys (each must be in the runs) or the default keys the runs have."""
    present = runs.metric_keys()
    if requested is None:
        return [k for k in DEFAULT_METRICS if k in present]
    for key in requested:
        require(key in present, "--metrics", key, f"not in the runs; allowed: {', '.join(sorted(present))}")
    return list(dict.fromkeys(requested))


def resolve_baseline(runs: Runs, requested: str | None) -> str | None:
    """An explicit --baseline must name a method of the runs; the default (sliding_window)
    is used only when present, else the paired comparison is left out."""
    methods = sorted(runs.videos["method"].unique())
    if requested is None:
        return "sliding_window" if "sliding_window" in methods else None
    require(requested in methods, "--baseline", requested, f"no such method in the runs; allowed: {', '.join(methods)}")
    return requested


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forcebench leaderboard", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="directory holding run directories (out_dir of forcebench run)")
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--baseline", default=None,
                   help="method for the paired comparison (default: sliding_window when present)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="KEY", help="metric keys (default: a standard set)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples B (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--head-roles", default=str(REPO_DIR / "results" / "head_roles"),
                   help="directory of head-role maps <model>.json / .png (default: results/head_roles)")
    p.add_argument("--screenshot", default=None, metavar="PATH", help="also save a PNG screenshot of the HTML")
    return p


def main(argv: list[str]) -> int:
    """``forcebench leaderboard``: write leaderboard.md, .csv, .html and leaderboard_plots/*.png."""
    from bench.leaderboard_html import interval_note, render_html, screenshot, to_markdown
    from bench.leaderboard_plots import make_plots

    args = build_parser().parse_args(argv)
    require(args.bootstrap >= 1, "--bootstrap", args.bootstrap, "allowed: an integer >= 1")
    runs = load(Path(args.runs))
    metrics = select_metrics(runs, args.metrics)
    baseline = resolve_baseline(runs, args.baseline)
    summarised = metrics + [k for k in PLOT_KEYS if k in runs.metric_keys() and k not in metrics]
    board = build_board(runs, summarised, baseline, args.bootstrap, args.seed)
    out = Path(args.out)
    plot_dir = out / "leaderboard_plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(runs, board, metrics, Path(args.head_roles))
    for name, plot in plots.items():
        atomic_write_bytes(plot_dir / name, plot.png)
    note = interval_note(runs, args.bootstrap, args.seed)
    atomic_write_text(out / "leaderboard.csv", board[board.metric.isin(metrics)].to_csv(index=False))
    markdown = to_markdown(runs, board, metrics, baseline, note, plots)
    atomic_write_text(out / "leaderboard.md", markdown)
    html_path = out / "leaderboard.html"
    atomic_write_text(html_path, render_html(runs, board, metrics, baseline, note, plots))
    written = [out / "leaderboard.md", out / "leaderboard.csv", html_path, plot_dir]
    if args.screenshot:
        written.append(screenshot(html_path, Path(args.screenshot)))
    longest = f"## {max(runs.videos['seconds']):g} s"
    if longest in markdown:  # the longest duration's table, as printed by `make bench`
        print(markdown[markdown.index(longest):].split("\n###", 1)[0].split("\n## ", 1)[0].rstrip() + "\n")
    print(f"{len(runs.finished)} runs, {len(metrics)} metrics, {len(plots)} plots; wrote "
          + ", ".join(map(str, written)))
    print(f"leaderboard: {html_path.resolve()}")
    return 0
