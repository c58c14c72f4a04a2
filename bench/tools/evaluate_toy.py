"""Acceptance gates of the toy backbone (``forcebench evaluate-toy``).

    forcebench evaluate-toy [RUNS_DIR] [--run] [--weights PATH] [--out results] [--bootstrap 2000]

Three sweeps of the runner (conf/sweep/toy_*.yaml; ``--run`` runs them into RUNS_DIR,
finished runs are skipped), every prompt of the toy set x seeds 0, 1, 2, each arm in its
own folder, read back with the reports' one reader (bench/report/runs.py):

1. ``inside/`` (toy_inside): free generation inside the trained horizon (21 frames, no
   prefix, full cache): pan consistency, sprite presence relative to the ground truth,
   spurious sprite colours, background (tile fidelity) PSNR.
2. ``cache_use_ground_truth/``, ``cache_use_other_seed/`` (toy_cache_use): the chunk after
   18 frames of context, this seed's ground truth or another seed's world of the same
   prompt; the gap in ``continuation_psnr``, paired on (prompt, seed).
3. ``headroom_18/``, ``headroom_16/`` (toy_headroom): after the ground-truth prefix, an
   oracle cache holding every frame the model was trained to attend to (an 18-frame
   window with true relative positions) against a 16-frame window, on the prompts whose
   views return beyond 16 frames; the gap in revisit PSNR beyond 16 frames at 30 and 60 s.

Writes results/toy_backbone.json and .md (every gate: mean, 95 % bootstrap interval from
bench/report/stats.py, the bar, met or not; and the same split by camera, canvas width and split).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cli_args import Options, option, parse
from bench.config import RunConfig
from bench.models.toy import SHIPPED_WEIGHTS
from bench.preflight import check_command_line
from bench.prompt_sets import load_prompt_set
from bench.report.runs import Runs, load, per_video
from bench.report.stats import bootstrap_mean, paired_bootstrap
from bench.run import execute
from core.files import atomic_write_text, write_json
from core.world import CANVAS_WIDTHS, parse_prompt

ARMS: dict[str, Callable[[RunConfig], str]] = {  # sweep preset -> the folder of each of its runs
    "toy_inside": lambda run: "inside",
    "toy_cache_use": lambda run: f"cache_use_{run.prefix_source}",
    "toy_headroom": lambda run: f"headroom_{run.method.budget_frames}",
}
# (measure, how it is computed, comparison, bar)
GATES = [
    ("pan_consistency", "inside, 5 s", ">=", 0.8),
    ("sprite_presence_ratio", "inside, 5 s", ">=", 0.8),
    ("spurious_colours", "inside, 5 s", "<=", 0.05),
    ("background_psnr", "inside, 5 s", ">=", 22.0),
    ("cache_gap_db", "continuation_psnr, ground truth - other seed, paired", ">=", 8.0),
    ("headroom_db_30s", "revisit_psnr_beyond, window 18 - window 16, paired, 30 s", ">=", 3.0),
    ("headroom_db_60s", "revisit_psnr_beyond, window 18 - window 16, paired, 60 s", ">=", 3.0),
]


def run_sweeps(root: Path, weights: str, overrides: tuple[str, ...] = ()) -> None:
    """Run the three acceptance sweeps (plus ``overrides``), each run into ``root/<arm>``; every
    job of every sweep is checked before the first one runs."""
    jobs = [(arm, run) for preset, arm in ARMS.items()
            for run in check_command_line([f"sweep={preset}", f"model.checkpoint={weights}", "progress=false",
                                           *overrides], multirun=True)]
    for arm, run in jobs:
        run.out_dir = str(root / arm(run))
        execute(run)


def videos(runs: Runs, key: str, seconds: float) -> pd.Series:
    """One value per (prompt, seed) of ``key`` at ``seconds`` in one arm's runs."""
    df = per_video(runs, key)
    return df[np.isclose(df.seconds, seconds)].set_index(["prompt", "seed"])["value"]


def measurements(root: Path) -> pd.DataFrame:
    """Every gate's measure per (prompt, seed): one row per video of the toy set."""
    arms = {name: load(root / name) for name in ("inside", "cache_use_ground_truth", "cache_use_other_seed",
                                                 "headroom_18", "headroom_16")}  # each arm's folder read once
    cols = {k: videos(arms["inside"], k, 5.0) for k in
            ("pan_consistency", "sprite_presence_ratio", "spurious_colours", "background_psnr")}
    right = videos(arms["cache_use_ground_truth"], "continuation_psnr", 5.25)
    other = videos(arms["cache_use_other_seed"], "continuation_psnr", 5.25)
    cols |= {"next_chunk_psnr_right": right, "next_chunk_psnr_other": other, "cache_gap_db": right - other}
    for s in (30, 60):
        oracle = videos(arms["headroom_18"], "revisit_psnr_beyond", s)
        window = videos(arms["headroom_16"], "revisit_psnr_beyond", s)
        cols |= {f"revisit_beyond_oracle_{s}s": oracle, f"revisit_beyond_window_{s}s": window,
                 f"headroom_db_{s}s": oracle - window}
    df = pd.DataFrame(cols).reset_index()
    texts = {e.id: e for e in load_prompt_set("toy").prompts}
    df["split"] = [texts[p].split for p in df.prompt]
    scenes = [parse_prompt(texts[p].text) for p in df.prompt]
    df["camera"] = ["still" if s.camera == "still" else "pans" for s in scenes]
    df["width"] = [CANVAS_WIDTHS[s.pattern] for s in scenes]
    return df


def gate_rows(df: pd.DataFrame, resamples: int = 2000) -> list[dict]:
    """One row per gate: mean over videos with a 95 % bootstrap interval, the bar, met or
    not (nothing measured is not met). The differences (gates measured "paired") are per
    video, so theirs is the paired interval."""
    out = []
    for measure, how, op, bar in GATES:
        values = df[measure].dropna().to_numpy(float) if measure in df else np.array([])
        interval = paired_bootstrap if "paired" in how else bootstrap_mean
        mean, lo, hi = interval(values, resamples, seed=0)
        met = bool(len(values)) and (mean >= bar if op == ">=" else mean <= bar)
        out.append({"measure": measure, "how": how, "bar": f"{op} {bar:g}", "n": int(len(values)),
                    "mean": float(mean), "lo": float(lo), "hi": float(hi), "met": bool(met)})
    return out


def _md_table(df: pd.DataFrame, cols: list[str], by: str) -> list[str]:
    lines = ["| " + " | ".join([by, *cols, "videos"]) + " |", "|" + "---|" * (len(cols) + 2)]
    for key, part in df.groupby(by, sort=True):
        cells = [f"{part[c].mean():.3f}" if part[c].notna().any() else "-" for c in cols]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {len(part)} |")
    return lines


def write_report(df: pd.DataFrame, out_dir: Path, command: str, resamples: int = 2000) -> list[dict]:
    gates = gate_rows(df, resamples)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "toy_backbone.json", {"command": command, "gates": gates, "rows": df.to_dict("records")})
    md = [
        "# Toy backbone: acceptance gates", "",
        f"Produced by `{command}` (the sweeps conf/sweep/toy_inside.yaml, toy_cache_use.yaml, toy_headroom.yaml;",
        "bench/tools/evaluate_toy.py). Means over videos (prompt x seed) with 95 % percentile bootstrap intervals",
        "(bench/report/stats.py); the differences are per video, so their intervals are paired.", "",
        "| measure | what | bar | mean | 95 % interval | videos | met |", "|---|---|---|---|---|---|---|",
    ]
    md += [f"| {g['measure']} | {g['how']} | {g['bar']} | {g['mean']:.3f} | [{g['lo']:.3f}, {g['hi']:.3f}] | "
           f"{g['n']} | {'yes' if g['met'] else '**no**'} |" for g in gates]
    md += ["", "## By camera", ""]
    md += _md_table(df, ["pan_consistency", "background_psnr", "next_chunk_psnr_right", "next_chunk_psnr_other",
                         "cache_gap_db"], "camera")
    md += ["", "## By canvas width (a panning view returns after this many frames)", ""]
    md += _md_table(df, ["pan_consistency", "next_chunk_psnr_right", "cache_gap_db", "revisit_beyond_oracle_60s",
                         "revisit_beyond_window_60s", "headroom_db_60s"], "width")
    md += ["", "## By split", ""]
    md += _md_table(df, ["pan_consistency", "sprite_presence_ratio", "background_psnr", "cache_gap_db"], "split")
    atomic_write_text(out_dir / "toy_backbone.md", "\n".join(md) + "\n")
    return gates


@dataclass
class EvaluateToyOptions(Options):
    """``forcebench evaluate-toy``'s options."""

    runs: str = option("runs/toy_acceptance", "folder of the acceptance sweeps", positional=True)
    run: bool = option(False, "first run the three sweeps (finished runs are skipped)")
    weights: str = option(SHIPPED_WEIGHTS, "toy DiT checkpoint the sweeps use")
    out: str = option("results", "folder of toy_backbone.json and .md", output="dir")
    bootstrap: int = option(2000, "bootstrap resamples B", minimum=1)


def main(argv: list[str]) -> int:
    args = parse("forcebench evaluate-toy", argv, EvaluateToyOptions, description=__doc__.splitlines()[0])
    root = Path(args.runs)
    if args.run:
        run_sweeps(root, args.weights)
    command = "forcebench evaluate-toy " + " ".join(argv)
    gates = write_report(measurements(root), Path(args.out), command, args.bootstrap)
    print(json.dumps(gates, indent=2))
    return 0
