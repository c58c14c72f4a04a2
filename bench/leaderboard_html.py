"""Leaderboard rendering: wide tables (methods x metrics) as Markdown and as one
self-contained HTML page (inline CSS, plots as base64 data URIs), and a PNG screenshot of
that page through headless chromium.

A table cell reads ``mean [lo, hi]``: the mean over videos of one whole-prefix value per
video, and the 95 % percentile bootstrap interval of that mean. A paired cell reads
``+diff [lo, hi] (n=pairs)``: the mean of per-video differences method - baseline on
videos matched by (prompt, seed, seconds), and its bootstrap interval.
"""

from __future__ import annotations

import base64
import html
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import ConfigError
from bench.leaderboard import Runs, label_of
from bench.leaderboard_plots import Plot

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
ARROWS = {True: " ↑", False: " ↓"}
CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #222; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
p.meta, p.note { max-width: 1100px; color: #444; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
div.scroll { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; vertical-align: top;
         font-size: 13px; }
th { background: #f4f4f4; } tbody th { text-align: left; }
thead th { white-space: normal; overflow-wrap: break-word; max-width: 110px; font-size: 12px; }
span.ci { color: #666; font-size: 11px; }
td.best { background: #e3f4e1; font-weight: 600; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
figure img { max-width: 1300px; border: 1px solid #eee; }
figcaption { max-width: 900px; color: #555; font-size: 13px; }
footer { margin-top: 32px; color: #666; font-size: 12px; }
"""


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


def wide(board: pd.DataFrame, seconds: float, metrics: list[str], paired: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows = methods, columns = metric labels with direction arrows; returns the cell texts
    and a same-shaped boolean frame of best marks (all False for paired tables). The
    plain table ends with the column ``videos`` (most videos of a method at this duration); a
    cell based on fewer videos (a metric undefined for some) says its own ``(n=k)``."""
    part = board[(board.seconds == seconds) & board.metric.isin(metrics)]
    if paired:
        part = part[part.method != part.baseline]
    methods = sorted(part.method.unique())
    most = part.groupby("method")["videos"].max().reindex(methods).fillna(0).astype(int)
    cells, best = {}, {}
    for key in metrics:
        sub = part[part.metric == key].set_index("method").reindex(methods)
        name = column_name(board, key)
        videos = sub.videos.fillna(0).astype(int)
        if paired:
            d = decimals([*sub.diff_mean, *sub.diff_low, *sub.diff_high])
            cells[name] = [f"{fmt(m, d, True)} [{fmt(lo, d, True)}, {fmt(hi, d, True)}] (n={int(n)})" if n > 0 else "-"
                           for m, lo, hi, n in zip(sub.diff_mean, sub.diff_low, sub.diff_high, sub.pairs.fillna(0))]
        else:
            d = decimals([*sub["mean"], *sub.ci_low, *sub.ci_high])
            cells[name] = [(f"{fmt(m, d)} [{fmt(lo, d)}, {fmt(hi, d)}]" + (f" (n={n})" if n < most.iloc[i] else ""))
                           if n > 0 else "-"
                           for i, (m, lo, hi, n) in enumerate(zip(sub["mean"], sub.ci_low, sub.ci_high, videos))]
        best[name] = [False] * len(methods) if paired else sub.best.fillna(False).astype(bool).tolist()
    table = pd.DataFrame(cells, index=pd.Index(methods, name="method"))
    marks = pd.DataFrame(best, index=table.index)
    if not paired:
        table["videos"] = most.astype(str)
        marks["videos"] = False
    return table, marks


def interval_note(runs: Runs, resamples: int, seed: int) -> str:
    """What a cell's numbers are: mean over n videos, percentile bootstrap, B resamples."""
    n = runs.videos.drop_duplicates(["method", "seconds", "prompt", "seed"]).groupby(["method", "seconds"]).size()
    span = f"{n.min()}" if n.min() == n.max() else f"{n.min()} to {n.max()}"
    return (f"Cells: mean over videos (prompt x seed; one whole-prefix value per video, never frame-weighted) "
            f"[95 % percentile bootstrap interval over videos: n = {span} videos per method and duration, "
            f"B = {resamples} resamples, seed {seed}]. Fewer videos where a metric is undefined for some. "
            f"Marked: best of its column by the metric's direction (↑ higher is better, ↓ lower is better; "
            f"no arrow: no direction, no mark). Paired: mean of per-video differences method - baseline on videos "
            f"matched by (prompt, seed, seconds) [percentile bootstrap 95 % interval over the n pairs, "
            f"B = {resamples}].")


def md_table(table: pd.DataFrame, marks: pd.DataFrame) -> str:
    head = ["method", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in table.index:
        cells = [f"**{v}**" if marks.loc[method, c] else v for c, v in table.loc[method].items()]
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return "\n".join(lines)


def durations(board: pd.DataFrame) -> list[float]:
    return sorted(float(s) for s in board.seconds.unique())


def to_markdown(runs: Runs, board: pd.DataFrame, metrics: list[str], baseline: str | None, note: str,
                plots: dict[str, Plot]) -> str:
    """leaderboard.md: per duration the table and the paired table, then links to the plots."""
    lines = ["# Leaderboard", "", runs.describe(), "", note, ""]
    for seconds in durations(board):
        lines += [f"## {seconds:g} s", "", md_table(*wide(board, seconds, metrics, paired=False)), ""]
        if baseline is not None:
            lines += [f"### {seconds:g} s: paired difference vs {baseline}", "",
                      md_table(*wide(board, seconds, metrics, paired=True)), ""]
    lines += ["## Plots", ""]
    for name, plot in plots.items():
        lines += [f"![{plot.title}](leaderboard_plots/{name})", "", plot.caption, ""]
    return "\n".join(lines)


def cell(text: str) -> str:
    """A table cell: the value, then its interval and (n=k) on smaller lines below."""
    value, sep, rest = text.partition(" [")
    interval, _, n = rest.partition("] ")
    lines = [f"[{interval.rstrip(']')}]"] + ([n] if n else []) if sep else []
    return html.escape(value) + "".join(f"<br><span class=\"ci\">{html.escape(x)}</span>" for x in lines)


def html_table(table: pd.DataFrame, marks: pd.DataFrame, css_class: str, table_id: str) -> str:
    e = html.escape
    # Break opportunities inside long metric keys, so headers wrap at "_" and "[".
    head = "".join(f"<th scope=\"col\">{e(c).replace('_', '_<wbr>').replace('[', '<wbr>[')}</th>"
                   for c in ["method", *table.columns])
    body = []
    for method in table.index:
        cells = "".join(("<td class=\"best\">" if marks.loc[method, c] else "<td>") + cell(v) + "</td>"
                        for c, v in table.loc[method].items())
        body.append(f"<tr data-method=\"{e(method)}\"><th scope=\"row\">{e(method)}</th>{cells}</tr>")
    return (f"<div class=\"scroll\"><table class=\"{css_class}\" id=\"{table_id}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render_html(runs: Runs, board: pd.DataFrame, metrics: list[str], baseline: str | None, note: str,
                plots: dict[str, Plot]) -> str:
    """One self-contained page: inline CSS, the tables, the plots as data URIs, run count and
    provenance. Table ids: ``board-<seconds>`` and ``paired-<seconds>`` ("." -> "_")."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>forcebench leaderboard</title>", f"<style>{CSS}</style></head><body>",
             "<h1>forcebench leaderboard</h1>", f"<p class=\"meta\" id=\"runs\" data-runs=\"{len(runs.finished)}\">"
             f"{e(runs.describe())}</p>", f"<p class=\"note\">{e(note)}</p>"]
    for seconds in durations(board):
        tag = f"{seconds:g}".replace(".", "_")
        parts += [f"<section><h2>{seconds:g} s</h2>",
                  html_table(*wide(board, seconds, metrics, paired=False), "board", f"board-{tag}")]
        if baseline is not None:
            parts += [f"<h3>Paired difference vs {e(baseline)}</h3>",
                      html_table(*wide(board, seconds, metrics, paired=True), "paired", f"paired-{tag}")]
        parts.append("</section>")
    parts.append("<section><h2>Plots</h2>")
    for name, plot in plots.items():
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(f"<figure id=\"plot-{e(Path(name).stem)}\"><img alt=\"{e(plot.title)}\" "
                     f"src=\"data:image/png;base64,{data}\"><figcaption><b>{e(plot.title)}.</b> "
                     f"{e(plot.caption)}</figcaption></figure>")
    parts += ["</section>", f"<footer>{len(runs.finished)} runs; provenance: "
              f"{e('; '.join(f'{k} ({n} runs)' for k, n in sorted(runs.provenance.items())) or 'not recorded')}"
              "</footer>", "</body></html>"]
    return "\n".join(parts) + "\n"


def find_chromium() -> str | None:
    """Path of a chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(html_path: Path, png_path: Path, size: tuple[int, int] = (1400, 3000), timeout: float = 120) -> Path:
    """Save a PNG screenshot (``size`` = window width, height in pixels) of ``html_path``
    rendered by headless chromium."""
    browser = find_chromium()
    if browser is None:
        raise ConfigError(f"--screenshot={str(png_path)!r}: no chromium browser on PATH; allowed: install "
                          "chromium (apt-get install chromium) or leave out --screenshot")
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                               "--virtual-time-budget=5000", f"--screenshot={png_path}",
                               Path(html_path).resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return png_path
