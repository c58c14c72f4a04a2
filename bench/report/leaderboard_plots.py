"""Leaderboard plots (PNG bytes, matplotlib Agg): the primary score over duration, metrics
over time, quality vs allocated KV bytes with the Pareto front, per-chunk latency vs
duration, and Head Forcing's head-role heatmap.

Every point is a mean over videos (one value per video), never frame-weighted. Over time:
the per-segment rows (segment >= 0) of each run's metrics.csv at the longest duration,
x = segment centre in seconds, mean over a method's videos per segment. Negative controls
(methods ``control_*``) are drawn apart: grey, dashed, and never on a Pareto front.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.report.head_roles_plot import save_heatmap
from bench.report.runs import SYSTEM_DIRECTIONS, UNITS, Runs, label_of
from methods.roles import load_role_map

PRIMARY_PLOT = "primary_vs_duration.png"
CONTROL_MARKERS = ("s", "^", "v", "D", "x", "P")


class Plot(NamedTuple):
    title: str
    caption: str
    png: bytes


def series_key(key: str) -> str:
    """The per-segment (or per-chunk) series behind a whole-video metric key."""
    if key.endswith("]") and "[" in key:
        name, encoder = key[:-1].split("[", 1)
        if name in ("drift", "abs_drift"):
            return f"drift_curve[{encoder}]"
    return {"latency_mean_s": "latency_s", "latency_p50_s": "latency_s"}.get(key, key)


def pareto_front(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Mask of points no other point dominates (x no larger and y no worse, one of them
    strictly): lower KV bytes is better, y by its direction."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    y = y if higher_is_better else -y
    front = np.ones(len(x), bool)
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        dominated = others & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        front[i] = not dominated.any()
    return front


class Style(NamedTuple):
    """How one method is drawn: methods in colour with solid lines, controls in grey, dashed."""

    colour: tuple
    line: str
    marker: str
    control: bool

    def kw(self) -> dict:
        return {"color": self.colour, "linestyle": self.line, "marker": self.marker}


def styles(methods: list[str], controls: list[str]) -> dict[str, Style]:
    import matplotlib

    plain = sorted(m for m in methods if m not in controls)
    cmap = matplotlib.colormaps["tab10" if len(plain) <= 10 else "tab20"]
    out = {m: Style(cmap(i % cmap.N), "-", "o", False) for i, m in enumerate(plain)}
    greys = np.linspace(0.25, 0.6, max(1, len(controls)))
    for i, m in enumerate(sorted(controls)):
        out[m] = Style((greys[i],) * 3 + (1.0,), "--", CONTROL_MARKERS[i % len(CONTROL_MARKERS)], True)
    return out


def png_of(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def grid(n: int, width: float = 5.0, height: float = 3.4):
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def segment_means(runs: Runs, metrics: list[str]) -> tuple[float, pd.DataFrame]:
    """The longest duration with per-segment rows for ``metrics``, and per (metric key,
    method, segment) the mean over videos of the segment centre (s) and of the value in
    display units (``metric`` is the whole-video key the series belongs to)."""
    wanted = {series_key(k): k for k in metrics}
    seg = runs.series[runs.series.metric.isin(wanted)]
    if seg.empty:
        return float("nan"), pd.DataFrame(columns=["metric", "series", "method", "segment", "centre_s", "value"])
    seconds = float(seg.seconds.max())
    seg = seg[seg.seconds == seconds].assign(series=lambda d: d.metric, metric=lambda d: d.metric.map(wanted))
    seg["value"] = seg.value * seg.metric.map(lambda k: UNITS.get(k, (k, 1.0))[1])
    means = seg.groupby(["metric", "series", "method", "segment"], as_index=False)[["centre_s", "value"]].mean()
    return seconds, means


def over_time(runs: Runs, metrics: list[str], style: dict[str, Style]) -> Plot | None:
    seconds, means = segment_means(runs, metrics)
    if means.empty:
        return None
    keys = [k for k in metrics if k in set(means.metric)]
    fig, axes = grid(len(keys))
    for ax, key in zip(axes, keys):
        curve = means[means.metric == key]
        for method, c in curve.groupby("method"):
            ax.plot(c.centre_s, c.value, ms=3, label=method, **style[method].kw())
        unit = label_of(key).split(" ")[-1] if key in UNITS else ""
        ax.set_title(f"{curve.series.iloc[0]} {unit}".strip(), fontsize=10)
        ax.set_xlabel("segment centre [s]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return Plot(f"Metrics over time at {seconds:g} s",
                f"Per-segment values (drift: its segment curve; latency and KV: per chunk) of the {seconds:g} s "
                "runs, mean over each method's videos per segment; x = segment centre.", png_of(fig))


def quality_vs_kv(board: pd.DataFrame, metrics: list[str], style: dict[str, Style]) -> Plot | None:
    seconds = 60.0 if (board.seconds == 60.0).any() else board.seconds.max()
    at = board[board.seconds == seconds]
    kv = at[at.metric == "kv_bytes"].set_index("method")["mean"]
    quality = [k for k in metrics if k not in SYSTEM_DIRECTIONS and k in set(at.metric)
               and at.loc[at.metric == k, "higher_is_better"].iloc[0] is not None]
    if kv.empty or not quality:
        return None
    fig, axes = grid(len(quality), 4.6, 3.6)
    for ax, key in zip(axes, quality):
        rows = at[at.metric == key].set_index("method").join(kv.rename("kv"), how="inner").dropna(subset=["mean"])
        higher = bool(rows.higher_is_better.iloc[0])
        plain = ~rows.control.astype(bool).to_numpy()
        front = np.zeros(len(rows), bool)
        front[plain] = pareto_front(rows.kv[plain], rows["mean"][plain], higher)  # controls never on it
        for (method, r), on in zip(rows.iterrows(), front):
            s = style[method]
            ax.errorbar(r.kv, r["mean"], yerr=[[r["mean"] - r.ci_low], [r.ci_high - r["mean"]]], fmt=s.marker,
                        color=s.colour, mec="black" if on else s.colour, mew=1.5 if on else 0.5,
                        ms=9 if on else 6, capsize=3, label=method)
        f = rows[front].sort_values("kv")
        ax.plot(f.kv, f["mean"], "--", color="0.4", lw=1, drawstyle="steps-post")
        ax.set_title(f"{label_of(key)} {'↑' if higher else '↓'}", fontsize=10)
        ax.set_xlabel("allocated KV [MiB]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return Plot(f"Quality vs allocated KV bytes at {seconds:g} s",
                "Mean over videos with its 95 % bootstrap interval against the mean allocated KV bytes at the end "
                "of the duration; ringed points joined by the dashed line form the Pareto front (no other method "
                "has less KV and a better value); negative controls in grey, never on the front.", png_of(fig))


def latency_vs_duration(board: pd.DataFrame, style: dict[str, Style]) -> Plot | None:
    lat = board[board.metric == "latency_p50_s"].sort_values("seconds")
    if lat.empty:
        return None
    fig, (ax,) = grid(1, 6.5, 4.0)
    for method, r in lat.groupby("method"):
        ax.errorbar(r.seconds, r["mean"], yerr=[r["mean"] - r.ci_low, r.ci_high - r["mean"]],
                    capsize=3, label=method, **style[method].kw())
    ax.set_xlabel("duration [s]")
    ax.set_ylabel("steady-state per-chunk latency, median [ms]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot("Per-chunk latency vs duration",
                "Mean wall time of one chunk over the prefix (denoising, K/V pass and cache update), mean over "
                "videos with its 95 % bootstrap interval.", png_of(fig))


def primary_over_duration(board: pd.DataFrame, primary: str | None, style: dict[str, Style]) -> Plot | None:
    """The primary score's mean (95 % bootstrap interval) per duration, one line per method;
    the negative controls grey and dashed."""
    rows = board[board.metric == primary].sort_values("seconds")
    if primary is None or rows.empty:
        return None
    fig, (ax,) = grid(1, 7.5, 4.4)
    for method, r in sorted(rows.groupby("method"), key=lambda kv: (style[kv[0]].control, kv[0])):
        s = style[method]
        ax.errorbar(r.seconds, r["mean"], yerr=[r["mean"] - r.ci_low, r.ci_high - r["mean"]], capsize=3,
                    lw=1.2 if s.control else 1.8, label=f"{method} (control)" if s.control else method, **s.kw())
    higher = rows.higher_is_better.dropna()
    arrow = {True: " ↑", False: " ↓"}.get(higher.iloc[0], "") if len(higher) else ""
    ax.set_xlabel("duration [s]")
    ax.set_ylabel(f"{label_of(primary)}{arrow}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return Plot(f"Primary score ({primary}) over duration",
                "Mean over videos with its 95 % bootstrap interval at every duration; methods in colour, the negative "
                "controls (deliberately broken methods) grey and dashed: every method should sit above them "
                f"(by the metric's direction{arrow}).", png_of(fig))


def head_roles(runs: Runs, roles_dir: Path) -> dict[str, Plot]:
    """The role-map heatmap of each model Head Forcing ran on: the PNG beside
    ``<model>.json`` as is, or drawn from the JSON when only that exists."""
    out = {}
    models = sorted(runs.videos.loc[runs.videos.method_name == "head_forcing", "model"].unique())
    for model in models:
        png, js = roles_dir / f"{model}.png", roles_dir / f"{model}.json"
        if png.exists():
            data = png.read_bytes()
        elif js.exists():

            with tempfile.TemporaryDirectory() as tmp:
                save_heatmap(Path(tmp) / "roles.png", load_role_map(js, "--head-roles"))
                data = (Path(tmp) / "roles.png").read_bytes()
        else:
            continue
        out[f"head_roles_{model}.png"] = Plot(f"Head Forcing head roles ({model})",
                                              f"Role per layer and head from {js}: local, anchor or memory, with "
                                              "each head's sink mass, local mass and entropy.", data)
    return out


def make_plots(runs: Runs, board: pd.DataFrame, metrics: list[str], primary: str | None,
               roles_dir: Path) -> dict[str, Plot]:
    """File name -> plot, for the plots the runs have data for (the primary score's first)."""
    import matplotlib

    matplotlib.use("Agg")
    style = styles(list(runs.videos.method.unique()), runs.controls())
    plots = {PRIMARY_PLOT: primary_over_duration(board, primary, style),
             "over_time.png": over_time(runs, metrics, style),
             "quality_vs_kv.png": quality_vs_kv(board, metrics, style),
             "latency_vs_duration.png": latency_vs_duration(board, style)}
    return {name: p for name, p in plots.items() if p is not None} | head_roles(runs, roles_dir)
