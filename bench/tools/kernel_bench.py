"""Benchmark of head-ragged attention: the Triton kernel against SDPA and FlexAttention.

    forcebench bench-kernels [--backbone toy|wan|all] [--dtype bfloat16] [--repeats 30]
        [--batch 1] [--out results/perf]

Shapes are one layer's attention call of a backbone (heads, head_dim, queries per chunk)
with the per-head cache lengths that each cache method produces at its default budget
once its cache is full (``distributions``). For each shape and implementation
(kernels/bench_impls.py) it checks the output against the float32 reference, then reports
the median time (CUDA events after warm-up; on a CPU wall time), the achieved bandwidth
(cache K and V read once, the chunk's q, k, v read and the output written, over the
time) as a fraction of the measured device-to-device copy bandwidth, and the peak extra
memory of a call. Writes ``<out>/kernels_<device>.json`` and ``.md``.

Without CUDA only the PyTorch implementations run, at toy shapes: the Triton kernel runs
on a CPU only under its interpreter, which is for tests, not timing. GPU numbers need a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.cli_args import Options, option, parse
from bench.models.base import ModelConfig
from bench.models.toy import ToyConfig
from bench.models.wan_config import WanConfig
from core.dtypes import DTYPES
from core.errors import ConfigError, require
from core.files import atomic_write_text, write_json
from core.geometry import Geometry
from core.timing import median_seconds
from kernels.bench_impls import IMPLEMENTATIONS, Case
from kernels.rope import Rope3D
from kernels.view import RaggedKV
from methods import METHODS, MethodConfig
from methods.roles import load_toy_profile, role_map_with_shares

STRESS_FRAMES = (1 / 1560, 2 / 1560, 8 / 1560, 30 / 1560, 120 / 1560, 480 / 1560, 1, 2, 4, 8, 16, 21)


def default_method(name: str) -> MethodConfig:
    """A method's default config: its registered dataclass's defaults, which is what
    conf/method/<name>.yaml composes to (those files set nothing else). No Hydra needed."""
    return METHODS.get(name).config(name=name)


def backbone_config(backbone: str) -> ModelConfig:
    """The sizes of ``toy`` or ``wan`` (Wan2.1-T2V-1.3B): the config dataclass's defaults, no weights."""
    return {"toy": ToyConfig, "wan": WanConfig}[backbone]()


def head_forcing_frames(g: Geometry, roles: list[str]) -> list[int]:
    """Frames each head of one layer holds under Head Forcing's default allocation."""
    cfg = default_method("head_forcing")
    per_layer = np.array([roles] * g.layers)
    a = cfg.allocate(g, per_layer)
    frames = {"local": a.local_frames, "anchor": cfg.anchor_sink_frames + a.anchor_window_frames,
              "memory": a.memory_window_frames + a.episodes}
    return [frames[r] for r in roles]


def layer_roles(backbone: str, heads: int) -> list[str]:
    """Roles of one layer: for the toy, its most varied profiled layer; for Wan (no
    profile without real weights), the toy profile's role shares over 12 heads."""

    profile = load_toy_profile()
    if backbone == "toy":
        return max(profile["roles"], key=lambda layer: len(set(layer)))
    return role_map_with_shares(profile, 1, heads)["roles"][0]


def distributions(backbone: str, g: Geometry, stress: bool | None = None) -> dict[str, list[int]]:
    """Per-head cache lengths (tokens) of one layer at a method's default budget, full cache;
    ``stress`` (default: for Wan) adds the ragged stress distribution of STRESS_FRAMES."""
    tpf = g.tokens_per_frame
    out = {"full (trained horizon)": [g.horizon_frames * tpf] * g.heads}
    budgets = {name: default_method(name).frames(g) for name in ("sink", "uniform")}
    if budgets["sink"] == budgets["uniform"]:
        budgets = {"sink / uniform": budgets["sink"]}
    for label, frames in budgets.items():
        out[f"{label} ({frames} frames)"] = [frames * tpf] * g.heads
    out["head_forcing"] = [f * tpf for f in head_forcing_frames(g, layer_roles(backbone, g.heads))]
    if backbone == "wan" and stress is None or stress:
        lengths = [max(1, round(f * tpf)) for f in STRESS_FRAMES]
        out[f"ragged stress ({min(lengths)} .. {max(lengths)})"] = lengths
    return out


def make_case(g: Geometry, lengths: list[int], batch: int, dtype: torch.dtype, device: torch.device,
              seed: int = 0, theta: float = 10000.0) -> Case:
    """Random inputs of one layer's call with per-head cache ``lengths`` and frame positions."""
    gen = torch.Generator().manual_seed(seed)
    H, D, nq, tpf = g.heads, g.head_dim, g.frames_per_chunk * g.tokens_per_frame, g.tokens_per_frame
    n = sum(lengths)
    q, ks, vs = (torch.randn(batch, H, nq, D, generator=gen).to(device, dtype) for _ in range(3))
    k, v = (torch.randn(batch, n, D, generator=gen).to(device, dtype) for _ in range(2))
    pos = torch.cat([torch.arange(length) // tpf for length in lengths]).to(device)  # re-encoded 0..frames-1
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int64)
    frames = [-(-length // tpf) for length in lengths]
    q_pos = torch.stack([f + torch.arange(nq) // tpf for f in frames]).to(device)
    cache = RaggedKV(k, v, pos, offsets, q_pos[:, ::tpf])
    return Case(q, ks, vs, q_pos, cache, Rope3D(D, theta, g.rope_max_positions))


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Measured device-to-device copy bandwidth, bytes/s (read + write)."""
    n = (1 << 30 if device.type == "cuda" else 1 << 27) // 4
    src, dst = torch.ones(n, device=device), torch.empty(n, device=device)
    return 2 * src.numel() * 4 / median_seconds(lambda: dst.copy_(src), device, 2, repeats)


def bytes_moved(case: Case) -> int:
    """The least one call must move: cache K, V and the chunk's q, k, v read once, out written."""
    return case.q.element_size() * (2 * case.cache.k.numel() + 4 * case.q.numel())


def attention_flops(case: Case) -> int:
    """Multiply-adds x 2 of one call: q.k and p.v over each head's cache plus the chunk's own keys."""
    B, H, Nq, D = case.q.shape
    keys = case.cache.k.shape[1] + H * Nq  # summed over heads
    return 4 * B * Nq * D * keys


def peak_extra_bytes(fn, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def measure(case: Case, names: list[str], device: torch.device, warmup: int, repeats: int,
            copy_bw: float) -> list[dict]:
    expected = IMPLEMENTATIONS["reference"](case)().float()
    rows = []
    for name in names:
        fn = IMPLEMENTATIONS[name](case)
        out = fn()
        err = float((out.float() - expected).abs().max() / expected.abs().max())
        seconds = median_seconds(fn, device, warmup, repeats)
        peak = peak_extra_bytes(fn, device)
        rows.append({"implementation": name, "median_ms": seconds * 1e3, "max_rel_err": err,
                     "bandwidth_gbs": bytes_moved(case) / seconds / 1e9,
                     "bandwidth_fraction": bytes_moved(case) / seconds / copy_bw,
                     "peak_extra_mib": None if peak is None else peak / 2**20})
    return rows


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cuda"


def run_benchmark(backbones: list[str], dtype: torch.dtype, batch: int, warmup: int, repeats: int,
                  device: torch.device) -> dict:
    gpu = device.type == "cuda"
    names = [n for n in IMPLEMENTATIONS if gpu or n != "triton"]
    copy_bw = copy_bandwidth(device, max(3, repeats // 3))
    shapes = []
    for backbone in backbones:
        g = backbone_config(backbone).geometry()
        for dist, lengths in distributions(backbone, g).items():
            case = make_case(g, lengths, batch, dtype, device)
            shapes.append({"backbone": backbone, "distribution": dist, "batch": batch, "heads": g.heads,
                           "head_dim": g.head_dim, "queries": case.q.shape[2], "lengths": lengths,
                           "bytes": bytes_moved(case),
                           "rows": measure(case, names, device, warmup, repeats, copy_bw)})
            del case
    note = ("" if gpu else "No CUDA device: PyTorch implementations at toy shapes only; the Triton kernel runs on a "
            "CPU only under its interpreter (tests, not timing). GPU numbers need a GPU.")
    return {"device": device_slug(device), "device_name": torch.cuda.get_device_name(device) if gpu else "cpu",
            "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__, "warmup": warmup,
            "repeats": repeats, "copy_bandwidth_gbs": copy_bw / 1e9, "note": note, "shapes": shapes}


def markdown(result: dict) -> str:
    lines = [f"# Head-ragged attention on {result['device_name']} ({result['dtype']})", "",
             f"Median of {result['repeats']} calls after {result['warmup']} warm-up calls; bandwidth as a "
             f"fraction of the measured copy bandwidth ({result['copy_bandwidth_gbs']:.1f} GB/s). "
             f"torch {result['torch']}.", ""]
    if result["note"]:
        lines += [f"**{result['note']}**", ""]
    for shape in result["shapes"]:
        lengths = shape["lengths"]
        lines += [f"## {shape['backbone']}: {shape['distribution']}", "",
                  f"B={shape['batch']}, H={shape['heads']}, D={shape['head_dim']}, {shape['queries']} queries; "
                  f"cache tokens per head {min(lengths)}..{max(lengths)} (total {sum(lengths)})", "",
                  "| implementation | median ms | vs fastest | GB/s | of copy bw | peak extra MiB | max rel err |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        fastest = min(r["median_ms"] for r in shape["rows"])
        for r in shape["rows"]:
            peak = "n/a" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.1f}"
            lines.append(f"| {r['implementation']} | {r['median_ms']:.3f} | {r['median_ms'] / fastest:.2f}x | "
                         f"{r['bandwidth_gbs']:.1f} | {100 * r['bandwidth_fraction']:.1f} % | {peak} | "
                         f"{r['max_rel_err']:.1e} |")
        lines.append("")
    return "\n".join(lines)


@dataclass
class KernelBenchOptions(Options):
    """``forcebench bench-kernels``'s options."""

    backbone: str | None = option(None, "shapes to run (default: all on CUDA, toy on a CPU)",
                                  choices=("toy", "wan", "all"))
    dtype: str | None = option(None, "default: bfloat16 on CUDA, float32 on a CPU", choices=tuple(DTYPES))
    batch: int = option(1, "batch of one attention call", minimum=1)
    warmup: int = option(5, "untimed calls before the timed ones", minimum=0)
    repeats: int = option(30, "timed calls (the median is reported)", minimum=1)
    device: str | None = option(None, "default: cuda when available, else cpu")
    out: str = option("results/perf", "folder of kernels_<device>.json and .md", output="dir")

    def validate(self) -> None:
        if self.device is not None:
            kind = self.device.split(":")[0]
            require(kind in ("cpu", "cuda"), "--device", self.device, "allowed: cpu, cuda, cuda:<index>")
            require(kind == "cpu" or torch.cuda.is_available(), "--device", self.device,
                    "CUDA is not available here; allowed: cpu")


def main(argv: list[str] | None = None) -> int:
    args = parse("forcebench bench-kernels", argv, KernelBenchOptions, description=__doc__.split("\n\n")[0])
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    backbone = args.backbone or ("all" if gpu else "toy")
    if backbone != "toy" and not gpu:
        raise ConfigError(f"--backbone={backbone!r} on a CPU: Wan shapes need a GPU; allowed: toy")
    dtype = DTYPES[args.dtype or ("bfloat16" if gpu else "float32")]
    out = Path(args.out)
    result = run_benchmark(["toy", "wan"] if backbone == "all" else [backbone], dtype, args.batch,
                           args.warmup, args.repeats, device)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"kernels_{result['device']}"
    write_json(stem.with_suffix(".json"), result)
    text = markdown(result)
    atomic_write_text(stem.with_suffix(".md"), text + "\n")
    print(text)
    print(f"wrote {stem}.json and {stem}.md")
    return 0
