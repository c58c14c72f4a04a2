"""Leaderboard: exact means, best marks and paired differences on synthetic run directories;
the primary score's ranking, the band of negative controls and the validity check at the
top; excluded runs; one-line errors; self-contained HTML checked in a real headless browser
(chromium, installed once when missing; skipped when it cannot be)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthetic_runs import write_run as write_run_dir

from bench import cli
from bench.report.leaderboard import build_board, cell_rng, main, resolve_primary
from bench.report.leaderboard_html import find_chromium
from bench.report.leaderboard_plots import pareto_front, segment_means
from bench.report.runs import load, method_labels
from bench.report.stats import bootstrap_mean, paired_bootstrap
from bench.report.validity import check_controls, validity_markdown
from core.errors import ConfigError

# Base values; the two controls come last so that the methods' formulas below keep their index.
METHODS = {"full": 0.90, "head_forcing": 0.80, "sliding_window": 0.85, "control_stale": 0.95,
           "control_no_history": 0.70}
CONTROLS = ("control_stale", "control_no_history")
# continuation_psnr (the primary score): head_forcing > sliding_window > full among the methods;
# control_stale far below every method, control_no_history above sliding_window (NOT BEATEN).
CONTINUATION = {"full": 20.0, "head_forcing": 24.0, "sliding_window": 22.0, "control_stale": 10.0,
                "control_no_history": 23.0}
PROMPTS = ("p0", "p1", "p2")
SEEDS = (0, 1)
DURATIONS = (5.0, 10.0)
DIRECTIONS = {"continuation_psnr": True, "palette_fidelity": True, "sprite_presence_ratio": True,
              "drift[toy-clip-text]": False, "flow_magnitude[flow-blockmatch]": None, "latency_mean_s": False,
              "latency_p50_s": False, "kv_bytes": False}


def video_values(method: str, prompt: int, seed: int, seconds: float) -> dict[str, float]:
    """Known whole-prefix values of one synthetic video."""
    base, idx = METHODS[method], list(METHODS).index(method)
    return {
        "continuation_psnr": CONTINUATION[method] - 0.1 * seconds + 0.5 * prompt + 0.25 * seed + 0.05 * idx * seed,
        "palette_fidelity": base - 0.001 * seconds + 0.01 * prompt + 0.002 * seed * (1 + idx),
        "sprite_presence_ratio": float("nan") if (prompt, seed) == (2, 1) else base + 0.01 * prompt,
        "drift[toy-clip-text]": base + 0.1 * prompt,  # lower is better: head_forcing best among the methods
        "flow_magnitude[flow-blockmatch]": 10 * base,  # no direction: never marked
        "latency_mean_s": 0.05 + 0.01 * idx + 0.001 * seconds + 0.0001 * prompt,
        "latency_p50_s": 0.04 + 0.01 * idx + 0.001 * seconds + 0.0001 * prompt,
        "latency_spread": 0.9 if (method, prompt) == ("head_forcing", 0) else 0.1,  # timed under load: flagged
        "kv_bytes": 0.0 if method == "control_no_history" else float((1 + idx) * 2**20 * seconds / 5),
    }


def write_run(root: Path, method: str, prompt: int, seed: int, status: str = "ok", name: str | None = None,
              values=video_values) -> Path:
    return write_run_dir(root, method, PROMPTS[prompt], seed, DURATIONS,
                         lambda seconds: values(method, prompt, seed, seconds), DIRECTIONS, status, name)


def write_sweep(root: Path) -> Path:
    """5 methods (2 of them controls) x 3 prompts x 2 seeds (x 2 durations), plus runs that
    must be left out."""
    for method in METHODS:
        for prompt in range(len(PROMPTS)):
            for seed in SEEDS:
                write_run(root, method, prompt, seed)

    def terrible(method, prompt, seed, seconds):
        return {k: -100.0 for k in video_values("full", prompt, seed, seconds)}

    write_run(root, "full", 0, 9, status="failed", values=terrible)
    write_run(root, "ghost", 1, 0, values=terrible, name="toy__ghost__p1__s0__0000000000.tmp-123")  # staging dir of a killed run
    (root / "toy__full__p2__s7__1111111111").mkdir()  # started, never finished
    (root / "toy__full__p2__s7__1111111111" / "config.yaml").write_text("seed: 7\n")
    (root / "_hydra").mkdir()
    return root


def expected_mean(key: str, method: str, seconds: float, scale: float = 1.0) -> float:
    vals = [video_values(method, p, s, seconds)[key] * scale for p in range(len(PROMPTS)) for s in SEEDS]
    return float(np.nanmean(vals))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def board(sweep) -> pd.DataFrame:
    return build_board(load(sweep), list(DIRECTIONS), "sliding_window", 1000, 0).set_index(
        ["method", "seconds", "metric"])


def test_means_are_per_video_and_exact(board):
    assert board.loc[("full", 5.0, "palette_fidelity"), "mean"] == pytest.approx(0.906)  # 0.90 - 0.005 + 0.01 + 0.001
    for method in METHODS:
        for seconds in DURATIONS:
            row = board.loc[(method, seconds, "palette_fidelity")]
            assert row["mean"] == pytest.approx(expected_mean("palette_fidelity", method, seconds))
            assert row.videos == 6
            kv = board.loc[(method, seconds, "kv_bytes")]
            assert kv["mean"] == pytest.approx(expected_mean("kv_bytes", method, seconds, 2.0**-20))  # MiB
            assert kv.label == "kv [MiB]"
            assert board.loc[(method, seconds, "latency_mean_s"), "mean"] == pytest.approx(
                expected_mean("latency_mean_s", method, seconds, 1000.0))  # ms
            assert board.loc[(method, seconds, "latency_p50_s"), "noisy"] == pytest.approx(
                2 / 6 if method == "head_forcing" else 0.0)  # the runs of prompt p0 (2 seeds) of 6
            assert np.isnan(board.loc[(method, seconds, "palette_fidelity"), "noisy"])
    ratio = board.loc[("full", 5.0, "sprite_presence_ratio")]
    assert ratio.videos == 5 and ratio["mean"] == pytest.approx(expected_mean("sprite_presence_ratio", "full", 5.0))


def test_best_marks_follow_each_metric_direction(board):
    best = board[board.best].reset_index()
    marked = {(r.seconds, r.metric): r.method for r in best.itertuples()}
    assert len(marked) == len(best)  # no ties in this sweep: one mark per column
    for seconds in DURATIONS:
        assert marked[(seconds, "palette_fidelity")] == "full"  # higher is better
        assert marked[(seconds, "drift[toy-clip-text]")] == "head_forcing"  # lower is better
        assert marked[(seconds, "latency_mean_s")] == "full"
        assert marked[(seconds, "kv_bytes")] == "full"
        assert (seconds, "flow_magnitude[flow-blockmatch]") not in marked  # no direction, no mark
        assert marked[(seconds, "continuation_psnr")] == "head_forcing"
    # control_stale has the highest palette fidelity and control_no_history the lowest drift and
    # no KV at all, but controls are not contenders: never marked
    assert not best.method.isin(CONTROLS).any()
    assert board.loc[("control_stale", 5.0, "palette_fidelity"), "mean"] > board.loc[("full", 5.0, "palette_fidelity"), "mean"]
    assert board.loc[("control_no_history", 5.0, "kv_bytes"), "mean"] == 0.0
    assert board.xs("control_stale", level="method").control.all() and not board.xs("full", level="method").control.any()


def test_paired_differences_match_prompt_seed_and_seconds(board):
    # full - sliding_window per video: 0.05 + 0.002 seed (1 - 3) -> 0.05 (seed 0), 0.046 (seed 1).
    row = board.loc[("full", 5.0, "palette_fidelity")]
    assert row.pairs == 6 and row.baseline == "sliding_window"
    assert row.diff_mean == pytest.approx(0.048)
    assert 0.046 - 1e-12 <= row.diff_low <= 0.048 <= row.diff_high <= 0.05 + 1e-12
    hf = board.loc[("head_forcing", 10.0, "drift[toy-clip-text]")]
    assert hf.diff_mean == pytest.approx(-0.05) and hf.diff_low == pytest.approx(-0.05)  # constant difference
    assert board.loc[("full", 10.0, "sprite_presence_ratio"), "pairs"] == 5  # the NaN video has no pair
    base = board.loc[("sliding_window", 5.0, "palette_fidelity")]
    assert base.pairs == 0 and np.isnan(base.diff_mean)


def test_cell_intervals_come_from_bench_stats_with_a_stream_per_cell(sweep):
    board = build_board(load(sweep), ["palette_fidelity"], "sliding_window", 300, 4).set_index(["method", "seconds"])
    x = [video_values("full", p, s, 5.0)["palette_fidelity"] for p in range(len(PROMPTS)) for s in SEEDS]
    row = board.loc[("full", 5.0)]
    assert (row["mean"], row.ci_low, row.ci_high) == pytest.approx(
        bootstrap_mean(x, 300, cell_rng(4, "full", 5.0, "palette_fidelity")))
    base = [video_values("sliding_window", p, s, 5.0)["palette_fidelity"] for p in range(len(PROMPTS)) for s in SEEDS]
    assert (row.diff_mean, row.diff_low, row.diff_high) == pytest.approx(paired_bootstrap(
        np.subtract(x, base), 300, cell_rng(4, "full", 5.0, "palette_fidelity", "paired", "sliding_window")))


def test_board_is_deterministic_given_the_seed(sweep):
    runs = load(sweep)
    a, b = (build_board(runs, ["palette_fidelity"], "full", 300, 4) for _ in range(2))
    pd.testing.assert_frame_equal(a, b)
    c = build_board(runs, ["palette_fidelity"], "full", 300, 5)
    assert not np.allclose(a.ci_low, c.ci_low)


def test_unfinished_and_failed_runs_are_left_out(sweep):
    runs = load(sweep)
    assert len(runs.finished) == 30 and len(runs.excluded) == 3
    assert runs.controls() == ["control_no_history", "control_stale"]
    assert set(runs.videos.method) == set(METHODS)  # the ghost only had a staging dir
    assert not (runs.videos.seed == 9).any() and runs.videos.palette_fidelity.min() > 0
    assert runs.directions["flow_magnitude[flow-blockmatch]"] is None and runs.directions["drift[toy-clip-text]"] is False


def test_segment_curves_use_the_longest_duration(sweep):
    seconds, means = segment_means(load(sweep), ["palette_fidelity", "drift[toy-clip-text]"])
    assert seconds == 10.0 and set(means.metric) == {"palette_fidelity"}
    full = means[means.method == "full"].set_index("segment")
    assert list(full.centre_s) == [2.5, 7.5]
    assert full.value[0] == pytest.approx(expected_mean("palette_fidelity", "full", 10.0))
    assert full.value[1] == pytest.approx(expected_mean("palette_fidelity", "full", 10.0) + 0.01)


def test_pareto_front_and_method_labels():
    kv, quality = np.array([1.0, 2.0, 3.0, 2.5]), np.array([0.5, 0.7, 0.9, 0.6])
    assert pareto_front(kv, quality, True).tolist() == [True, True, True, False]
    assert pareto_front(kv, quality, False).tolist() == [True, False, False, False]
    labels = method_labels([("sink", {"budget_frames": 4}), ("sink", {"budget_frames": 8}), ("full", {})])
    assert labels == ["sink(budget_frames=4)", "sink(budget_frames=8)", "full"]


def one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(["leaderboard", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("forcebench: error: ")
    return err


def test_bad_input_is_a_one_line_config_error(sweep, tmp_path, capsys):
    err = one_line_error(capsys, [str(tmp_path / "nope")])
    assert "nope" in err and "no such directory" in err and "allowed:" in err
    err = one_line_error(capsys, [str(sweep), "--out", str(tmp_path), "--baseline", "sinkk"])
    assert "--baseline='sinkk'" in err and "allowed: control_no_history, control_stale, full, head_forcing" in err
    err = one_line_error(capsys, [str(sweep), "--out", str(tmp_path), "--metrics", "psnr"])
    assert "--metrics='psnr'" in err and "palette_fidelity" in err
    (tmp_path / "empty").mkdir()
    assert "no finished run" in one_line_error(capsys, [str(tmp_path / "empty")])
    err = one_line_error(capsys, [str(sweep), "--out", str(tmp_path), "--primary", "psnr"])
    assert "--primary='psnr': not a metric of the runs with a direction; allowed: continuation_psnr" in err
    err = one_line_error(capsys, [str(sweep), "--out", str(tmp_path), "--primary", "flow_magnitude[flow-blockmatch]"])
    assert "--primary='flow_magnitude[flow-blockmatch]'" in err  # no direction: cannot rank
    assert "--alpha=1.5: allowed: 0 < alpha < 1" in one_line_error(capsys, [str(sweep), "--alpha", "1.5"])
    with pytest.raises(ConfigError, match="--bootstrap=0"):
        main([str(sweep), "--bootstrap", "0"])


@pytest.fixture(scope="module")
def written(sweep, tmp_path_factory) -> Path:
    """One CLI run over the synthetic sweep, with a head-role heatmap to embed. alpha 0.05:
    6 pairs cannot reach p < 0.01 (the smallest exact p is 1/64)."""
    out, roles = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("roles")
    Image.new("RGB", (40, 20), (200, 120, 40)).save(roles / "toy.png")
    assert main([str(sweep), "--out", str(out), "--bootstrap", "200", "--seed", "3", "--alpha", "0.05",
                 "--head-roles", str(roles)]) == 0
    return out


def test_outputs_tables_and_plots(written):
    table = pd.read_csv(written / "leaderboard.csv")
    assert list(table.columns) == ["method", "control", "seconds", "metric", "label", "higher_is_better", "videos",
                                   "mean", "ci_low", "ci_high", "best", "baseline", "pairs", "diff_mean", "diff_low",
                                   "diff_high", "diff_mdd", "noisy"]
    assert set(table.metric) == {"continuation_psnr", "palette_fidelity", "sprite_presence_ratio",
                                 "drift[toy-clip-text]", "latency_p50_s", "kv_bytes"}  # the default keys these runs have
    md = (written / "leaderboard.md").read_text()
    assert md.count("!33%") == len(DURATIONS) and "timed under changing load" in md  # head_forcing's latency cells
    assert len(table) == 5 * 2 * 6
    assert set(table[table.control].method) == set(CONTROLS)
    md = (written / "leaderboard.md").read_text()
    assert "percentile bootstrap" in md and "n = 6 videos" in md and "B = 200 resamples" in md
    assert "**0.9060 [" in md  # full's palette fidelity at 5 s, marked best
    assert "paired difference vs sliding_window" in md and "(n=5)" in md
    assert "30 finished runs" in md and "3 unfinished or failed" in md and "git abc123def456" in md
    plots = sorted(p.name for p in (written / "leaderboard_plots").iterdir())
    assert plots == ["head_roles_toy.png", "latency_vs_duration.png", "over_time.png", "primary_vs_duration.png",
                     "quality_vs_kv.png"]
    assert all(Image.open(written / "leaderboard_plots" / p).size[0] > 0 for p in plots)


def md_rows(md: str, heading: str) -> list[str]:
    """Method names of the first table under ``heading`` (a whole line), in order."""
    lines = md.split(f"\n{heading}\n", 1)[1].split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next(i for i, ln in enumerate(lines[start:], start) if not ln.startswith("|"))
    return [row.split("|")[1].strip() for row in lines[start + 2:end]]


def test_markdown_opens_with_the_check_then_ranks_by_the_primary_score(written):
    md = (written / "leaderboard.md").read_text()
    sections = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert sections == ["## Validity check: negative controls", "## Primary score: continuation_psnr ↑ at 10 s",
                        "## 10 s", "## 5 s", "## Plots"]  # the check first, longer durations first
    # continuation_psnr at 10 s: head_forcing 24, sliding_window 22, full 20 (minus 1, plus prompt/seed terms)
    for seconds in ("10", "5"):
        assert md_rows(md, f"## {seconds} s") == ["head_forcing", "sliding_window", "full"]
        controls = md_rows(md, f"### {seconds} s: negative controls")
        assert [c.split(" ")[0] for c in controls] == ["control_no_history", "control_stale"]  # their own band
    assert md_rows(md, "### 10 s: paired difference vs sliding_window") == ["head_forcing", "full"]
    # the first metric column is the primary score
    header = md.split("\n## 10 s\n", 1)[1].split("\n")[1]
    assert header.startswith("| method | continuation_psnr ↑ | palette_fidelity ↑ |")
    # the check: control_stale is 12 dB below sliding_window in every pair (p = 1/64), control_no_history
    # is above it; sink is not in these runs
    assert "**FAIL: NOT BEATEN on continuation_psnr at 10 s: control_no_history by sliding_window.**" in md
    assert "References not in these runs (left out): sink." in md
    # reference - control = 12 - 0.05 seed: +12 (seed 0), +11.95 (seed 1)
    stale = re.search(r"\| control_stale \| sliding_window \| 6 \| \+([\d.]+) \[\+([\d.]+), \+([\d.]+)\] \| "
                      r"0.0156 \| 0.0156 \| [\d.]+ \| PASS \|", md)  # p = 1/64: every pair favours the reference
    assert stale and float(stale[1]) == pytest.approx(11.975, abs=0.006)
    assert 11.95 <= float(stale[2]) <= float(stale[1]) <= float(stale[3]) <= 12.0
    assert "| **control_no_history** | **sliding_window** | **6** | **-1.05 [" in md  # -1 - 0.05 seed (1 + 1)
    assert "**FAIL: the control ties or wins on continuation_psnr**" in md
    assert md_rows(md, "## Primary score: continuation_psnr ↑ at 10 s") == ["1", "2", "3"]  # the rank column
    assert "| 1 | head_forcing | 23.65 [" in md
    assert "control_no_history **NOT BEATEN** (by sliding_window)" in md.split("\n### 10 s: negative controls\n")[1]
    assert "NOT BEATEN" not in md.split("\n## 5 s\n")[1].split("## Plots")[0]  # checked at the longest duration only
    assert "control_stale **NOT BEATEN**" not in md


def test_the_leaderboard_check_is_the_validate_function(sweep, written):
    runs = load(sweep)
    same = validity_markdown(check_controls(runs, "continuation_psnr", 10.0, ["sliding_window"], 0.05, 200, 3))
    table_and_test = same[same.index("| control | reference |"):]  # the leaderboard adds the note on sink
    assert table_and_test in (written / "leaderboard.md").read_text()


def test_primary_option_and_default(sweep, tmp_path):
    runs = load(sweep)
    assert resolve_primary(runs, None) == "continuation_psnr"
    assert resolve_primary(runs, "drift[toy-clip-text]") == "drift[toy-clip-text]"
    runs.videos = runs.videos.drop(columns="continuation_psnr")
    assert resolve_primary(runs, None) is None  # the runs lack it: no primary, rows in name order
    assert main([str(sweep), "--out", str(tmp_path), "--bootstrap", "20", "--primary", "palette_fidelity",
                 "--metrics", "kv_bytes"]) == 0
    md = (tmp_path / "leaderboard.md").read_text()
    assert md_rows(md, "## 10 s") == ["full", "sliding_window", "head_forcing"]  # palette fidelity, higher first
    assert md.split("\n## 10 s\n", 1)[1].split("\n")[1] == "| method | palette_fidelity ↑ | kv [MiB] ↓ | videos |"
    assert "## Validity check: negative controls" in md and "on palette_fidelity at 10 s" in md


def test_html_is_self_contained(written):
    page = (written / "leaderboard.html").read_text()
    srcs = re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:|file:|//)""", page)
    assert "<link" not in page and "<style>" in page
    assert "B = 200 resamples" in page and "30 runs" in page


def test_html_opens_with_the_check_and_the_primary_score(written):
    page = (written / "leaderboard.html").read_text()
    order = [page.index(x) for x in ('id="validity"', 'id="primary"', 'id="plot-primary_vs_duration"',
                                     'id="board-10"', 'id="board-5"', 'id="plot-over_time"')]
    assert order == sorted(order)
    assert '<p class="verdict fail">' in page
    assert re.search(r'<tr class="fail" data-control="control_no_history">', page)
    assert re.search(r'<tr class="pass" data-control="control_stale">', page)
    flagged = re.findall(r'id="(\w+-\d+)".*?(?=</table>)', page, re.S)
    assert flagged  # tables found
    for table_id in ("primary-10", "board-10", "paired-10"):
        table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
        assert '<tr class="not-beaten" data-method="control_no_history" data-not-beaten="sliding_window">' in table
        assert table.index("<tbody class=\"controls\">") < table.index('data-method="control_no_history"')
    assert "not-beaten" not in page.split('id="board-5"', 1)[1].split("</table>", 1)[0]


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless chromium; installed with apt once when missing (as root), else skipped."""
    path = find_chromium()
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["sh", "-c", "apt-get update && apt-get install -y chromium"], env=env, timeout=900,
                       capture_output=True, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"chromium could not be installed: {str(err).splitlines()[0]}")
    return find_chromium() or pytest.skip("chromium installed but not on PATH")


PROBE = """<script>
window.addEventListener("load", () => {
  const tables = {};
  for (const t of document.querySelectorAll("table[id]"))
    tables[t.id] = [...t.tBodies].map(b => [...b.rows].filter(r => r.dataset.method).map(r => r.dataset.method));
  const red = [...document.querySelectorAll("tr.not-beaten")].map(
    r => [r.closest("table").id, r.dataset.method, getComputedStyle(r.cells[1]).color]);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({widths: [...document.images].map(i => i.naturalWidth), tables, red});
  document.body.appendChild(pre);
});
</script>"""


def test_html_renders_in_headless_chromium(written, chromium, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text((written / "leaderboard.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<h1>forcebench leaderboard</h1>" in dom
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert len(result["widths"]) == 5 and all(w > 0 for w in result["widths"])
    methods, controls = ["head_forcing", "sliding_window", "full"], ["control_no_history", "control_stale"]
    assert result["tables"] == {"validity-table": [[]], "primary-10": [methods, controls],
                                "board-10": [methods, controls], "paired-10": [["head_forcing", "full"], controls],
                                "board-5": [methods, controls], "paired-5": [["head_forcing", "full"], controls]}
    red = "rgb(176, 0, 0)"
    assert result["red"] == [[t, "control_no_history", red] for t in ("primary-10", "board-10", "paired-10")]


def test_screenshot_flag_saves_the_rendered_page(sweep, chromium, tmp_path):
    shot = tmp_path / "shots" / "leaderboard.png"
    assert main([str(sweep), "--out", str(tmp_path), "--bootstrap", "50", "--screenshot", str(shot)]) == 0
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1400)  # window 1400 x 3000
    assert len(np.unique(pixels)) > 16  # text, tables and plots, not a blank page
