"""Acceptance measurements of the trained toy backbone (``forcebench evaluate-toy``).

For every prompt of a prompt set and every seed: the ground-truth world video, a 60 s
rollout per cache method, and the oracle metrics on frames 0-21 (inside the trained
horizon), 100-120 and 220-240; plus the cache-use test (the next chunk after three
ground-truth frames of the right prompt vs of another prompt) and toy-clip retrieval.
Writes results/toy_backbone.json (every row) and results/toy_backbone.md (tables with
means and 95 % confidence intervals over prompts x seeds), and sample sheets and GIFs.
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

from bench.models.toy import ToyConfig, ToyDiT
from bench.oracle_rollouts import oracle_rollouts
from bench.prompt_sets import load_prompt_set
from bench.records import atomic_write_text, write_json
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.train_encoder import EVAL_SEED_BASE, accuracy_by_split
from bench.video import save_gif, to_uint8
from bench.world import simulate
from methods import build_method
from methods.full import FullConfig
from methods.sink import SinkConfig
from methods.sliding_window import SlidingWindowConfig
from metrics.encoders import load_encoder
from metrics.oracle import oracle_scores, psnr

RANGES = {"0-21": (0, 21), "100-120": (100, 120), "220-240": (220, 240)}
METHODS = {"full": FullConfig(), "sliding_window": SlidingWindowConfig(), "sink": SinkConfig()}
WINDOW = SlidingWindowConfig().budget_frames
SHOWN = ["palette_fidelity", "sprite_presence_ratio", "spurious_colours", "pan_consistency", "background_psnr",
         "revisit_psnr_within", "revisit_psnr_beyond"]


def mean_ci(values: pd.Series) -> str:
    """'mean ± half-width' of a normal 95 % interval (nan-aware)."""
    v = values.dropna().to_numpy(float)
    if len(v) == 0:
        return "n/a"
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.3f} ± {half:.3f}"


def cache_use(model: ToyDiT, prompt: str, other: str, seed: int, sampler: FlowSampler) -> dict:
    """PSNR of the chunk after 3 ground-truth frames, with the right vs another prompt's context."""
    g = model.geometry
    F = g.frames_per_chunk
    truth = simulate([(0, prompt)], 2 * F, seed)
    wrong = simulate([(0, other)], F, seed)
    out = {}
    for name, ctx in (("right", truth.frames[:F]), ("other", wrong.frames[:F])):
        prefill = torch.from_numpy(ctx)[None] * 2 - 1
        r = generate(model, build_method(FullConfig(), g), [(0.0, prompt)], 2 * F, seed, sampler, prefill=prefill)
        mse = ((r.frames[F:].numpy() - truth.frames[F:]) ** 2).mean()
        out[f"next_chunk_psnr_{name}_context"] = float(psnr(mse))
    out["cache_gain_db"] = out["next_chunk_psnr_right_context"] - out["next_chunk_psnr_other_context"]
    return out


def contact_sheet(path: Path, rows: dict[str, np.ndarray], every: int, scale: int = 2) -> None:
    """One row of frames (every ``every``-th) per named video; frames [T, H, W, 3] uint8."""
    strips = []
    for video in rows.values():
        picked = video[::every]
        strips.append(np.concatenate(list(picked), axis=1))
    width = max(s.shape[1] for s in strips)
    sheet = np.concatenate([np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0))) for s in strips], axis=0)
    img = Image.fromarray(sheet)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def evaluate(weights: Path, prompts: str, seeds: list[int], frames: int, out_dir: Path, steps: int) -> dict:
    torch.set_num_threads(2)
    model = ToyDiT(ToyConfig(checkpoint=str(weights))).eval()
    g = model.geometry
    sampler = FlowSampler(steps=steps, shift=model.default_shift)
    entries = load_prompt_set(prompts).prompts
    rows, cache_rows, samples = [], [], {}
    start = time.perf_counter()
    for r in oracle_rollouts(model, entries, seeds, METHODS, frames, sampler):
        if r.entry is entries[0] and r.seed == seeds[0]:
            samples[r.method], samples["ground_truth"] = r.video, r.truth.frames
        for label, (a, b) in RANGES.items():
            if b <= frames:
                rows.append({"prompt": r.entry.id, "split": r.entry.split, "seed": r.seed, "method": r.method,
                             "frames": label, **oracle_scores(r.video, r.truth, a, b, window=WINDOW, analysis=r.analysis)})
    for i, entry in enumerate(entries):
        if entry.text is None:
            continue
        other = entries[(i + 1) % len(entries)]
        for seed in seeds:
            cache_rows.append({"prompt": entry.id, "split": entry.split, "seed": seed,
                               **cache_use(model, entry.text, other.text or other.timeline()[0][1], seed, sampler)})
    minutes = (time.perf_counter() - start) / 60
    df, cache_df = pd.DataFrame(rows), pd.DataFrame(cache_rows)

    out_dir.mkdir(parents=True, exist_ok=True)
    sample_dir = out_dir / "samples"
    sample_dir.mkdir(exist_ok=True)
    prefix = f"{prompts}_{entries[0].id}_s{seeds[0]}"
    sheets = {k: to_uint8(torch.from_numpy(v)) for k, v in samples.items()}
    contact_sheet(sample_dir / f"{prefix}_horizon.png",
                  {k: v[:24] for k, v in sheets.items() if k in ("ground_truth", "full")}, every=1)
    contact_sheet(sample_dir / f"{prefix}_60s.png", sheets, every=8)
    for name, video in sheets.items():
        save_gif(sample_dir / f"{prefix}_{name}.gif", video, fps=g.fps, scale=2)
    return {"df": df, "cache": cache_df, "minutes": minutes, "samples": sorted(p.name for p in sample_dir.iterdir())}


def table(df: pd.DataFrame, by: list[str], cols: list[str]) -> str:
    groups = df.groupby(by, sort=False)
    lines = ["| " + " | ".join(by + cols + ["n"]) + " |", "|" + "---|" * (len(by) + len(cols) + 1)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([str(k) for k in key] + [mean_ci(part[c]) for c in cols] + [str(len(part))]) + " |")
    return "\n".join(lines)


def write_report(result: dict, out_dir: Path, command: str, encoder: dict | None) -> None:
    df, cache = result["df"], result["cache"]
    write_json(out_dir / "toy_backbone.json", {"command": command, "minutes": result["minutes"],
                                               "rows": df.to_dict("records"), "cache_use": cache.to_dict("records"),
                                               "encoder": encoder})
    inside = df[(df.frames == "0-21") & (df.method == "full")]
    md = [
        "# Toy backbone: acceptance measurements",
        "",
        f"Produced by `{command}` ({result['minutes']:.1f} min on this machine). Means ± 95 % normal",
        "intervals over prompts x seeds; definitions in metrics/oracle.py. Free generations are new",
        "samples of the prompt's world (camera start, landmarks and sprites are random per seed), so",
        "they are compared with the ground truth on what must agree, not pixel by pixel.",
        "",
        "## Inside the horizon (frames 0-21, full cache)",
        "",
        table(inside, ["split"], SHOWN[:5]),
        "",
        "## The model uses its cache",
        "",
        "PSNR (dB) of frames 3-5 against the ground truth after three ground-truth frames of the",
        "same video as context, and after three frames of another prompt's video:",
        "",
        table(cache, ["split"], ["next_chunk_psnr_right_context", "next_chunk_psnr_other_context", "cache_gain_db"]),
        "",
        "## Past the horizon, per cache method",
        "",
        table(df, ["frames", "method"], SHOWN),
        "",
        "By split:",
        "",
        table(df[df.frames != "0-21"], ["frames", "method", "split"], SHOWN[:4]),
        "",
    ]
    if encoder:
        md += ["## toy-clip retrieval", "",
               "Share of frames of unseen-seed videos whose nearest prompt among the set is their own:", "",
               "| split | accuracy |", "|---|---|"]
        md += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in encoder.items()]
        md.append("")
    md += ["## Samples", ""] + [f"- results/samples/{name}" for name in result["samples"]] + [""]
    atomic_write_text(out_dir / "toy_backbone.md", "\n".join(md))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="forcebench evaluate-toy")
    parser.add_argument("--weights", default="bench/models/weights/toy_dit.safetensors")
    parser.add_argument("--prompts", default="toy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    command = "forcebench evaluate-toy " + " ".join(argv)
    result = evaluate(Path(args.weights), args.prompts, args.seeds, args.frames, Path(args.out), args.steps)
    encoder = None
    try:
        clip = load_encoder("toy-clip")
        entries = load_prompt_set(args.prompts).prompts
        seeds = [EVAL_SEED_BASE + 10 + s for s in range(3)]
        encoder = accuracy_by_split(clip, [e.text for e in entries], [e.split for e in entries], seeds)
    except Exception as err:  # the report says why instead of failing the whole evaluation
        encoder = {"unavailable": str(err)}
    write_report(result, Path(args.out), command, encoder)
    print(json.dumps({"minutes": result["minutes"], "encoder": encoder}, indent=2))
    return 0
