"""Acceptance measurements of the trained toy backbone (``forcebench evaluate-toy``).

Three gates, each measured over every prompt of a prompt set x every seed:

1. Inside the horizon (free rollouts of 21 frames, full cache): pan consistency, sprite
   presence relative to the ground truth, spurious sprite colours, background (tile
   fidelity) PSNR.
2. Uses its cache: next-chunk PSNR after 18 ground-truth frames minus the same after
   the first 18 frames of another seed of the same prompt (bench/toy_diagnostic.py).
3. Memory has headroom: after an 18-frame ground-truth prefix, rollouts to 60 s with an
   oracle cache that holds every frame the model was trained to attend to (a sliding
   window of horizon - chunk = 18 frames, true relative positions) and with a 16-frame
   sliding window; revisit PSNR beyond 16 frames at 30 s and 60 s, paired per video.

Writes results/toy_backbone.json (every row) and results/toy_backbone.md (gates, paired
intervals from bench/stats.py, met or not), plus a contact sheet and GIFs of one video.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bench.models.toy import SHIPPED_WEIGHTS, ToyConfig, ToyDiT
from bench.prompt_sets import load_prompt_set
from bench.records import atomic_write_text, write_json
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.stats import paired_bootstrap
from bench.toy_diagnostic import cache_gap
from bench.video import save_gif, to_uint8
from bench.world import simulate
from methods import build_method
from methods.full import FullConfig
from methods.sliding_window import SlidingWindowConfig
from metrics.oracle import oracle_scores

WINDOW = 16  # the equal-budget sweep's frames a head
SECONDS = (30, 60)
GATES = [  # (measure, comparison, bar)
    ("pan_consistency", ">=", 0.8),
    ("sprite_presence_ratio", ">=", 0.8),
    ("spurious_colours", "<=", 0.05),
    ("background_psnr", ">=", 22.0),
    ("cache_gap_db", ">=", 8.0),
    ("headroom_db_30s", ">=", 3.0),
    ("headroom_db_60s", ">=", 3.0),
]


def inside_horizon(model: ToyDiT, prompt: str, seed: int, sampler: FlowSampler) -> tuple[dict, np.ndarray]:
    """Oracle scores of a free rollout over the trained horizon, and its frames."""
    g = model.geometry
    T = g.horizon_frames
    video = generate(model, build_method(FullConfig(), g), [(0.0, prompt)], T, seed, sampler).frames.numpy()
    return oracle_scores(video, simulate([(0, prompt)], T, seed)), video


def headroom(model: ToyDiT, prompt: str, seed: int, sampler: FlowSampler, frames: int) -> tuple[dict, dict]:
    """Revisit PSNR beyond WINDOW frames at each of SECONDS, oracle cache vs a WINDOW-frame window,
    after a ground-truth prefix; and the two videos."""
    g = model.geometry
    prefix = g.horizon_frames - g.frames_per_chunk
    truth = simulate([(0, prompt)], frames, seed)
    prefill = torch.from_numpy(truth.frames[:prefix])[None] * 2 - 1
    caches = {"oracle": SlidingWindowConfig(budget_frames=prefix), "window": SlidingWindowConfig(budget_frames=WINDOW)}
    row, videos = {}, {}
    for name, cfg in caches.items():
        video = generate(model, build_method(cfg, g), [(0.0, prompt)], frames, seed, sampler, prefill=prefill)
        videos[name] = video.frames.numpy()
        for s in SECONDS:
            n = int(s * g.fps)
            if n <= frames:
                scores = oracle_scores(videos[name], truth, 0, n, window=WINDOW, prefix_frames=prefix)
                row[f"revisit_beyond_{name}_{s}s"] = scores["revisit_psnr_beyond"]
                row[f"continuation_{name}_{s}s"] = scores["continuation_psnr"]
    for s in SECONDS:
        if f"revisit_beyond_oracle_{s}s" in row:
            row[f"headroom_db_{s}s"] = row[f"revisit_beyond_oracle_{s}s"] - row[f"revisit_beyond_window_{s}s"]
    return row, videos


def contact_sheet(path: Path, rows: dict[str, np.ndarray], every: int, scale: int = 2) -> None:
    """One row of frames (every ``every``-th) per named video; frames [T, H, W, 3] uint8."""
    strips = [np.concatenate(list(video[::every]), axis=1) for video in rows.values()]
    width = max(s.shape[1] for s in strips)
    sheet = np.concatenate([np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0))) for s in strips], axis=0)
    img = Image.fromarray(sheet)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def evaluate(weights: str, prompts: str, seeds: list[int], frames: int, out_dir: Path, steps: int) -> dict:
    model = ToyDiT(ToyConfig(checkpoint=str(weights))).eval()
    sampler = FlowSampler(steps=steps, shift=model.default_shift)
    entries = [e for e in load_prompt_set(prompts).prompts if e.text is not None]
    rows, samples = [], {}
    start = time.perf_counter()
    for entry in entries:
        for seed in seeds:
            row = {"prompt": entry.id, "split": entry.split, "seed": seed,
                   "camera": "still" if entry.text.endswith("still") else "pans",
                   "width": simulate([(0, entry.text)], 1, seed).width}
            inside, horizon_video = inside_horizon(model, entry.text, seed, sampler)
            row.update({k: inside[k] for k in ("pan_consistency", "sprite_presence_ratio", "spurious_colours",
                                                "background_psnr", "palette_fidelity")})
            row.update(cache_gap(model, entry.text, seed, sampler))
            extra, videos = headroom(model, entry.text, seed, sampler, frames)
            row.update(extra)
            rows.append(row)
            if not samples and row["camera"] == "pans" and row["width"] > WINDOW:
                samples = {"ground_truth": simulate([(0, entry.text)], frames, seed).frames,
                           "free_horizon": horizon_video, **videos, "id": f"{prompts}_{entry.id}_s{seed}"}
    minutes = (time.perf_counter() - start) / 60
    return {"df": pd.DataFrame(rows), "minutes": minutes, "samples": write_samples(samples, out_dir)}


def write_samples(samples: dict, out_dir: Path) -> list[str]:
    if not samples:
        return []
    sample_dir = out_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    prefix = samples.pop("id")
    videos = {k: to_uint8(torch.from_numpy(v)) for k, v in samples.items()}
    contact_sheet(sample_dir / f"{prefix}_60s.png", {k: v for k, v in videos.items() if k != "free_horizon"}, every=8)
    names = [f"{prefix}_60s.png"]
    for name, video in videos.items():
        save_gif(sample_dir / f"{prefix}_{name}.gif", video, fps=4.0, scale=2)
        names.append(f"{prefix}_{name}.gif")
    return names


def gate_rows(df: pd.DataFrame, bootstrap: int = 2000) -> list[dict]:
    """One row per gate: mean over videos with a 95 % bootstrap interval, the bar, met or not.
    Headroom is a paired difference (oracle - window) over videos with revisits beyond the window."""
    out = []
    for measure, op, bar in GATES:
        values = df[measure].dropna().to_numpy(float) if measure in df else np.array([])
        if len(values) == 0:
            out.append({"measure": measure, "bar": f"{op} {bar:g}", "n": 0, "mean": float("nan"),
                        "lo": float("nan"), "hi": float("nan"), "met": False})
            continue
        mean, lo, hi = paired_bootstrap(values, bootstrap, seed=0)
        met = mean >= bar if op == ">=" else mean <= bar
        out.append({"measure": measure, "bar": f"{op} {bar:g}", "n": len(values), "mean": mean, "lo": lo,
                    "hi": hi, "met": bool(met)})
    return out


def _md_table(df: pd.DataFrame, cols: list[str], by: str) -> list[str]:
    lines = ["| " + " | ".join([by, *cols, "n"]) + " |", "|" + "---|" * (len(cols) + 2)]
    for key, part in df.groupby(by, sort=False):
        cells = [f"{part[c].mean():.3f}" if c in part else "n/a" for c in cols]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {len(part)} |")
    return lines


def write_report(result: dict, out_dir: Path, command: str) -> list[dict]:
    df = result["df"]
    gates = gate_rows(df)
    write_json(out_dir / "toy_backbone.json", {"command": command, "minutes": result["minutes"],
                                               "gates": gates, "rows": df.to_dict("records")})
    md = [
        "# Toy backbone: acceptance measurements", "",
        f"Produced by `{command}` ({result['minutes']:.1f} min). Means over prompts x seeds with 95 %",
        "percentile bootstrap intervals over videos (bench/stats.py); definitions in bench/evaluate_toy.py,",
        "bench/toy_diagnostic.py and metrics/oracle.py.", "",
        "## Gates", "",
        "| measure | bar | mean | 95 % interval | n | met |", "|---|---|---|---|---|---|",
    ]
    md += [f"| {g['measure']} | {g['bar']} | {g['mean']:.3f} | [{g['lo']:.3f}, {g['hi']:.3f}] | {g['n']} | "
           f"{'yes' if g['met'] else '**no**'} |" for g in gates]
    md += ["", "## By camera", ""]
    md += _md_table(df, ["pan_consistency", "background_psnr", "next_chunk_psnr_right", "next_chunk_psnr_other",
                         "cache_gap_db"], "camera")
    md += ["", "## By canvas width (the lag at which a panning view returns)", ""]
    md += _md_table(df, ["cache_gap_db", "continuation_oracle_60s", "continuation_window_60s",
                         "revisit_beyond_oracle_60s", "revisit_beyond_window_60s"], "width")
    md += ["", "## By split", ""]
    md += _md_table(df, ["pan_consistency", "sprite_presence_ratio", "cache_gap_db", "continuation_oracle_60s"],
                    "split")
    md += ["", "## Samples", ""] + [f"- results/samples/{name}" for name in result["samples"]] + [""]
    atomic_write_text(out_dir / "toy_backbone.md", "\n".join(md))
    return gates


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="forcebench evaluate-toy")
    parser.add_argument("--weights", default=SHIPPED_WEIGHTS)
    parser.add_argument("--prompts", default="toy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    command = "forcebench evaluate-toy " + " ".join(argv)
    result = evaluate(args.weights, args.prompts, args.seeds, args.frames, Path(args.out), args.steps)
    gates = write_report(result, Path(args.out), command)
    print(json.dumps({"minutes": result["minutes"], "gates": gates}, indent=2))
    return 0
