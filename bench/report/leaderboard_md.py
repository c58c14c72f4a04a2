"""leaderboard.md: the validity check of the negative controls first, then the primary score
at the longest duration (ranked) with its plot over duration, then per duration (longest
first) the methods' table, the band of negative controls and the paired tables, then the
plots. A control the check found not beaten is marked NOT BEATEN."""

from __future__ import annotations

import pandas as pd

from bench.report.leaderboard_cells import Layout, column_name, primary_table, wide
from bench.report.leaderboard_plots import PRIMARY_PLOT
from bench.report.validity import validity_markdown, verdict

NOT_BEATEN = "NOT BEATEN"


def md_table(table: pd.DataFrame, marks: pd.DataFrame | None = None, flagged: dict[str, list[str]] | None = None,
             ranked: bool = False) -> str:
    """A Markdown table; best marks in bold; a flagged (not beaten) row's name says by whom;
    ``ranked``: a first column with the row's rank."""
    flagged = flagged or {}
    head = (["rank"] if ranked else []) + ["method", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, method in enumerate(table.index):
        cells = [f"**{v}**" if marks is not None and marks.loc[method, c] else v for c, v in table.loc[method].items()]
        name = f"{method} **{NOT_BEATEN}** (by {', '.join(flagged[method])})" if method in flagged else method
        lines.append("| " + " | ".join(([str(i + 1)] if ranked else []) + [name, *cells]) + " |")
    return "\n".join(lines)


def validity_section(layout: Layout) -> list[str]:
    if layout.validity is None:
        return ["## Validity check: negative controls", "", layout.why_not, ""]
    return [validity_markdown(layout.validity, level=2)]


def primary_section(layout: Layout) -> list[str]:
    if layout.primary is None:
        return []
    seconds = layout.durations()[0]
    methods, controls = layout.order(seconds)
    name = column_name(layout.board, layout.primary)
    lines = [f"## Primary score: {name} at {seconds:g} s", "",
             f"Methods ranked by {layout.primary} (mean over videos [95 % bootstrap interval]).", "",
             md_table(primary_table(layout, seconds, methods), ranked=True), ""]
    if controls:
        lines += ["Negative controls (deliberately broken; not ranked against the methods):", "",
                  md_table(primary_table(layout, seconds, controls), flagged=layout.not_beaten(seconds)),
                  ""]
    plot = layout.primary_plot()
    if plot is not None:
        lines += [f"![{plot.title}](leaderboard_plots/{PRIMARY_PLOT})", "", plot.caption, ""]
    return lines


def duration_tables(layout: Layout, seconds: float) -> list[str]:
    """The methods' table at ``seconds`` and, below it, the band of negative controls."""
    methods, controls = layout.order(seconds)
    lines = [f"## {seconds:g} s", "", md_table(*wide(layout.board, seconds, layout.metrics, False, methods)), ""]
    if controls:
        lines += [f"### {seconds:g} s: negative controls", "",
                  md_table(*wide(layout.board, seconds, layout.metrics, False, controls), layout.not_beaten(seconds)),
                  ""]
    return lines


def paired_tables(layout: Layout, seconds: float) -> list[str]:
    if layout.baseline is None:
        return []
    methods, controls = layout.order(seconds)
    lines = [f"### {seconds:g} s: paired difference vs {layout.baseline}", "",
             "Mean difference (method - baseline) over videos paired on (prompt, seed), its 95 % paired bootstrap",
             "interval, the pairs n, and MDD: the smallest true difference this n detects (two-sided, alpha 0.05,",
             "power 0.8, normal approximation, bench/report/stats.py).", "",
             md_table(*wide(layout.board, seconds, layout.metrics, True, methods)), ""]
    if controls:
        lines += [f"### {seconds:g} s: negative controls, paired difference vs {layout.baseline}", "",
                  md_table(*wide(layout.board, seconds, layout.metrics, True, controls)), ""]
    return lines


def to_markdown(layout: Layout) -> str:
    lines = ["# Leaderboard", "", layout.runs.describe(), ""]
    lines += validity_section(layout) + primary_section(layout) + [layout.note, ""]
    for seconds in layout.durations():
        lines += duration_tables(layout, seconds) + paired_tables(layout, seconds)
    lines += ["## Plots", ""]
    for name, plot in layout.plots.items():
        if name != PRIMARY_PLOT:
            lines += [f"![{plot.title}](leaderboard_plots/{name})", "", plot.caption, ""]
    return "\n".join(lines)


def terminal_summary(layout: Layout) -> str:
    """What ``forcebench leaderboard`` prints: the longest duration's tables and the check's verdict."""
    lines = duration_tables(layout, layout.durations()[0])
    lines.append(verdict(layout.validity) if layout.validity is not None else layout.why_not)
    return "\n".join(lines).rstrip() + "\n"
