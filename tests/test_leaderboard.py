"""Leaderboard: exact means, best marks and paired differences on synthetic run directories;
bootstrap intervals; excluded runs; one-line errors; self-contained HTML checked in a real
headless browser (chromium, installed once when missing; skipped when it cannot be)."""

from __future__ import annotations

import csv
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

from bench import cli
from bench.errors import ConfigError
from bench.leaderboard import bootstrap_ci, build_board, cell_rng, load, main, method_labels
from bench.leaderboard_html import find_chromium
from bench.leaderboard_plots import pareto_front, segment_means

METHODS = {"full": 0.90, "head_forcing": 0.80, "sliding_window": 0.85}
PROMPTS = ("p0", "p1", "p2")
SEEDS = (0, 1)
DURATIONS = (5.0, 10.0)
DIRECTIONS = {"palette_fidelity": True, "sprite_presence_ratio": True, "drift[toy-clip-text]": False,
              "flow_magnitude[flow-blockmatch]": None, "latency_mean_s": False, "kv_bytes": False}


def video_values(method: str, prompt: int, seed: int, seconds: float) -> dict[str, float]:
    """Known whole-prefix values of one synthetic video."""
    base, idx = METHODS[method], list(METHODS).index(method)
    return {
        "palette_fidelity": base - 0.001 * seconds + 0.01 * prompt + 0.002 * seed * (1 + idx),
        "sprite_presence_ratio": float("nan") if (prompt, seed) == (2, 1) else base + 0.01 * prompt,
        "drift[toy-clip-text]": base + 0.1 * prompt,  # lower is better: head_forcing best
        "flow_magnitude[flow-blockmatch]": 10 * base,  # no direction: never marked
        "latency_mean_s": 0.05 + 0.01 * idx + 0.001 * seconds + 0.0001 * prompt,
        "kv_bytes": float((1 + idx) * 2**20 * seconds / 5),
    }


def write_run(root: Path, method: str, prompt: int, seed: int, status: str = "ok", name: str | None = None,
              values=video_values) -> Path:
    """A run directory as bench/run.py writes it: summary.json, metrics.csv, meta.json."""
    name = name or f"toy__{method}__{PROMPTS[prompt]}__s{seed}__{len(method):05d}{prompt}{seed:04d}"
    run_dir = root / name
    run_dir.mkdir(parents=True)
    durations, rows = [], []
    for seconds in DURATIONS:
        v = values(method, prompt, seed, seconds)
        durations.append({"seconds_requested": seconds, "frames": int(4 * seconds), "seconds": seconds,
                          "latency_mean_s": v["latency_mean_s"], "kv_bytes": int(v["kv_bytes"]),
                          "kv_mib": v["kv_bytes"] / 2**20, "fps": 40.0, "metrics": v})
        common = {"run": name, "seconds": seconds, "frames": int(4 * seconds), "version": "v1", "status": "ok"}
        for key, value in v.items():
            rows.append({**common, "metric": key, "name": key, "encoder": "", "family": "f",
                         "higher_is_better": DIRECTIONS[key], "segment": -1, "start_s": "nan", "end_s": "nan",
                         "value": value})
        for i in range(int(seconds // 5)):  # 5 s segments; values rise by 0.01 a segment
            rows.append({**common, "metric": "palette_fidelity", "name": "palette_fidelity", "encoder": "",
                         "family": "oracle", "higher_is_better": True, "segment": i, "start_s": 5.0 * i,
                         "end_s": 5.0 * (i + 1), "value": v["palette_fidelity"] + 0.01 * i})
    summary = {"status": status, "run": name, "model": "toy", "method": method, "method_params": {"name": method},
               "prompt_id": PROMPTS[prompt], "seed": seed, "frames_generated": 40, "durations": durations}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "meta.json").write_text(json.dumps({"run": name, "git": {"commit": "abc123def4567890", "dirty": False}}))
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


def write_sweep(root: Path) -> Path:
    """3 methods x 3 prompts x 2 seeds (x 2 durations), plus runs that must be left out."""
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


def test_bootstrap_interval_contains_the_mean_is_deterministic_and_shrinks():
    rng = np.random.default_rng(7)
    x = rng.normal(0.5, 0.1, size=6)
    lo, hi = bootstrap_ci(x, 1000, cell_rng(0, "m", 5.0, "k"))
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, 1000, cell_rng(0, "m", 5.0, "k"))
    assert (lo, hi) != bootstrap_ci(x, 1000, cell_rng(1, "m", 5.0, "k"))
    wide_lo, wide_hi = bootstrap_ci(x, 1000, cell_rng(0, "a"))
    narrow_lo, narrow_hi = bootstrap_ci(np.tile(x, 10), 1000, cell_rng(0, "a"))  # same spread, 10x the videos
    assert narrow_hi - narrow_lo < 0.5 * (wide_hi - wide_lo)
    assert narrow_lo < x.mean() < narrow_hi
    assert bootstrap_ci(np.array([3.0]), 100, cell_rng(0)) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci(np.array([]), 100, cell_rng(0))))


def test_board_is_deterministic_given_the_seed(sweep):
    runs = load(sweep)
    a, b = (build_board(runs, ["palette_fidelity"], "full", 300, 4) for _ in range(2))
    pd.testing.assert_frame_equal(a, b)
    c = build_board(runs, ["palette_fidelity"], "full", 300, 5)
    assert not np.allclose(a.ci_low, c.ci_low)


def test_unfinished_and_failed_runs_are_left_out(sweep):
    runs = load(sweep)
    assert len(runs.finished) == 18 and len(runs.excluded) == 3
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
    assert "--baseline='sinkk'" in err and "allowed: full, head_forcing, sliding_window" in err
    err = one_line_error(capsys, [str(sweep), "--out", str(tmp_path), "--metrics", "psnr"])
    assert "--metrics='psnr'" in err and "palette_fidelity" in err
    (tmp_path / "empty").mkdir()
    assert "no finished run" in one_line_error(capsys, [str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="--bootstrap=0"):
        main([str(sweep), "--bootstrap", "0"])


@pytest.fixture(scope="module")
def written(sweep, tmp_path_factory) -> Path:
    """One CLI run over the synthetic sweep, with a head-role heatmap to embed."""
    out, roles = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("roles")
    Image.new("RGB", (40, 20), (200, 120, 40)).save(roles / "toy.png")
    assert main([str(sweep), "--out", str(out), "--bootstrap", "200", "--seed", "3", "--head-roles", str(roles)]) == 0
    return out


def test_outputs_tables_and_plots(written):
    table = pd.read_csv(written / "leaderboard.csv")
    assert list(table.columns) == ["method", "seconds", "metric", "label", "higher_is_better", "videos", "mean",
                                   "ci_low", "ci_high", "best", "baseline", "pairs", "diff_mean", "diff_low",
                                   "diff_high"]
    assert set(table.metric) == {"palette_fidelity", "sprite_presence_ratio", "drift[toy-clip-text]",
                                 "latency_mean_s", "kv_bytes"}  # the default keys these runs have
    assert len(table) == 3 * 2 * 5
    md = (written / "leaderboard.md").read_text()
    assert "percentile bootstrap" in md and "n = 6 videos" in md and "B = 200 resamples" in md
    assert "**0.9060 [" in md  # full's palette fidelity at 5 s, marked best
    assert "paired difference vs sliding_window" in md and "(n=5)" in md
    assert "18 finished runs" in md and "3 unfinished or failed" in md and "git abc123def456" in md
    plots = sorted(p.name for p in (written / "leaderboard_plots").iterdir())
    assert plots == ["head_roles_toy.png", "latency_vs_duration.png", "over_time.png", "quality_vs_kv.png"]
    assert all(Image.open(written / "leaderboard_plots" / p).size[0] > 0 for p in plots)


def test_html_is_self_contained(written):
    page = (written / "leaderboard.html").read_text()
    srcs = re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:|file:|//)""", page)
    assert "<link" not in page and "<style>" in page
    assert "B = 200 resamples" in page and "18 runs" in page


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
  for (const t of document.querySelectorAll("table")) tables[t.id] = [...t.tBodies[0].rows].map(r => r.dataset.method);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({widths: [...document.images].map(i => i.naturalWidth), tables});
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
    assert len(result["widths"]) == 4 and all(w > 0 for w in result["widths"])
    methods = sorted(METHODS)
    assert result["tables"] == {"board-5": methods, "paired-5": ["full", "head_forcing"],
                                "board-10": methods, "paired-10": ["full", "head_forcing"]}


def test_screenshot_flag_saves_the_rendered_page(sweep, chromium, tmp_path):
    shot = tmp_path / "shots" / "leaderboard.png"
    assert main([str(sweep), "--out", str(tmp_path), "--bootstrap", "50", "--screenshot", str(shot)]) == 0
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3000, 1400)  # window 1400 x 3000
    assert len(np.unique(pixels)) > 16  # text, tables and plots, not a blank page
