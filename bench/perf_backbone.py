"""Timing of the Wan backbone's chunk generation at full size (needs a CUDA GPU).

    python -m bench.perf_backbone --model wan_1_3b [--checkpoint PATH] [--vae FOLDER]
        [--method full] [--seconds 5] [--dtype bfloat16] [--out results/perf]

Runs bench.rollout.generate (4 denoising forwards + the clean forward per chunk, the
Self Forcing renoise sampler with shift 5) after a one-chunk warm-up, and reports the
per-chunk latency (median, p95), the first chunk's latency, frames per second and the
peak CUDA memory; with ``--vae`` also the same with the VAE decode of every chunk.
Without ``--checkpoint`` the weights are random (timing only, said in the output).
Prompt encoding is excluded (stand-in text features). Writes
``<out>/backbone_<device>.json`` and ``.md``.

Without CUDA it stops with a one-line message; ``--model wan_tiny`` then runs the tiny
config on the CPU to show the path works (labelled: not a measurement of the real model).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

VIDEO_FRAMES_PER_LATENT = 4  # the Wan VAE's temporal stride: 16 fps video from 4 latent frames a second


def load_run_config(model: str, checkpoint: str | None, vae: str | None):
    from hydra import compose

    from bench.config import to_run_config
    from bench.preflight import hydra_context

    overrides = [f"model={model}", f"model.checkpoint={checkpoint or 'null'}", f"model.vae={vae or 'null'}",
                 "model.text_encoder=null", "model.text_embeddings=null", "metrics=none"]
    with hydra_context():
        run = to_run_config(compose("config", overrides=overrides))
    run.model.check()
    return run


def timed(fn, device: torch.device, log: list[float]):
    """``fn`` wrapped to append its wall time (synchronised on CUDA) to ``log``."""

    def call(*args, **kwargs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        log.append(time.perf_counter() - t0)
        return out

    return call


def measure(args: argparse.Namespace) -> dict:
    from bench.models import build_backbone
    from bench.rollout import generate
    from bench.sampler import FlowSampler
    from methods import METHODS, build_method

    cuda = torch.cuda.is_available()
    if not cuda and args.model != "wan_tiny":
        raise SystemExit(f"bench.perf_backbone: --model {args.model} needs a CUDA GPU and none is available "
                         f"(--model wan_tiny runs the same path on the CPU as a check)")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[args.dtype]
    run = load_run_config(args.model, args.checkpoint, args.vae)
    g = run.geometry()
    with torch.device(device):
        model = build_backbone(run.model)
    model = model.to(dtype=dtype).eval()
    method = build_method(METHODS.get(args.method).config(), g, dtype=dtype, device=device)
    sampler = FlowSampler(args.steps, model.default_shift, "renoise")
    decode_s: list[float] = []
    stream = model.decode_stream  # the rollout decodes chunk after chunk through this
    model.decode_stream = lambda: timed(stream(), device, decode_s)
    timeline = [(0.0, "a red fox runs through fresh snow in a pine forest")]

    generate(model, method, timeline, g.frames_per_chunk, 0, sampler)  # warm-up
    decode_s.clear()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    frames = g.frames_for_seconds(args.seconds)
    out = generate(model, method, timeline, frames, 0, sampler)
    walls = np.array([c.wall_s for c in out.chunks])
    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "label": None if cuda else "wan_tiny on the CPU: checks the path; not a measurement of Wan2.1-1.3B",
        "weights": args.checkpoint or f"random (init_seed={run.model.init_seed}): timing only",
        "dtype": args.dtype,
        "method": args.method,
        "frames": frames,
        "chunks": len(walls),
        "forwards_per_chunk": args.steps + 1,
        "tokens_per_chunk": g.frames_per_chunk * g.tokens_per_frame,
        "chunk_latency_median_s": float(np.median(walls)),
        "chunk_latency_p95_s": float(np.percentile(walls, 95)),
        "first_chunk_latency_s": float(walls[0]),
        "latent_fps": frames / float(walls.sum()),
        "video_fps": VIDEO_FRAMES_PER_LATENT * frames / float(walls.sum()),
        "peak_cuda_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "kv_cache_gib_at_end": out.chunks[-1].kv_bytes / 2**30,
        "includes": "denoising forwards, the clean forward and the cache update, after a one-chunk "
                    "warm-up; excludes prompt encoding (stand-in features)",
        "decode": run.model.vae or "stand-in (not timed as a VAE)",
    }
    if run.model.vae:
        total = float(walls.sum()) + sum(decode_s)
        result["decode_latency_median_s"] = float(np.median(decode_s))
        result["video_fps_with_decode"] = VIDEO_FRAMES_PER_LATENT * frames / total
        result["first_chunk_latency_with_decode_s"] = float(walls[0] + decode_s[0])
    return result


def markdown(r: dict) -> str:
    lines = [f"# Backbone timing: {r['model']} on {r['device']}", ""]
    if r["label"]:
        lines += [f"**{r['label']}**", ""]
    lines += ["| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in r.items() if k not in ("model", "device", "label")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_backbone", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wan_1_3b", choices=["wan_1_3b", "wan_tiny"])
    parser.add_argument("--checkpoint", help="Self Forcing .pt, Wan .safetensors or diffusers folder (default: random weights)")
    parser.add_argument("--vae", help="diffusers AutoencoderKLWan folder (times the decode too)")
    parser.add_argument("--method", default="full", help="cache method at its default config")
    parser.add_argument("--seconds", type=float, default=5.0, help="video length (rounded up to whole chunks)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args(argv)
    result = measure(args)
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    name = f"backbone_{slug}" if args.model == "wan_1_3b" else f"backbone_{slug}_{args.model}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out / name}.json and .md")
    return result


if __name__ == "__main__":
    main()
