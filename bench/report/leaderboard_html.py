"""Leaderboard as one self-contained HTML page (inline CSS, plots as base64 data URIs), and
a PNG screenshot of that page through headless chromium.

The page opens with the validity check of the negative controls (a control that is not
beaten in red), then the primary score at the longest duration (methods ranked, controls in
their own band) and its plot over duration, then the tables per duration, longest first
(methods, then the band of controls in the same table), then the other plots.

The markup lives in ``templates/leaderboard.html.j2`` (Jinja2, autoescaped); this module
prepares plain data for it: strings, numbers, flags, lists and dicts, no HTML.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import pandas as pd

from bench.report.leaderboard_cells import Layout, column_name, primary_table, wide
from bench.report.leaderboard_plots import PRIMARY_PLOT, Plot
from bench.report.validity import rows as validity_rows
from bench.report.validity import verdict
from core.errors import ConfigError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
TEMPLATES = Path(__file__).with_name("templates")  # shipped as package data (pyproject.toml)
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    # On for .html.j2, and by default for any other name, so that a rename cannot turn it off.
    autoescape=jinja2.select_autoescape(("html", "html.j2"), default=True),
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def cell(text: str) -> dict:
    """A table cell: ``value``, then the ``lines`` below it (its interval and (n=k))."""
    value, sep, rest = text.partition(" [")
    interval, _, n = rest.partition("] ")
    return {"value": value, "lines": [f"[{interval.rstrip(']')}]"] + ([n] if n else []) if sep else []}


def body_rows(table: pd.DataFrame, marks: pd.DataFrame | None, flagged: dict[str, list[str]],
              rank: bool | None = None) -> list[dict]:
    """Rows of one band; ``rank``: None no rank column, True the row's rank, False "-";
    ``not_beaten``: the references a flagged (not beaten) control lost to, else empty."""
    return [{"method": method, "rank": None if rank is None else i + 1 if rank else "-",
             "not_beaten": flagged.get(method, []),
             "cells": [{**cell(v), "best": marks is not None and bool(marks.loc[method, c])}
                       for c, v in table.loc[method].items()]}
            for i, method in enumerate(table.index)]


def html_table(bands: list[tuple[pd.DataFrame, pd.DataFrame | None]], flagged: dict[str, list[str]],
               css_class: str, table_id: str, ranked: bool = False) -> dict:
    """One table: the methods' rows (``methods``), the controls' (``controls``, empty when
    none; the template puts them in ``tbody.controls`` under a band row). Columns come from
    the first band; ``ranked``: a first column with the methods' rank ("-" for controls)."""
    controls = [row for table, marks in bands[1:] if len(table)
                for row in body_rows(table, marks, flagged, False if ranked else None)]
    return {"css_class": css_class, "id": table_id,
            "columns": (["rank"] if ranked else []) + ["method", *bands[0][0].columns],
            "methods": body_rows(*bands[0], {}, True if ranked else None), "controls": controls}


def figure(name: str, plot: Plot) -> dict:
    """A plot as a figure: id ``plot-<stem>``, the PNG inline as a base64 data URI."""
    # Base64 has no character HTML escaping changes, so the URI goes through autoescape as is.
    return {"stem": Path(name).stem, "title": plot.title, "caption": plot.caption,
            "src": "data:image/png;base64," + base64.b64encode(plot.png).decode("ascii")}


def validity_section(layout: Layout) -> dict | None:
    """The check at the top: the verdict, one row per (control, reference); None when the
    check did not run (the page then says ``layout.why_not``)."""
    v = layout.validity
    if v is None:
        return None
    rows = validity_rows(v)
    return {"passed": v.passed, "verdict": verdict(v), "missing": list(v.missing_references),
            "columns": list(rows[0]) if rows else [], "note": v.method_note(),
            "rows": [{"passed": r["result"] == "PASS", "control": r["control"], "cells": list(r.values())}
                     for r in rows]}


def primary_section(layout: Layout) -> dict | None:
    """The primary score at the longest duration (ranked) and its plot; None without one."""
    if layout.primary is None:
        return None
    seconds = layout.durations()[0]
    tag = f"{seconds:g}".replace(".", "_")
    methods, controls = layout.order(seconds)
    bands = [(primary_table(layout, seconds, methods), None), (primary_table(layout, seconds, controls), None)]
    plot = layout.primary_plot()
    return {"name": column_name(layout.board, layout.primary), "seconds": f"{seconds:g}",
            "table": html_table(bands, layout.not_beaten(seconds), "primary", f"primary-{tag}", ranked=True),
            "figure": None if plot is None else figure(PRIMARY_PLOT, plot)}


def duration_section(layout: Layout, seconds: float) -> dict:
    """The tables at one duration: ``board``, and ``paired`` vs the baseline (or None)."""
    tag = f"{seconds:g}".replace(".", "_")
    methods, controls = layout.order(seconds)
    flagged = layout.not_beaten(seconds)

    def bands(paired: bool) -> list:
        return [wide(layout.board, seconds, layout.metrics, paired, methods),
                wide(layout.board, seconds, layout.metrics, paired, controls)]

    return {"seconds": f"{seconds:g}", "board": html_table(bands(False), flagged, "board", f"board-{tag}"),
            "paired": None if layout.baseline is None else html_table(bands(True), flagged, "paired",
                                                                      f"paired-{tag}")}


def render_html(layout: Layout) -> str:
    """One self-contained page. Table ids: ``validity-table``, ``primary-<longest seconds>``,
    ``board-<seconds>`` and ``paired-<seconds>`` ("." -> "_")."""
    runs = layout.runs
    return ENV.get_template("leaderboard.html.j2").render(
        runs=len(runs.finished), describe=runs.describe(), validity=validity_section(layout),
        why_not=layout.why_not, primary=primary_section(layout), note=layout.note,
        durations=[duration_section(layout, s) for s in layout.durations()], baseline=layout.baseline,
        figures=[figure(name, plot) for name, plot in layout.plots.items() if name != PRIMARY_PLOT],
        provenance=sorted(runs.provenance.items()))


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
