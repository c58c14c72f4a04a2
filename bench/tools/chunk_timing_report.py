"""The timing pass's report: targets, tables, and the files (``chunk_timing_<device>.json`` / ``.md``)."""

from __future__ import annotations

import re
from pathlib import Path

from core.files import atomic_write_text, write_json
from core.timing import NOISY_SPREAD

HEAD_FORCING_VS_WINDOW = 1.05  # Head Forcing's per-chunk p50 at most this multiple of sliding_window's
METHOD_SHARE = 0.25  # a method's bookkeeping at most this share of a chunk
# Two methods whose idle medians differ by more than this fraction must keep their order under load.
AGREEMENT_GAP = 0.05


def targets(result: dict) -> list[dict]:
    """Each target with its measured value and PASS / FAIL (idle pass; agreement: both passes)."""
    idle = result["idle"]
    rows = []
    if "head_forcing" in idle and "sliding_window" in idle:
        ratio = idle["head_forcing"]["vs_window"]
        rows.append({"target": f"head_forcing p50 <= {HEAD_FORCING_VS_WINDOW}x sliding_window p50",
                     "value": f"{ratio:.3f}x", "pass": ratio <= HEAD_FORCING_VS_WINDOW})
    worst = max(idle, key=lambda n: idle[n]["method_share"])
    rows.append({"target": f"every method's bookkeeping <= {METHOD_SHARE:.0%} of a chunk",
                 "value": f"max {idle[worst]['method_share']:.1%} ({worst})",
                 "pass": idle[worst]["method_share"] <= METHOD_SHARE})
    agreement = result.get("agreement")
    if agreement is not None:
        wide = [s for s in agreement["swapped_pairs"] if s["idle_gap"] > AGREEMENT_GAP]
        rows.append({"target": f"no pair more than {AGREEMENT_GAP:.0%} apart swaps under load",
                     "value": f"tau {agreement['kendall_tau']:.3f}; {len(agreement['swapped_pairs'])} swaps, "
                              f"{len(wide)} wider than {AGREEMENT_GAP:.0%}",
                     "pass": not wide})
    return rows


def markdown(result: dict) -> str:
    o = result["options"]
    lines = [f"# Per-chunk latency, interleaved: toy backbone on {result['device']} ({result['dtype']})", "",
             f"{result['model']}; {result['steps']} denoising steps + the clean pass a chunk; every method with a "
             f"budget at {o['budget_frames']} frames a head; rollouts of {o['seconds']:g} s advanced together one "
             f"chunk at a time (rotating order); samples: chunks from {o['warmup_seconds']:g} s on. Latency: DiT "
             f"forwards + the cache method's update (the timing protocol of README.md). Loaded pass: {o['load']} "
             f"busy process(es) beside the timed one ({result['threads']} torch thread). A spread (p95 / p50 - 1) "
             f"over {NOISY_SPREAD:.0%} is flagged noisy (!).", "", "## Targets", "",
             "| target | measured | |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'PASS' if t['pass'] else 'FAIL'} |" for t in targets(result)]
    lines += ["", "## Latency", "",
              "| method | p50 ms | p95 ms | spread | vs window | method share | KV MiB | loaded p50 ms | loaded spread "
              "| loaded vs window |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    loaded = result.get("loaded") or {}

    def spread(row: dict) -> str:
        return f"{row['spread']:.2f}{' !' if row['noisy'] else ''}"

    for name, row in sorted(result["idle"].items(), key=lambda kv: kv[1]["p50_s"]):
        other = loaded.get(name)
        ratio = f"{row['vs_window']:.3f}" if row["vs_window"] is not None else "n/a"
        tail = (f"{1e3 * other['p50_s']:.1f} | {spread(other)} | "
                f"{other['vs_window']:.3f}" if other and other["vs_window"] is not None else "n/a | n/a | n/a")
        lines.append(f"| {name} | {1e3 * row['p50_s']:.1f} | {1e3 * row['p95_s']:.1f} | {spread(row)} | {ratio} | "
                     f"{row['method_share']:.1%} | {row['kv_bytes'] / 2**20:.2f} | {tail} |")
    agreement = result.get("agreement")
    if agreement:
        lines += ["", f"Ranking by p50, idle vs loaded: Kendall's tau {agreement['kendall_tau']:.3f}."]
        for s in agreement["swapped_pairs"]:
            lines.append(f"- swapped: {s['pair'][0]} / {s['pair'][1]} (idle p50s {s['idle_gap']:.1%} apart)")
    if result.get("breakdown"):
        lines += ["", f"## Where a chunk's time goes (torch.profiler, {o['profile_seconds']:g} s rollouts, one method "
                      f"after another; the profiler's own cost inflates the many small operations of bookkeeping)", "",
                  "| method | chunk ms (profiled) | forward without attention | attention | method bookkeeping | other |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, b in sorted(result["breakdown"].items(), key=lambda kv: kv[1]["chunk_s"]):
            lines.append(f"| {name} | {1e3 * b['chunk_s']:.1f} | {b['forward']:.1%} | {b['attention']:.1%} | "
                         f"{b['method']:.1%} | {b['other']:.1%} |")
    return "\n".join(lines) + "\n"


def write_report(result: dict, out: Path) -> list[Path]:
    """``<out>/chunk_timing_<device>.json`` and ``.md``; returns their paths."""
    slug = result["device_type"] if result["device_type"] == "cpu" else re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"chunk_timing_{slug}.json", out / f"chunk_timing_{slug}.md"
    write_json(json_path, {**result, "targets": targets(result)})
    atomic_write_text(md_path, markdown(result))
    return [json_path, md_path]
