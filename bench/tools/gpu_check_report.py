"""The targets of the GPU check and its Markdown page, from the check's result dict.

Every target is PASS, FAIL or "not measured" (with why), computed from what the check
measured; nothing here is a result of its own. The result dict is what bench/tools/gpu_check.py
writes as JSON: ``kernels`` (shapes, each with rows per implementation), ``rollout``
(methods, each with rows per duration), ``skipped`` (what was left out, and why).
"""

from __future__ import annotations

PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "not measured"
# Self Forcing's published numbers (Huang et al. 2025, Wan2.1-1.3B, chunk-wise, one H100).
SELF_FORCING = {"fps": 17.0, "first_chunk_latency_s": 0.69, "gpu": "NVIDIA H100"}
KERNEL_TARGETS = (("flex", 1.5), ("sdpa_padded", 3.0))  # Triton at least this much faster on head_forcing
BANDWIDTH_TARGET = 0.60  # of the measured copy bandwidth, at the largest caches
LATENCY_TARGET = 1.05  # head_forcing per-chunk p50 over sliding_window's, at the longest duration
KV_TARGET = 0.50  # head_forcing KV bytes over the dense trained-horizon cache, at the longest duration


def kernel_row(result: dict, shape: dict | None, impl: str) -> dict | None:
    """The timed row of ``impl`` on ``shape`` (None when not timed: skipped, failed or absent)."""
    rows = [] if shape is None else [r for r in shape["rows"] if r["implementation"] == impl]
    return rows[0] if rows and rows[0]["status"] == "ok" else None


def find_shape(result: dict, key: str, value) -> dict | None:
    shapes = [s for s in result.get("kernels", {}).get("shapes", []) if s.get(key) == value]
    return shapes[0] if shapes else None


def rollout_row(result: dict, method: str, seconds: float) -> dict | None:
    entry = result.get("rollout", {}).get("methods", {}).get(method, {})
    rows = [r for r in entry.get("rows", []) if r["seconds"] == seconds]
    return rows[0] if rows else None


def target(name: str, ok: bool | None, value: str, why_not: str = "") -> dict:
    status = NOT_MEASURED if ok is None else PASS if ok else FAIL
    return {"target": name, "status": status, "measured": value if ok is not None else why_not}


def targets(result: dict) -> list[dict]:
    """The five targets, in the order of the brief: two speed-ups, bandwidth, latency, KV bytes."""
    out = []
    hf = find_shape(result, "distribution", "head_forcing")
    triton = kernel_row(result, hf, "triton")
    for impl, factor in KERNEL_TARGETS:
        other = kernel_row(result, hf, impl)
        name = f"Triton >= {factor:g}x faster than {impl} on the head_forcing distribution"
        if triton is None or other is None:
            missing = " and ".join(n for n, r in (("triton", triton), (impl, other)) if r is None)
            out.append(target(name, None, "", f"{missing} not timed on head_forcing"))
            continue
        speedup = other["median_ms"] / triton["median_ms"]
        out.append(target(name, speedup >= factor, f"{speedup:.2f}x ({other['median_ms']:.3f} ms / "
                                                   f"{triton['median_ms']:.3f} ms)"))
    largest = find_shape(result, "largest", True)
    row = kernel_row(result, largest, "triton")
    name = f"Triton >= {BANDWIDTH_TARGET:.0%} of copy bandwidth at the largest caches"
    if row is None:
        out.append(target(name, None, "", "triton not timed on the largest caches"))
    else:
        out.append(target(name, row["bandwidth_fraction"] >= BANDWIDTH_TARGET,
                          f"{row['bandwidth_fraction']:.1%} ({row['bandwidth_gbs']:.0f} GB/s of "
                          f"{result['kernels']['copy_bandwidth_gbs']:.0f}; {largest['distribution']})"))
    longest = max(result.get("rollout", {}).get("seconds", [0]))
    hf_row, sw_row = rollout_row(result, "head_forcing", longest), rollout_row(result, "sliding_window", longest)
    name = f"head_forcing per-chunk p50 <= {LATENCY_TARGET:g}x sliding_window at {longest:g} s"
    if hf_row is None or sw_row is None:
        missing = " and ".join(m for m, r in (("head_forcing", hf_row), ("sliding_window", sw_row)) if r is None)
        out.append(target(name, None, "", f"{missing} did not reach {longest:g} s"))
    else:
        ratio = hf_row["chunk_latency_median_s"] / sw_row["chunk_latency_median_s"]
        out.append(target(name, ratio <= LATENCY_TARGET,
                          f"{ratio:.3f}x ({1e3 * hf_row['chunk_latency_median_s']:.1f} ms / "
                          f"{1e3 * sw_row['chunk_latency_median_s']:.1f} ms)"))
    dense = result.get("rollout", {}).get("dense_horizon_kv_bytes")
    horizon = result.get("rollout", {}).get("horizon_frames")
    name = f"head_forcing KV bytes at {longest:g} s <= {KV_TARGET:.0%} of the dense {horizon}-frame cache (the horizon)"
    if hf_row is None or dense is None:
        out.append(target(name, None, "", f"head_forcing did not reach {longest:g} s"))
    else:
        share = hf_row["kv_bytes"] / dense
        out.append(target(name, share <= KV_TARGET, f"{share:.1%} ({size(hf_row['kv_bytes'])} of {size(dense)})"))
    return out


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def size(n: int) -> str:
    """Bytes in the largest binary unit that keeps a whole number in front (KiB at least)."""
    for unit, power in (("GiB", 30), ("MiB", 20)):
        if n >= 2**power:
            return f"{n / 2**power:.2f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def kernel_section(result: dict, where: str) -> list[str]:
    k = result["kernels"]
    lines = ["## 1. Attention kernels", "",
             f"One layer's call at {k['shape_of']}: B={k['batch']}, H={k['heads']}, D={k['head_dim']}, "
             f"{k['queries']} queries. Correctness first: max |out - float32 reference| <= {k['tolerance']:g} x "
             f"max |reference| ({result['dtype']}); a failing implementation is not timed. Then the median of "
             f"{k['repeats']} calls after warm-up ({k['warmup']} calls; {k['timer']}). Bandwidth: cache K, V and the "
             f"chunk's q, k, v read once and the output written, over the time, as a fraction of the measured "
             f"device-to-device copy bandwidth ({fmt(k.get('copy_bandwidth_gbs'), '.1f')} GB/s, {where}).", ""]
    for shape in k["shapes"]:
        lengths = shape["lengths"]
        lines += [f"### {shape['distribution']}", "",
                  f"Cache tokens per head {min(lengths)}..{max(lengths)} (total {sum(lengths)}).", "",
                  "| implementation | status | max abs err | median ms | vs triton | GB/s | of copy bw | TFLOP/s "
                  "| device, dtype |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        triton = kernel_row(result, shape, "triton")
        for r in shape["rows"]:
            ok = r["status"] == "ok"
            vs = f"{r['median_ms'] / triton['median_ms']:.2f}x" if ok and triton else "n/a"
            lines.append(f"| {r['implementation']} | {r['status']} | {fmt(r.get('max_abs_err'), '.1e')} | "
                         f"{fmt(r.get('median_ms'), '.3f')} | {vs} | {fmt(r.get('bandwidth_gbs'), '.1f')} | "
                         f"{fmt(r.get('bandwidth_fraction'), '.1%')} | {fmt(r.get('tflops'), '.1f')} | {where} |")
        lines += [f"- {r['implementation']}: {r['note']}" for r in shape["rows"] if r.get("note")] + [""]
    return lines


def rollout_section(result: dict, where: str) -> list[str]:
    r = result["rollout"]
    lines = ["## 2. Rollouts", "",
             f"Model: {r['model']}; weights {r['weights']}. {r['includes']} Role map: {r['role_map']}. "
             f"Budget: {r['budget']}.",
             "", f"Per-chunk latency: wall time of one chunk ({r['forwards_per_chunk']} forwards and the cache "
             f"update), p50 and p95 over the chunks of the duration after the first (the timing protocol, "
             f"README.md), after a one-chunk warm-up rollout; first chunk: chunk 0 of the measured rollout (empty "
             f"cache). DiT-only FPS: output video frames (1 + {r['video_frames_per_latent']} (T - 1) for T latent "
             f"frames, {r['video_fps']:g} fps video) over the summed "
             f"chunk times; latent FPS: latent frames over the same time. Peak: CUDA max allocated since the "
             f"warm-up.", "",
             "| method | s | chunks | ms/chunk p50 | p95 | first chunk s | video FPS (DiT only) | latent FPS "
             "| KV bytes | peak GiB | device, dtype |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, entry in r["methods"].items():
        for w in entry["rows"]:
            lines.append(f"| {name} | {w['seconds']:g} | {w['chunks']} | {1e3 * w['chunk_latency_median_s']:.1f} | "
                         f"{1e3 * w['chunk_latency_p95_s']:.1f} | {w['first_chunk_latency_s']:.3f} | "
                         f"{w['video_fps']:.2f} | {w['latent_fps']:.2f} | {size(w['kv_bytes'])} | "
                         f"{fmt(w['peak_cuda_memory_gib'], '.2f')} | {where} |")
    for name, entry in r["methods"].items():
        lines += [f"- {name}: {note}" for note in entry["notes"]]
    sw = rollout_row(result, "sliding_window", min(r["seconds"]))
    lines += ["", f"Self Forcing as published: {SELF_FORCING['fps']:g} FPS and {SELF_FORCING['first_chunk_latency_s']:g} s "
              f"first-chunk latency on an {SELF_FORCING['gpu']}, a different GPU, end to end as its authors time "
              f"it (our numbers are DiT only: no VAE decode, no text encoding)."]
    if sw is not None:
        lines.append(f"Here sliding_window (Self Forcing's rolling cache) at {sw['seconds']:g} s: "
                     f"{sw['video_fps']:.2f} FPS ({sw['video_fps'] / SELF_FORCING['fps']:.2f}x the published) and "
                     f"{sw['first_chunk_latency_s']:.3f} s first chunk "
                     f"({sw['first_chunk_latency_s'] / SELF_FORCING['first_chunk_latency_s']:.2f}x), {where}.")
    return lines + [""]


def markdown(result: dict) -> str:
    where = f"{result['device_name']}, {result['dtype']}"
    lines = [f"# GPU check: {where}", ""]
    if result["label"]:
        lines += [f"**{result['label']}**", ""]
    state = "complete" if result["complete"] else "partial: still running or cut short when this was written"
    lines += [f"torch {result['torch']}, triton {result['triton']}, CUDA {result['cuda']}; started {result['started']}, "
              f"{result['elapsed_s']:.0f} s of a {result['budget_s']:g} s budget; {state}.", "",
              "## Targets", "", "| target | status | measured | device, dtype |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['status']} | {t['measured']} | {where} |" for t in targets(result)] + [""]
    if "kernels" in result:
        lines += kernel_section(result, where)
    if "rollout" in result:
        lines += rollout_section(result, where)
    if result["skipped"]:
        lines += ["## Skipped", ""] + [f"- {s}" for s in result["skipped"]] + [""]
    return "\n".join(lines)
