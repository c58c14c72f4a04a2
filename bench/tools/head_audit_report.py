"""report.json, report.md and the figures of ``forcebench audit-heads`` (bench/tools/head_audit.py).
Every file is written atomically (core.files); JSON has no NaN (null instead)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.report.stats import bootstrap_mean
from bench.tools.head_audit_plots import save_ablation_plot, save_label_panels
from bench.tools.head_audit_stats import ALTERNATIVE, BINARY, to_binary
from bench.tools.profile import CLASSIFIERS, label_counts
from core.files import atomic_write_text, write_json
from core.geometry import Geometry

SHORT = {"head_forcing": "HF", "forcing_kv": "FKV", "pyramid_forcing": "PYR", "dummy_forcing": "DUM"}


def clean(obj):
    """JSON-ready: numpy arrays and scalars to lists and numbers, NaN / inf to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def notes(classifier: str, entry: dict) -> np.ndarray:
    """Per head, a short statistic of the classifier: [L, H] strings."""
    if classifier == "head_forcing":
        return np.vectorize(lambda a, b: f"sink {a:.2f}\nlocal {b:.2f}")(entry["stats"]["sink_mass"], entry["local_mass"])
    if classifier == "forcing_kv":
        return np.vectorize(lambda a: f"score {a:.2f}")(entry["scores"])
    if classifier == "pyramid_forcing":
        return np.vectorize(lambda a: f"sign {a:.2f}")(entry["stats"]["sign_rate"])
    return np.vectorize(lambda a: f"agree {a:.2f}")(entry["agreement"])


def labels_section(result, g: Geometry) -> tuple[list[str], dict]:
    lines = ["## 1. Labels per head", "",
             "Every classifier on the same calibration rollouts. `*` marks a head the binary mapping (section 2) "
             "calls long-range. Statistics: head_forcing sink mass / mass within 3 frames; forcing_kv static score "
             "(>= 0.8: static); pyramid_forcing sign rate of the frame-level mean logits; dummy_forcing share of "
             "calibration rollouts whose online role equals the majority role.", "",
             "| layer | head | " + " | ".join(CLASSIFIERS) + " |", "|---|---|" + "---|" * len(CLASSIFIERS)]
    table = {}
    for c in CLASSIFIERS:
        labels = np.asarray(result.labels[c]["labels"], dtype=object)
        table[c] = {"labels": labels, "binary": to_binary(labels, c), "notes": notes(c, result.labels[c])}
    for layer in range(g.layers):
        for head in range(g.heads):
            cells = []
            for c in CLASSIFIERS:
                t = table[c]
                note = t["notes"][layer, head].replace("\n", ", ")
                cells.append(f"{t['labels'][layer, head]}{'*' if t['binary'][layer, head] else ''} ({note})")
            lines.append(f"| {layer} | {head} | " + " | ".join(cells) + " |")
    lines += ["", "| classifier | counts | long-range heads (binary) |", "|---|---|---|"]
    for c in CLASSIFIERS:
        counts = ", ".join(f"{n} {k}" for k, n in label_counts(table[c]["labels"], c).items())
        lines.append(f"| {c} | {counts} | {int(table[c]['binary'].sum())} of {g.layers * g.heads} |")
    lines += ["", "![labels](labels.png)", ""]
    return lines, table


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def pairwise_section(result) -> list[str]:
    lines = ["## 2. Agreement between classifiers", "",
             "Binary mapping to \"long-range vs not\" (bench/tools/head_audit_stats.py, where the reasons are "
             "spelled out):", ""]
    for c in CLASSIFIERS:
        long = [k for k, v in BINARY[c].items() if v]
        short = [k for k, v in BINARY[c].items() if not v]
        alt = [k for k, v in ALTERNATIVE[c].items() if v]
        extra = f"; alternative: long-range = {' + '.join(alt)}" if ALTERNATIVE[c] != BINARY[c] else ""
        lines.append(f"- {c}: long-range = {' + '.join(long)}; not = {' + '.join(short)}{extra}")
    lines += ["", "Why: head_forcing's anchor and memory heads are those whose mass reaches past the last 3 frames "
              "(to the first frames, or spread back); forcing_kv's dynamic heads put < 80 % of their non-sink mass "
              "on the chunk and the frame before it; pyramid_forcing's veil heads have negative-dominant logits on "
              "past frames (the past gets little mass; the method stores them merged 4:1) while anchor (positive-"
              "dominant) and wave (periodic in distance) heads read the past; dummy_forcing's dummy heads give the "
              "least mass both to the first frame and to the frames after it, so they are kept to one frame, while "
              "sink and local heads read the cache. The alternative keeps only the class given the longest store "
              "(pyramid wave: 25 frames of phase buckets; dummy sink: the first frame, far back late in a video; "
              "local keeps only the last chunk).", "",
              "Cohen's kappa on the binary labels (upper triangle: primary mapping; lower: alternative) and adjusted "
              "Rand index of the full labels (label names need not match):", "",
              "| kappa (alt \\ primary) | " + " | ".join(CLASSIFIERS) + " |", "|---|" + "---|" * len(CLASSIFIERS)]
    for i, a in enumerate(CLASSIFIERS):
        cells = []
        for j, b in enumerate(CLASSIFIERS):
            if i == j:
                cells.append("-")
            else:
                key = f"{a}|{b}" if i < j else f"{b}|{a}"
                cells.append(_fmt(result.pairwise[key]["binary" if i < j else "alternative"]["kappa"]))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "| ARI | " + " | ".join(CLASSIFIERS) + " |", "|---|" + "---|" * len(CLASSIFIERS)]
    for i, a in enumerate(CLASSIFIERS):
        cells = ["-" if i == j else _fmt(result.pairwise[f"{a}|{b}" if i < j else f"{b}|{a}"]["ari"])
                 for j, b in enumerate(CLASSIFIERS)]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Binary confusion matrices (rows: the first classifier, columns: the second; not / long-range) "
              "and the full contingency tables:", ""]
    for key, entry in result.pairwise.items():
        a, b = key.split("|")
        m = entry["binary"]["confusion"]
        lines += [f"**{a} vs {b}**: binary [[{m[0][0]}, {m[0][1]}], [{m[1][0]}, {m[1][1]}]], agreement "
                  f"{_fmt(entry['binary']['agreement'])}, kappa {_fmt(entry['binary']['kappa'])} "
                  f"(alternative {_fmt(entry['alternative']['kappa'])}); ARI {_fmt(entry['ari'])}", "",
                  f"| {SHORT[a]} \\ {SHORT[b]} | " + " | ".join(map(str, entry["contingency"]["cols"])) + " |",
                  "|---|" + "---|" * len(entry["contingency"]["cols"])]
        for row, counts in zip(entry["contingency"]["rows"], entry["contingency"]["counts"]):
            lines.append(f"| {row} | " + " | ".join(map(str, counts)) + " |")
        lines.append("")
    return lines


def stability_section(result) -> list[str]:
    lines = ["## 3. Stability of each classifier with itself", "",
             "Labels from two disjoint parts of the calibration (or the same rollouts at another number of "
             "denoising steps), compared head by head: share of heads with the same label, Cohen's kappa of the "
             "full labels, kappa of the binary labels, ARI. Kappa is n/a when both labelings give every head "
             "the same label.", ""]
    for name, entry in result.stability.items():
        lines.append(f"- **{name}**: {entry['what']} ({entry['rollouts'][0]} vs {entry['rollouts'][1]} rollouts)")
    lines += ["", "| classifier | split | agreement | kappa | binary kappa | ARI | labels differ at (layer, head) |",
              "|---|---|---|---|---|---|---|"]
    for c in CLASSIFIERS:
        for name, entry in result.stability.items():
            e = entry["classifiers"][c]
            a, b = (np.array(x, dtype=object) for x in e["labels"])
            diff = ", ".join(f"({i}, {j}) {a[i, j]}->{b[i, j]}" for i, j in zip(*np.nonzero(a != b))) or "-"
            lines.append(f"| {c} | {name} | {_fmt(e['agreement'])} | {_fmt(e['kappa'])} | "
                         f"{_fmt(e['binary']['kappa'])} | {_fmt(e['ari'])} | {diff} |")
    dummy = result.labels["dummy_forcing"]["agreement"]
    lines += ["", f"dummy_forcing is online: per calibration rollout it classifies anew. The mean share of rollouts "
              f"agreeing with the majority role is {_fmt(float(np.mean(dummy)))} (per head: min {_fmt(float(np.min(dummy)))}, "
              f"max {_fmt(float(np.max(dummy)))}).", ""]
    if result.shipped:
        lines += ["Against the committed labels files:", ""]
        for c, e in result.shipped.items():
            text = (f"- {c} vs `{e['file']}` (profiled with {e['profile']}; same calibration rollouts: "
                    f"{e['same_calibration']}): agreement {_fmt(e['agreement'])}, kappa {_fmt(e['kappa'])} at "
                    f"{e['audit_steps']} steps")
            if "at_stability_steps" in e:
                s = e["at_stability_steps"]
                text += f"; agreement {_fmt(s['agreement'])}, kappa {_fmt(s['kappa'])} at {s['steps']} steps"
            lines.append(text)
        lines.append("")
    return lines


def cost_section(result, run: dict) -> list[str]:
    cost = result.cost
    per = cost["per_rollout"]
    base = per["full_cache"]["cpu_s_per_rollout"]
    n = cost["calibration_rollouts"]
    lines = ["## 4. Profiling cost", "", run["machine"] + " (see the top).", "",
             f"Timed on the first {per['full_cache']['rollouts_timed']} calibration entries, each recorder alone in a "
             f"full-cache rollout of the trained horizon ({per['full_cache']['frames']} frames, "
             f"{run['profile']['steps']} denoising steps + the clean pass). Estimated total = per-rollout CPU x "
             f"{n} calibration rollouts + classification.", "",
             "| classifier | rollouts used | frames a rollout | CPU s / rollout | over a plain full-cache rollout | "
             "classification CPU s | estimated total CPU s |", "|---|---|---|---|---|---|---|",
             f"| (plain full cache) | - | {per['full_cache']['frames']} | {base:.3f} | - | - | - |"]
    for c in CLASSIFIERS:
        p = per[c]
        lines.append(f"| {c} | {n} | {p['frames']} | {p['cpu_s_per_rollout']:.3f} | "
                     f"{p['cpu_s_per_rollout'] - base:+.3f} | {cost['classify_cpu_s'][c]:.3f} | "
                     f"{p['cpu_s_per_rollout'] * n + cost['classify_cpu_s'][c]:.1f} |")
    p = per["dummy_forcing_to_classify_chunk"]
    lines += [f"| dummy_forcing, only to its classify chunk | {n} | {p['frames']} | {p['cpu_s_per_rollout']:.3f} | "
              f"{p['cpu_s_per_rollout'] - base:+.3f} | {cost['classify_cpu_s']['dummy_forcing']:.3f} | "
              f"{p['cpu_s_per_rollout'] * n + cost['classify_cpu_s']['dummy_forcing']:.1f} |", "",
              f"Shared calibration (all four recorders in each rollout): {cost['calibration_cpu_s']:.1f} CPU s for {n} "
              f"rollouts ({cost['mean_shared_rollout_cpu_s']:.3f} s each)"
              + (f"; the second step setting: {cost['stability_steps_cpu_s']:.1f} CPU s for "
                 f"{cost['stability_steps_rollouts']} rollouts" if cost["stability_steps_cpu_s"] is not None else "")
              + ". head_forcing and forcing_kv read the same recorder (Profiler): one cost for both. Dummy Forcing "
              "needs no calibration in deployment (it classifies inside every rollout at chunk 1); its row is the "
              "cost of auditing it.", ""]
    return lines


def ablation_section(result, run: dict, g: Geometry) -> tuple[list[str], list[dict]]:
    ab, audit = result.ablation, run["audit"]
    frames = int(np.ceil(audit["ablation_seconds"] * g.fps / g.frames_per_chunk - 1e-9)) * g.frames_per_chunk
    n = len(ab["videos"])
    lines = ["## 5. Ablation: cut the long-range heads' history", "",
             f"Head-masked cache (`HeadMaskedWindow`, private to bench/tools/head_audit.py): the heads a classifier "
             f"calls long-range (binary mapping) keep nothing and see only the current chunk; every other head keeps a "
             f"sliding window of the last {audit['ablation_window']} frames with repacked positions (horizon "
             f"{g.horizon_frames} - chunk {g.frames_per_chunk}: inside the trained horizon, the full cache while "
             f"the video is shorter). Against {audit['ablation_draws']} random head sets of the same size per "
             f"classifier (uniform without replacement; the random score of a video is the mean over the draws), and "
             f"against no mask. Videos: {n} = {audit['ablation_prompts']} train-split prompts of conf/prompts/toy.yaml x "
             f"seeds 0..{audit['ablation_seeds'] - 1}, {audit['ablation_seconds']:g} s ({frames} frames), the first "
             f"{audit['prefix_frames']} frames ground truth, {audit['ablation_steps']} denoising steps. Score: "
             f"continuation PSNR (dB, metrics/oracle.py, on the frames quantised as a run saves them) of the "
             f"{frames - audit['prefix_frames']} generated frames. {ab['rollouts']} rollouts, {ab['cpu_s']:.0f} CPU s.", "",
             "| condition | heads masked | mean continuation PSNR (dB) [95% bootstrap CI] |", "|---|---|---|"]
    for name, cond in ab["conditions"].items():
        mean, lo, hi = bootstrap_mean(cond["scores"], audit["resamples"], [audit["ablation_rng_seed"], 99])
        lines.append(f"| {name} | {int(np.sum(cond['heads']))} | {mean:.2f} [{lo:.2f}, {hi:.2f}] |")
    lines += ["", f"Paired differences over the {n} videos (bench/report/stats.py `paired_comparison`: mean, 95% "
              f"percentile bootstrap interval, one-sided sign-flip p for H1: difference > 0, the smallest p "
              f"possible at this n, and the minimum detectable difference of a one-sided test at alpha = "
              f"{audit['alpha']} with power 0.8):", "",
              "| classifier | long-range heads | comparison | mean (dB) | 95% CI | p | smallest p | sd | MDD (dB) | "
              "random draws' means (dB) | draws at or below the masked mean |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    plot_rows = []
    for row in ab["comparisons"]:
        draws = ", ".join(f"{x:.2f}" for x in row["random_draw_means"]) if row["random_draw_means"] else "-"
        rank = "-" if row["draws_at_or_below_masked"] is None else f"{row['draws_at_or_below_masked']} of {audit['ablation_draws']}"
        lines.append(f"| {row['classifier']} | {row['long_range_heads']} | {row['comparison']} | {_fmt(row['mean'])} | "
                     f"[{_fmt(row['lo'])}, {_fmt(row['hi'])}] | {_fmt(row['p'], 3)} | {_fmt(row['smallest_p'], 4)} | "
                     f"{_fmt(row['sd'])} | {_fmt(row['mdd'])} | {draws} | {rank} |")
        if row["comparison"] == "random - masked":
            plot_rows.append({"label": f"{row['classifier']} (k={row['long_range_heads']})", **row})
    lines += ["", "`none - masked`: PSNR lost by cutting the classifier's long-range heads; `none - random`: by "
              "cutting as many random heads; `random - masked` > 0: the classifier's heads matter more than random "
              "heads of the same number. The interval and p treat the videos as the sample and the random sets as "
              "fixed: they do not cover the spread between random sets, which the per-draw means show. The last "
              "column counts the random sets whose mean is at or below the classifier's masked mean: 0 of R says "
              "the classifier's set hurt more than every random set (probability 1 / (R + 1) if its set were one "
              "more random draw). A classifier whose set is nearly all heads (or none) cannot differ from random "
              "sets of its size.", "", "![ablation](ablation.png)", ""]
    return lines, plot_rows


def write_report(out: Path, result, run: dict, g: Geometry) -> None:
    """report.json, report.md, labels.png and ablation.png under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    label_lines, table = labels_section(result, g)
    ablation_lines, plot_rows = ablation_section(result, run, g)
    save_label_panels(out / "labels.png", [(f"{c} ({int(table[c]['binary'].sum())} long-range, outlined)",
                                            table[c]["labels"], table[c]["notes"].tolist(), table[c]["binary"])
                                           for c in CLASSIFIERS])
    save_ablation_plot(out / "ablation.png", plot_rows, "random - masked continuation PSNR (dB)")
    cal = run["profile"]
    head = ["# Head-classifier audit: toy backbone", "",
            f"Command: `{run['command']}` (weights `{run['weights']}`). Calibration: {cal['prompts']} training-split "
            f"prompts x {cal['seeds']} seeds (rng_seed {cal['rng_seed']}, drawn as `forcebench profile` draws them), "
            f"{cal['steps']} denoising steps, full-cache rollouts of the {g.horizon_frames}-frame horizon; every "
            f"classifier reads the same rollouts. Total: {run['cpu_s_total']:.0f} CPU s ({run['wall_s_total']:.0f} s "
            f"wall) on {run['audit']['threads']} torch thread(s). {run['machine']}: load average (1, 5, 15 min) "
            f"{_load_text(run['host']['load_average_start'])} at the start and {_load_text(run['host']['load_average_end'])} "
            f"at the end, on {run['host']['cpus']} CPUs.", ""]
    tail = ["## Left out", "",
            "- The ablation masks each classifier's binary long-range set only (not the alternative mapping, and not "
            "the methods' own per-class caches): it asks whether the heads a classifier flags carry history the "
            "video needs, not how well each method's cache serves them.",
            "- Dummy Forcing's labels here are the majority of its per-rollout online roles; the method itself "
            "re-classifies in every rollout.",
            f"- One backbone (the toy, {g.layers} x {g.heads} heads); the random head sets are a few draws, so `random - masked` is "
            "conditional on them (their per-draw means are listed).", ""]
    lines = (head + label_lines + pairwise_section(result) + stability_section(result) + cost_section(result, run)
             + ablation_lines + tail)
    atomic_write_text(out / "report.md", "\n".join(lines))
    labels = {c: {"labels": table[c]["labels"], "binary": table[c]["binary"], "counts": label_counts(table[c]["labels"], c),
                  **_label_stats(c, result.labels[c])} for c in CLASSIFIERS}
    write_json(out / "report.json", clean({"run": run, "calibration": result.calibration, "labels": labels,
                                           "pairwise": result.pairwise, "stability": result.stability,
                                           "shipped": result.shipped, "cost": result.cost,
                                           "ablation": result.ablation}))


def _load_text(load) -> str:
    return "n/a" if load is None else " / ".join(f"{x:.2f}" for x in load)


def _label_stats(classifier: str, entry: dict) -> dict:
    if classifier == "head_forcing":
        s = entry["stats"]
        return {"sink_mass": s["sink_mass"], "local_mass": entry["local_mass"],
                "mass_by_distance": s["mass_by_distance"]}
    if classifier == "forcing_kv":
        return {"static_score": entry["scores"]}
    if classifier == "pyramid_forcing":
        s = entry["stats"]
        return {"sign_rate": s["sign_rate"], "mean_logit": s["mean_logit"], "period": s["period"],
                "period_agreement": s["period_agreement"]}
    return {"agreement": entry["agreement"], "pooled_roles": entry["pooled"], "mean_p0": entry["mean_p0"],
            "mean_p1": entry["mean_p1"], "mean_cost": entry["mean_cost"]}
