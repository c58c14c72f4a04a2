"""What the leaderboard shows, shared by its Markdown and HTML renderings: the ``Layout``
(board, metrics, primary score, validity check, plots), the row order (methods ranked by the
primary score, then the band of negative controls), and the cell texts.

A table cell reads ``mean [lo, hi]``: the mean over videos of one whole-prefix value per
video, and the 95 % percentile bootstrap interval of that mean. A paired cell reads
``+diff [lo, hi] (n=pairs)``: the mean of per-video differences method - baseline on
videos matched by (prompt, seed, seconds), and its bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.leaderboard_plots import PRIMARY_PLOT, Plot
from bench.report.runs import Runs, label_of
from bench.report.validity import Validity

ARROWS = {True: " ↑", False: " ↓"}


@dataclass
class Layout:
    """Everything the renderers need. ``board``: build_board's long table; ``validity``:
    the check of the negative controls (None when it did not run, ``why_not`` says why)."""

    runs: Runs
    board: pd.DataFrame
    metrics: list[str]
    baseline: str | None
    primary: str | None
    validity: Validity | None
    why_not: str
    note: str
    plots: dict[str, Plot]

    def durations(self) -> list[float]:
        """Longest first."""
        return sorted((float(s) for s in self.board.seconds.unique()), reverse=True)

    def order(self, seconds: float) -> tuple[list[str], list[str]]:
        """(methods, controls) at ``seconds``: each ranked by the primary score's mean by its
        direction (methods without a value last), or by name without a primary score."""
        part = self.board[self.board.seconds == seconds]
        controls = set(part.method[part.control.astype(bool)])
        names = sorted(set(part.method))
        if self.primary is not None:
            prim = part[part.metric == self.primary].set_index("method")
            higher = bool(prim.higher_is_better.dropna().iloc[0]) if prim.higher_is_better.notna().any() else True
            mean = prim["mean"].reindex(names).fillna(-np.inf if higher else np.inf)  # no value: last
            names.sort(key=lambda m: -mean[m] if higher else mean[m])  # stable: ties stay in name order
        return [m for m in names if m not in controls], [m for m in names if m in controls]

    def not_beaten(self, seconds: float) -> dict[str, list[str]]:
        """Controls the check found not beaten (with the references), at the checked duration."""
        if self.validity is None or not np.isclose(self.validity.seconds, seconds):
            return {}
        return self.validity.not_beaten()

    def primary_plot(self) -> Plot | None:
        return self.plots.get(PRIMARY_PLOT)


def decimals(values) -> int:
    """Decimals giving about 4 significant digits to the largest finite magnitude of a column."""
    v = np.abs(np.asarray([x for x in values if x is not None and np.isfinite(x)], float))
    if not len(v) or v.max() == 0:
        return 0
    return int(np.clip(3 - np.floor(np.log10(v.max())), 0, 8))


def fmt(x: float, digits: int, signed: bool = False) -> str:
    """``x`` with ``digits`` decimals (thousands separators); "-" when undefined."""
    if x is None or not np.isfinite(x):
        return "-"
    x = 0.0 if round(x, digits) == 0 else x  # no "-0.000" from rounding noise
    return f"{x:{'+' if signed else ''},.{digits}f}"


def column_name(board: pd.DataFrame, key: str) -> str:
    directions = board.loc[board.metric == key, "higher_is_better"].dropna()
    return label_of(key) + (ARROWS.get(directions.iloc[0], "") if len(directions) else "")


def wide(board: pd.DataFrame, seconds: float, metrics: list[str], paired: bool,
         methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows = ``methods`` in the given order (the baseline left out of a paired table),
    columns = metric labels with direction arrows; returns the cell texts and a same-shaped
    boolean frame of best marks (all False for paired tables). The plain table ends with
    the column ``videos`` (most videos of a method at this duration); a cell based on fewer
    videos (a metric undefined for some) says its own ``(n=k)``. Decimals are chosen over
    every method of the column (so the bands of one table agree)."""
    part = board[(board.seconds == seconds) & board.metric.isin(metrics)]
    if paired:
        methods = [m for m in methods if m not in set(part.baseline)]
    most = part.groupby("method")["videos"].max().reindex(methods).fillna(0).astype(int)
    cells, best = {}, {}
    for key in metrics:
        column = part[part.metric == key]
        sub = column.set_index("method").reindex(methods)
        name = column_name(board, key)
        videos = sub.videos.fillna(0).astype(int)
        if paired:
            d = decimals([*column.diff_mean, *column.diff_low, *column.diff_high])
            cells[name] = [f"{fmt(m, d, True)} [{fmt(lo, d, True)}, {fmt(hi, d, True)}] (n={int(n)}, MDD {fmt(mdd, d)})"
                           if n > 0 else "-"
                           for m, lo, hi, n, mdd in zip(sub.diff_mean, sub.diff_low, sub.diff_high, sub.pairs.fillna(0),
                                                        sub.diff_mdd)]
        else:
            d = decimals([*column["mean"], *column.ci_low, *column.ci_high])
            noisy = sub["noisy"].fillna(0) if "noisy" in sub else pd.Series(0.0, index=sub.index)
            cells[name] = [(f"{fmt(m, d)} [{fmt(lo, d)}, {fmt(hi, d)}]" + (f" (n={n})" if n < most.iloc[i] else "")
                            + (f" !{q:.0%}" if q else "")) if n > 0 else "-"
                           for i, (m, lo, hi, n, q) in enumerate(zip(sub["mean"], sub.ci_low, sub.ci_high, videos, noisy))]
        best[name] = [False] * len(methods) if paired else sub.best.fillna(False).astype(bool).tolist()
    table = pd.DataFrame(cells, index=pd.Index(methods, name="method"))
    marks = pd.DataFrame(best, index=table.index)
    if not paired:
        table["videos"] = most.astype(str)
        marks["videos"] = False
    return table, marks


def primary_table(layout: Layout, seconds: float, methods: list[str]) -> pd.DataFrame:
    """The primary score's ``mean [lo, hi]`` and the videos, per method (in the given order)."""
    return wide(layout.board, seconds, [layout.primary], False, methods)[0]


def interval_note(runs: Runs, resamples: int, seed: int) -> str:
    """What a cell's numbers are: mean over n videos, percentile bootstrap, B resamples."""
    n = runs.videos.drop_duplicates(["method", "seconds", "prompt", "seed"]).groupby(["method", "seconds"]).size()
    span = f"{n.min()}" if n.min() == n.max() else f"{n.min()} to {n.max()}"
    return (f"Cells: mean over videos (prompt x seed; one whole-prefix value per video, never frame-weighted) "
            f"[95 % percentile bootstrap interval over videos: n = {span} videos per method and duration, "
            f"B = {resamples} resamples, seed {seed}]. Fewer videos where a metric is undefined for some. "
            f"Marked: best of its column among the methods (negative controls excluded) by the metric's direction "
            f"(↑ higher is better, ↓ lower is better; no arrow: no direction, no mark). Paired: mean of per-video "
            f"differences method - baseline on videos matched by (prompt, seed, seconds) [percentile bootstrap "
            f"95 % interval over the n pairs, B = {resamples}]. Latency: each run's steady-state per-chunk median "
            f"(the timing protocol, README.md); '!k%': k % of the cell's runs were timed under changing load (their "
            f"p95 over 1.5 x their median), so the cell may rank load, not methods: `forcebench time-chunks` times "
            f"methods interleaved.")
