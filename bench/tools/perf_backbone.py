"""Timing and memory of the Wan backbone per cache method and duration (needs a CUDA GPU).

    python -m bench.tools.perf_backbone [--model wan_1_3b] [--methods full sink head_forcing ...]
        [--seconds 5 30 60] [--checkpoint PATH] [--vae FOLDER] [--role-map FILE]
        [--dtype bfloat16] [--out results/perf]

For every method (default: all registered, each at its default config: the method
dataclass's defaults, which is what conf/method/ composes; built without Hydra, as is the
model config) it runs one rollout to the longest duration (bench.rollout.generate: 4
denoising forwards + the clean forward per chunk, the Self Forcing renoise sampler with
shift 5) after a one-chunk warm-up, and reports for each duration's prefix: per-chunk
latency (median, p95; denoising plus cache update), the first chunk's latency, frames per
second of video (latent frames x 4 at 16 fps) and of latent frames, the allocated KV bytes
at its end and the peak CUDA memory up to it; with ``--vae`` also FPS and first-chunk latency including the VAE decode. A
method that runs out of GPU memory keeps the durations it finished and is marked ``oom``.
Without ``--checkpoint`` the weights are random (speed and memory do not depend on them).
Head Forcing, two_tier, forcing_kv (a role map) and pyramid_forcing (labels) read head roles:
without ``--role-map`` they get files with the toy profiles' role shares in every layer
(synthetic, said in the output). Prompt encoding
is excluded (stand-in text features). Writes ``<out>/backbone_<device>.json`` and ``.md``.

Without CUDA it stops with a one-line message; ``--model wan_tiny`` then runs the tiny
config on the CPU to show the path works (labelled: not a measurement of the real model).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.cli_args import Options, error_line, option, parse
from bench.models import Backbone, build_backbone
from bench.models.wan_config import WanConfig
from bench.rollout import ChunkRecord, generate
from bench.sampler import FlowSampler
from core.dtypes import DTYPES
from core.errors import ConfigError, require
from core.files import atomic_write_text, write_json
from core.geometry import Geometry
from core.paths import REPO_DIR
from core.registry import RegistryError
from core.system_numbers import system_summary
from core.timing import Latency
from methods import METHODS, MethodConfig, build_method
from methods.pyramid_profile import (
    TOY_PYRAMID_LABELS,
    pyramid_labels_with_shares,
    read_pyramid_labels,
)
from methods.roles import load_toy_profile, role_map_with_shares

# Methods that read a head-role file, and which synthetic file each gets on a model without a profile.
ROLE_MAP_METHODS = {"head_forcing": "roles.json", "two_tier": "roles.json", "forcing_kv": "roles.json",
                    "pyramid_forcing": "pyramid_labels.json"}
# What conf/model/wan_tiny.yaml sets differently from WanConfig's defaults (Wan2.1-T2V-1.3B);
# tests/tools/test_perf_backbone.py checks that both give the config Hydra composes.
WAN_TINY = {"dim": 64, "layers": 2, "heads": 2, "ffn_dim": 128, "text_dim": 32, "text_len": 8,
            "latent_height": 8, "latent_width": 8, "horizon_frames": 9}
PROG = "python -m bench.tools.perf_backbone"
PROMPT = "a red fox runs through fresh snow in a pine forest"


class OutOfTime(Exception):
    """A rollout passed its deadline; the chunks it finished are kept."""


@dataclass
class PerfConfig:
    """The model and method configs of one timed rollout (what ``forcebench run`` would compose)."""

    model: WanConfig
    method: MethodConfig

    def geometry(self) -> Geometry:
        return self.model.geometry()


def model_config(model: str, checkpoint: str | None = None, vae: str | None = None) -> WanConfig:
    """``wan_1_3b`` or ``wan_tiny`` as conf/model/ composes it, built without Hydra; only the
    given local files (no text encoder: stand-in text features)."""
    sizes = WAN_TINY if model == "wan_tiny" else {}
    return WanConfig(checkpoint=checkpoint, vae=vae, text_encoder=None, text_embeddings=None, **sizes)


def method_config(name: str, role_maps: dict[str, str]) -> MethodConfig:
    """A method's default config (its dataclass's defaults, as conf/method/<name>.yaml composes),
    reading its head roles from ``role_maps`` (role-file name -> path) when it needs them."""
    role_map = {"role_map": role_maps[ROLE_MAP_METHODS[name]]} if ROLE_MAP_METHODS.get(name) in role_maps else {}
    return METHODS.get(name).config(name=name, **role_map)


def load_run_config(model: str, method: str, checkpoint: str | None, vae: str | None,
                    role_maps: dict[str, str]) -> PerfConfig:
    """The method's default config on ``model``; ``role_maps``: role-file name -> path."""
    return PerfConfig(model_config(model, checkpoint, vae), method_config(method, role_maps))


def synthetic_role_maps(layers: int, heads: int, folder: str) -> tuple[dict[str, str], dict[str, dict]]:
    """(file name -> path, file name -> content) of the role files written to ``folder``: Head
    Forcing's role map (read by head_forcing, two_tier and forcing_kv) and Pyramid Forcing's labels,
    each with the toy profile's shares in every layer. Timing only."""
    maps = {"roles.json": role_map_with_shares(load_toy_profile(), layers, heads),
            "pyramid_labels.json": pyramid_labels_with_shares(read_pyramid_labels(REPO_DIR / TOY_PYRAMID_LABELS),
                                                              layers, heads)}
    for name, content in maps.items():
        (Path(folder) / name).write_text(json.dumps(content))
    return {name: str(Path(folder) / name) for name in maps}, maps


def build_model(cfg: WanConfig, dtype: torch.dtype, device: torch.device) -> Backbone:
    """The backbone built on ``device`` (random weights seeded by init_seed without a checkpoint)."""
    with torch.device(device):
        model = build_backbone(cfg)
    return model.to(dtype=dtype).eval()


def prefix_row(method: str, seconds: float, frames: int, chunks: list[ChunkRecord], cuda: bool, fps: float,
               video_frames: int, with_decode: bool) -> dict:
    """The timing protocol's numbers (metrics/system.py system_summary) of the chunks that make up
    the first ``frames`` latent frames: steady-state per-chunk p50 / p95 (the chunks after the
    first), first chunk, video and latent FPS of the DiT time (denoising + cache update); with
    ``with_decode`` also the FPS and first chunk with decoding (and prompt encoding)."""
    s = system_summary(chunks, frames, fps, video_frames)
    row = {"method": method, "seconds": seconds, "frames": frames, "chunks": len(chunks), "video_frames": video_frames,
           "chunk_latency_median_s": s["latency_p50_s"], "chunk_latency_p95_s": s["latency_p95_s"],
           "first_chunk_latency_s": s["first_chunk_latency_s"], "latent_fps": s["fps_latent"], "video_fps": s["fps"],
           "kv_bytes": s["kv_bytes"], "kv_cache_mib": s["kv_mib"],
           "peak_cuda_memory_gib": s["peak_memory_bytes"] / 2**30 if cuda else None}
    if with_decode:
        row["decode_latency_median_s"] = Latency.of([c.decode_s for c in chunks]).p50_s
        row["video_fps_with_decode"] = s["fps_e2e"]
        row["first_chunk_latency_with_decode_s"] = s["first_chunk_latency_e2e_s"]
    return row


def measure_method(model: Backbone, method_cfg: MethodConfig, seconds: list[float], steps: int = 4,
                   time_decode: bool = False, deadline: float | None = None) -> dict:
    """One rollout of ``model`` under ``method_cfg`` to the longest of ``seconds``, after a
    one-chunk warm-up; a row for every duration it reached. Out of GPU memory, or past
    ``deadline`` (time.monotonic()), it stops and keeps the chunks it finished (``stopped``
    says why). ``time_decode``: time the VAE decode of every chunk as well."""
    g = model.geometry
    param = next(model.parameters())
    device, cuda = param.device, param.device.type == "cuda"
    frames = {s: g.frames_for_seconds(s) for s in sorted(seconds)}
    total = max(frames.values()) // g.frames_per_chunk
    method_cfg.check(g, max(frames.values()))
    method = build_method(method_cfg, g, dtype=param.dtype, device=device)
    sampler = FlowSampler(steps, model.default_shift, "renoise")
    chunks: list[ChunkRecord] = []

    def record(chunk: ChunkRecord) -> None:
        chunks.append(chunk)
        if deadline is not None and len(chunks) < total and time.monotonic() > deadline:
            raise OutOfTime

    stopped = None
    try:
        generate(model, method, [(0.0, PROMPT)], g.frames_per_chunk, 0, sampler)  # warm-up
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        generate(model, method, [(0.0, PROMPT)], total * g.frames_per_chunk, 0, sampler, on_chunk=record)
    except torch.OutOfMemoryError:
        stopped = f"out of GPU memory at chunk {len(chunks)} ({len(chunks) * g.frames_per_chunk / g.fps:g} s)"
    except OutOfTime:
        stopped = (f"time budget: stopped after chunk {len(chunks)} of {total} "
                   f"({len(chunks) * g.frames_per_chunk / g.fps:g} s)")
    rows = [prefix_row(method_cfg.name, s, n, chunks[:n // g.frames_per_chunk], cuda, g.fps,
                       model.cfg.video_frames(n), time_decode)
            for s, n in frames.items() if chunks and n // g.frames_per_chunk <= len(chunks)]
    del method
    if cuda:
        torch.cuda.empty_cache()
    return {"method": method_cfg.name, "rows": rows, "stopped": stopped}


@dataclass
class PerfOptions(Options):
    """What ``python -m bench.tools.perf_backbone`` times."""

    model: str = option("wan_1_3b", "model config (wan_tiny: the tiny config, a CPU check of the path)",
                        choices=("wan_1_3b", "wan_tiny"))
    methods: tuple[str, ...] | None = option(None, "cache methods at their default configs (default: all)")
    seconds: tuple[float, ...] = option((5.0, 30.0, 60.0), "video lengths (each rounded up to whole chunks)")
    checkpoint: str | None = option(None, "Self Forcing .pt, Wan .safetensors or diffusers folder "
                                          "(default: random weights)")
    vae: str | None = option(None, "diffusers AutoencoderKLWan folder (times the decode too)")
    role_map: str | None = option(None, "role map for head_forcing / two_tier / forcing_kv "
                                        "(default: synthetic, toy role shares)")
    steps: int = option(4, "denoising forwards a chunk", minimum=1)
    dtype: str = option("bfloat16", "weights and activations", choices=("bfloat16", "float16", "float32"))
    out: str = option("results/perf", "folder of backbone_<device>.json and .md", output="dir")

    def validate(self) -> None:
        require(all(s > 0 for s in self.seconds), "--seconds", self.seconds, "allowed: durations > 0")
        require(self.model == "wan_tiny" or torch.cuda.is_available(), "--model", self.model,
                "needs a CUDA GPU and none is available; allowed here: wan_tiny (the same path on the CPU, as a check)")
        for name in self.methods or ():
            try:
                METHODS.get(name)  # unknown names fail before any rollout
            except RegistryError as err:
                raise ConfigError(f"--methods: {err}") from None
        model_config(self.model, self.checkpoint, self.vae).check()


def measure(args: PerfOptions) -> dict:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    methods = list(args.methods or METHODS.names())
    model_cfg = model_config(args.model, args.checkpoint, args.vae)
    g, dtype = model_cfg.geometry(), DTYPES[args.dtype]
    longest = max(g.frames_for_seconds(s) for s in args.seconds)
    results, skipped, role_map_note = [], {}, args.role_map or "none needed"
    with tempfile.TemporaryDirectory() as folder:
        role_maps = {}
        if any(m in ROLE_MAP_METHODS for m in methods):
            role_maps, synthetic = synthetic_role_maps(g.layers, g.heads, folder)
            role_map_note = (f"synthetic: the toy profiles' role shares in every layer "
                             f"({synthetic['roles.json']['counts']} heads; Pyramid Forcing "
                             f"{synthetic['pyramid_labels.json']['counts']}), timing only")
            if args.role_map:
                role_maps["roles.json"] = args.role_map
                role_map_note = f"{args.role_map}; {role_map_note} for pyramid_forcing"
        for name in methods:
            try:
                method_cfg = method_config(name, role_maps)
                method_cfg.check(g, longest)  # before building the model
            except ConfigError as err:  # a default budget that does not fit this model: say so, go on
                skipped[name] = str(err)
                continue
            model = build_model(model_cfg, dtype, device)
            results.append(measure_method(model, method_cfg, args.seconds, args.steps, time_decode=bool(args.vae)))
            del model
    if not results:
        raise ConfigError(f"--model={args.model!r}: no method's default config fits it: {skipped}")
    return {
        "model": args.model,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "label": None if cuda else "wan_tiny on the CPU: checks the path; not a measurement of Wan2.1-1.3B",
        "weights": args.checkpoint or f"random (init_seed={model_cfg.init_seed}): speed and memory only",
        "role_map": role_map_note,
        "dtype": args.dtype,
        "forwards_per_chunk": args.steps + 1,
        "tokens_per_chunk": g.frames_per_chunk * g.tokens_per_frame,
        "includes": "per chunk: denoising forwards, the clean forward and the cache update, after a one-chunk "
                    "warm-up; excludes prompt encoding (stand-in features)",
        "decode": args.vae or "not timed (no --vae)",
        "rows": [row for r in results for row in r["rows"]],
        "oom": {r["method"]: r["stopped"] for r in results if r["stopped"]},
        "skipped": skipped,
    }


def markdown(r: dict) -> str:
    lines = [f"# Backbone timing: {r['model']} on {r['device']} ({r['dtype']})", ""]
    if r["label"]:
        lines += [f"**{r['label']}**", ""]
    lines += [f"Weights: {r['weights']}. Role map: {r['role_map']}. {r['includes']}; decode: {r['decode']}.", "",
              "| method | s | chunks | ms/chunk (median) | p95 | first chunk s | video FPS | FPS with decode "
              "| first chunk with decode s | KV MiB | peak GiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(value, fmt):
        return "n/a" if value is None else format(value, fmt)

    for w in r["rows"]:
        lines.append(f"| {w['method']} | {w['seconds']:g} | {w['chunks']} | {1e3 * w['chunk_latency_median_s']:.1f} | "
                     f"{1e3 * w['chunk_latency_p95_s']:.1f} | {w['first_chunk_latency_s']:.3f} | {w['video_fps']:.2f} | "
                     f"{f(w.get('video_fps_with_decode'), '.2f')} | {f(w.get('first_chunk_latency_with_decode_s'), '.3f')} | "
                     f"{w['kv_cache_mib']:.2f} | {f(w['peak_cuda_memory_gib'], '.2f')} |")
    for method, why in r["oom"].items():
        lines += ["", f"{method}: {why}"]
    for method, why in r["skipped"].items():
        lines += ["", f"{method}: skipped, its default config does not fit: {why}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse(PROG, argv, PerfOptions, description=__doc__.splitlines()[0])
    result = measure(args)
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    name = f"backbone_{slug}" if args.model == "wan_1_3b" else f"backbone_{slug}_{args.model}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", markdown(result))
    print(markdown(result))
    print(f"wrote {out / name}.json and .md")
    return result


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:
        print(error_line(PROG, err), file=sys.stderr)
        sys.exit(2)
