"""Compare cache methods on the trained toy backbone at equal KV budget (``forcebench compare``).

Every method runs with the same mean cached frames per head (``--budget-frames``, so the
same allocated KV bytes), for every prompt of a prompt set and every seed, to the longest
duration. At each duration the oracle metrics are computed on its last 5 s, next to the
per-chunk latency and the allocated KV bytes at that point. Writes
results/methods_<prompts>.md and .json with means and 95 % intervals.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.evaluate_toy import mean_ci
from bench.models.toy import SHIPPED_WEIGHTS, ToyConfig, ToyDiT
from bench.oracle_rollouts import oracle_rollouts
from bench.prompt_sets import load_prompt_set
from bench.records import atomic_write_text, write_json
from bench.sampler import FlowSampler
from methods import METHODS
from metrics.oracle import oracle_scores

DURATIONS = [5, 10, 30, 60]
BOUNDED = ["sliding_window", "sink", "uniform", "deep_forcing", "infinity_rope", "two_tier", "head_forcing"]
ABLATIONS = {
    "head_forcing": {},
    "hf[no_rope_reencode]": {"rope_reencode": False},
    "hf[no_episodic]": {"episodic": False},
    "hf[all_memory]": {"roles": "all_memory"},
    "hf[shuffled_roles]": {"roles": "shuffled"},
}
SHOWN = ["palette_fidelity", "sprite_presence_ratio", "spurious_colours", "pan_consistency",
         "revisit_psnr_beyond", "latency_ms", "kv_mib"]


def method_configs(names: list[str], budget_frames: int, ablations: bool) -> dict:
    configs = {}
    for name in names:
        cls = METHODS.get(name).config
        configs[name] = cls() if name == "full" else cls(budget_frames=budget_frames)
    if ablations:
        base = METHODS.get("head_forcing").config
        for label, override in ABLATIONS.items():
            configs[label] = base(budget_frames=budget_frames, **override)
    return configs


def run(prompts: str, seeds: list[int], configs: dict, durations: list[int], steps: int, window: int,
        weights: str = SHIPPED_WEIGHTS, split: str | None = None) -> pd.DataFrame:
    torch.set_num_threads(2)
    model = ToyDiT(ToyConfig(checkpoint=weights)).eval()
    g = model.geometry
    sampler = FlowSampler(steps=steps, shift=model.default_shift)
    frames_at = {d: g.frames_for_seconds(d) for d in durations}
    total = max(frames_at.values())
    segment = int(5 * g.fps)
    entries = [e for e in load_prompt_set(prompts).prompts if split is None or e.split == split]
    rows = []
    for r in oracle_rollouts(model, entries, seeds, configs, total, sampler):
        for d, n in frames_at.items():
            chunks = [c for c in r.rollout.chunks if c.frame_end <= n]
            scores = oracle_scores(r.video, r.truth, max(0, n - segment), n, window=window, analysis=r.analysis)
            rows.append({"prompt": r.entry.id, "split": r.entry.split, "seed": r.seed, "method": r.method,
                         "seconds": d, **scores,
                         "latency_ms": 1000 * float(np.mean([c.wall_s for c in chunks])),
                         "kv_mib": chunks[-1].kv_bytes / 2**20})
    return pd.DataFrame(rows)


def _title(md: Path) -> str:
    """The title line of an existing report (kept when the report is rewritten)."""
    first = md.read_text().splitlines()[0] if md.is_file() else "# Cache methods on the toy backbone"
    return first.removeprefix("# ")


def report(df: pd.DataFrame, title: str, command: str, minutes: float) -> str:
    lines = [f"# {title}", "", f"Produced by `{command}` ({minutes:.1f} min). Oracle metrics on the last 5 s of",
             "each duration (metrics/oracle.py); mean ± 95 % normal interval over prompts x seeds.", ""]
    for split in ["all", *sorted(df.split.unique())]:
        part = df if split == "all" else df[df.split == split]
        lines += [f"## Split: {split}", "", "| seconds | method | " + " | ".join(SHOWN) + " | n |",
                  "|" + "---|" * (len(SHOWN) + 3)]
        for (seconds, method), group in part.groupby(["seconds", "method"], sort=False):
            lines.append(f"| {seconds} | {method} | " + " | ".join(mean_ci(group[c]) for c in SHOWN) + f" | {len(group)} |")
        lines.append("")
    return "\n".join(lines + paired_table(df))


PAIRED = ["revisit_psnr_beyond", "pan_consistency", "sprite_presence", "background_psnr"]


def paired_table(df: pd.DataFrame, target: str = "head_forcing") -> list[str]:
    """Markdown lines: ``target`` minus every other method at the longest duration, paired on
    (prompt, seed) videos where both have a value; mean ± 95 % normal interval (n pairs)."""
    seconds = df.seconds.max()
    if target not in set(df.method):
        return []
    others = [m for m in df.method.unique() if m not in (target, "full")]
    lines = [f"## Paired: {target} minus each method at {seconds} s", "",
             "Differences per video (same prompt and seed), then mean ± 95 % normal interval and the",
             "number of pairs (revisits exist only in videos whose estimated view returns).", ""]
    for split in ["all", *sorted(df.split.unique())]:
        part = df[df.seconds == seconds] if split == "all" else df[(df.seconds == seconds) & (df.split == split)]
        lines += [f"### Split: {split}", "", "| metric | " + " | ".join(others) + " |", "|" + "---|" * (len(others) + 1)]
        for metric in PAIRED:
            table = part.pivot_table(index=["prompt", "seed"], columns="method", values=metric)
            cells = []
            for other in others:
                diff = (table[target] - table[other]).dropna()
                half = 1.96 * diff.std() / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
                cells.append(f"{diff.mean():+.3f} ± {half:.3f} (n={len(diff)})" if len(diff) else "n/a")
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="forcebench compare")
    parser.add_argument("--prompts", default="toy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["full", *BOUNDED])
    parser.add_argument("--budget-frames", type=int, default=16)
    parser.add_argument("--durations", type=int, nargs="+", default=DURATIONS)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--split", choices=["train", "heldout"], default=None,
                        help="only this split's prompts (tune on train, report on heldout)")
    parser.add_argument("--ablations", action="store_true", help="add the Head Forcing ablations")
    parser.add_argument("--out", default=None, help="default: results/methods_<prompts>[_ablations].md")
    parser.add_argument("--report-only", metavar="JSON", default=None,
                        help="rewrite the markdown next to a results JSON of an earlier compare, without running")
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
        df = pd.DataFrame(saved["rows"])
        title = _title(Path(args.report_only).with_suffix(".md"))
        atomic_write_text(Path(args.report_only).with_suffix(".md"), report(df, title, saved["command"], saved["minutes"]))
        return 0
    command = "forcebench compare " + " ".join(argv)
    configs = method_configs([] if args.ablations else args.methods, args.budget_frames, args.ablations)
    start = time.perf_counter()
    df = run(args.prompts, args.seeds, configs, args.durations, args.steps, window=args.budget_frames,
             split=args.split)
    minutes = (time.perf_counter() - start) / 60
    stem = f"methods_{args.prompts}" + ("_ablations" if args.ablations else "")
    out = Path(args.out) if args.out else Path("results") / f"{stem}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"Cache methods on the toy backbone ({args.prompts}), budget {args.budget_frames} frames per head"
    atomic_write_text(out, report(df, title, command, minutes))
    write_json(out.with_suffix(".json"), {"command": command, "minutes": minutes, "rows": df.to_dict("records"),
                                          "configs": {k: v.params() for k, v in configs.items()}})
    print(json.dumps({"minutes": minutes, "out": str(out)}))
    return 0
