"""Leaderboard as one self-contained HTML page (inline CSS, plots as base64 data URIs), and
a PNG screenshot of that page through headless chromium.

The page opens with the validity check of the negative controls (a control that is not
beaten in red), then the primary score at the longest duration (methods ranked, controls in
their own band) and its plot over duration, then the tables per duration, longest first
(methods, then the band of controls in the same table), then the other plots.
"""

from __future__ import annotations

import base64
import html
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from bench.errors import ConfigError
from bench.leaderboard_cells import Layout, column_name, primary_table, wide
from bench.leaderboard_plots import PRIMARY_PLOT, Plot
from bench.validity import rows as validity_rows
from bench.validity import verdict

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
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
tbody.controls tr.band th { background: #e8e8e8; color: #555; font-style: italic; text-align: left; }
tbody.controls th, tbody.controls td { color: #666; }
tr.not-beaten th, tr.not-beaten td, tr.fail th, tr.fail td { background: #fde2e2; color: #b00000; }
p.verdict { font-weight: 600; font-size: 15px; } p.verdict.pass { color: #1a7f37; } p.verdict.fail { color: #b00000; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
figure img { max-width: 1300px; border: 1px solid #eee; }
figcaption { max-width: 900px; color: #555; font-size: 13px; }
footer { margin-top: 32px; color: #666; font-size: 12px; }
"""
BAND = "Negative controls (deliberately broken; not ranked against the methods)"


def cell(text: str) -> str:
    """A table cell: the value, then its interval and (n=k) on smaller lines below."""
    value, sep, rest = text.partition(" [")
    interval, _, n = rest.partition("] ")
    lines = [f"[{interval.rstrip(']')}]"] + ([n] if n else []) if sep else []
    return html.escape(value) + "".join(f"<br><span class=\"ci\">{html.escape(x)}</span>" for x in lines)


def body_rows(table: pd.DataFrame, marks: pd.DataFrame | None, flagged: dict[str, list[str]],
              rank: bool | None = None) -> str:
    """Rows of one band; ``rank``: None no rank column, True the row's rank, False "-"."""
    e = html.escape
    out = []
    for i, method in enumerate(table.index):
        cells = "".join(("<td class=\"best\">" if marks is not None and marks.loc[method, c] else "<td>") + cell(v)
                        + "</td>" for c, v in table.loc[method].items())
        first = "" if rank is None else f"<td>{i + 1 if rank else '-'}</td>"
        if method in flagged:
            by = ", ".join(flagged[method])
            out.append(f"<tr class=\"not-beaten\" data-method=\"{e(method)}\" data-not-beaten=\"{e(by)}\">{first}"
                       f"<th scope=\"row\">{e(method)}<br><span class=\"ci\">NOT BEATEN by {e(by)}</span></th>"
                       f"{cells}</tr>")
        else:
            out.append(f"<tr data-method=\"{e(method)}\">{first}<th scope=\"row\">{e(method)}</th>{cells}</tr>")
    return "".join(out)


def html_table(bands: list[tuple[pd.DataFrame, pd.DataFrame | None]], flagged: dict[str, list[str]],
               css_class: str, table_id: str, ranked: bool = False) -> str:
    """One table: the methods' rows in the first tbody, the controls' (when any) in a second
    ``tbody.controls`` that opens with a band row. Columns come from the first band;
    ``ranked``: a first column with the methods' rank ("-" for controls)."""
    e = html.escape
    columns = (["rank"] if ranked else []) + ["method", *bands[0][0].columns]
    # Break opportunities inside long metric keys, so headers wrap at "_" and "[".
    head = "".join(f"<th scope=\"col\">{e(c).replace('_', '_<wbr>').replace('[', '<wbr>[')}</th>" for c in columns)
    bodies = [f"<tbody>{body_rows(*bands[0], {}, True if ranked else None)}</tbody>"]
    for table, marks in bands[1:]:
        if len(table):
            bodies.append(f"<tbody class=\"controls\"><tr class=\"band\"><th colspan=\"{len(columns)}\">"
                          f"{BAND}</th></tr>{body_rows(table, marks, flagged, False if ranked else None)}</tbody>")
    return (f"<div class=\"scroll\"><table class=\"{css_class}\" id=\"{table_id}\"><thead><tr>{head}</tr></thead>"
            f"{''.join(bodies)}</table></div>")


def figure(name: str, plot: Plot) -> str:
    e = html.escape
    data = base64.b64encode(plot.png).decode("ascii")
    return (f"<figure id=\"plot-{e(Path(name).stem)}\"><img alt=\"{e(plot.title)}\" "
            f"src=\"data:image/png;base64,{data}\"><figcaption><b>{e(plot.title)}.</b> "
            f"{e(plot.caption)}</figcaption></figure>")


def validity_section(layout: Layout) -> list[str]:
    """The check at the top: the verdict, one row per (control, reference), FAIL rows red."""
    e = html.escape
    parts = ["<section id=\"validity\"><h2>Validity check: negative controls</h2>"]
    v = layout.validity
    if v is None:
        return parts + [f"<p class=\"verdict\">{e(layout.why_not)}</p></section>"]
    parts.append(f"<p class=\"verdict {'pass' if v.passed else 'fail'}\">{e(verdict(v))}</p>")
    if v.missing_references:
        parts.append(f"<p class=\"note\">References not in these runs (left out): "
                     f"{e(', '.join(v.missing_references))}.</p>")
    rows = validity_rows(v)
    head = "".join(f"<th scope=\"col\">{e(c)}</th>" for c in (rows[0] if rows else []))
    body = "".join(f"<tr class=\"{'pass' if r['result'] == 'PASS' else 'fail'}\" data-control=\"{e(r['control'])}\">"
                   + "".join(f"<td>{e(x)}</td>" for x in r.values()) + "</tr>" for r in rows)
    return parts + [f"<div class=\"scroll\"><table id=\"validity-table\"><thead><tr>{head}</tr></thead>"
                    f"<tbody>{body}</tbody></table></div>", f"<p class=\"note\">{e(v.method_note())}</p></section>"]


def primary_section(layout: Layout) -> list[str]:
    if layout.primary is None:
        return []
    seconds = layout.durations()[0]
    tag = f"{seconds:g}".replace(".", "_")
    methods, controls = layout.order(seconds)
    bands = [(primary_table(layout, seconds, methods), None), (primary_table(layout, seconds, controls), None)]
    parts = [f"<section id=\"primary\"><h2>Primary score: {html.escape(column_name(layout.board, layout.primary))} "
             f"at {seconds:g} s</h2>",
             html_table(bands, layout.not_beaten(seconds), "primary", f"primary-{tag}", ranked=True)]
    plot = layout.primary_plot()
    if plot is not None:
        parts.append(figure(PRIMARY_PLOT, plot))
    return parts + ["</section>"]


def duration_section(layout: Layout, seconds: float) -> list[str]:
    tag = f"{seconds:g}".replace(".", "_")
    methods, controls = layout.order(seconds)
    flagged = layout.not_beaten(seconds)

    def bands(paired: bool) -> list:
        return [wide(layout.board, seconds, layout.metrics, paired, methods),
                wide(layout.board, seconds, layout.metrics, paired, controls)]

    parts = [f"<section><h2>{seconds:g} s</h2>", html_table(bands(False), flagged, "board", f"board-{tag}")]
    if layout.baseline is not None:
        parts += [f"<h3>Paired difference vs {html.escape(layout.baseline)}</h3>",
                  html_table(bands(True), flagged, "paired", f"paired-{tag}")]
    return parts + ["</section>"]


def render_html(layout: Layout) -> str:
    """One self-contained page. Table ids: ``validity-table``, ``primary-<longest seconds>``,
    ``board-<seconds>`` and ``paired-<seconds>`` ("." -> "_")."""
    e = html.escape
    runs = layout.runs
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>forcebench leaderboard</title>", f"<style>{CSS}</style></head><body>",
             "<h1>forcebench leaderboard</h1>", f"<p class=\"meta\" id=\"runs\" data-runs=\"{len(runs.finished)}\">"
             f"{e(runs.describe())}</p>"]
    parts += validity_section(layout) + primary_section(layout) + [f"<p class=\"note\">{e(layout.note)}</p>"]
    for seconds in layout.durations():
        parts += duration_section(layout, seconds)
    parts.append("<section><h2>Plots</h2>")
    parts += [figure(name, plot) for name, plot in layout.plots.items() if name != PRIMARY_PLOT]
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
