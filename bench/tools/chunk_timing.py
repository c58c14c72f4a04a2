"""Per-chunk latency of every cache method, interleaved so that background load hits all alike.

    forcebench time-chunks [--methods budgeted+full] [--budget-frames 16] [--seconds 60]
        [--warmup-seconds 6] [--load 1] [--threads 1] [--profile-seconds 15] [--out results/perf]

One rollout per method on the toy backbone (shipped weights), all advanced together one chunk
at a time, the order rotating every round (A B C, B C A, C A B, ...): whatever else the machine
does at some moment lands on every method, not on whichever happened to run then. Chunks after
``warmup_seconds`` (caches full) are the samples: p50 / p95 / spread per method, the method's
share of the chunk (``ChunkRecord.method_s``: views, write, re-cache bookkeeping) and the ratio
to sliding_window (the median over chunks of chunk i against the window's chunk i, timed moments apart). The pass runs twice: on the idle machine and with ``load`` busy processes
competing for the cores; the rankings of the two passes are compared (Kendall's tau and every
pair that swaps). A third, profiled pass (torch.profiler, ``profile_seconds`` per method, one
method after another) splits a chunk into the backbone's forward without attention, attention,
the method's bookkeeping and the rest (sampler, noise). Writes ``<out>/chunk_timing_<device>.json``
and ``.md`` (bench/tools/chunk_timing_report.py).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau
from torch.profiler import ProfilerActivity, profile

from bench.cli_args import Options, option, parse
from bench.config import select_methods
from bench.models import build_backbone
from bench.preflight import compose_run_config
from bench.rollout import ChunkRecord, rollout_chunks
from bench.sampler import FlowSampler
from bench.tools.chunk_timing_report import write_report
from core.errors import require
from core.timing import Latency, device_name
from methods import METHODS, build_method

PROMPT = "a red ball bounces in a blue room"
PROFILE_LABELS = {"forward": "forcebench.forward", "attention": "forcebench.attention", "method": "forcebench.method"}


@dataclass
class TimingOptions(Options):
    """What the timing pass runs (each a ``--option`` of the command)."""

    methods: str = option("budgeted+full", "method names and sweep selectors, joined by + or ,")
    budget_frames: int = option(16, "cached frames a head for every method with a budget (equal KV bytes)",
                                minimum=0)
    seconds: float = option(60.0, "video length")
    warmup_seconds: float = option(6.0, "chunks starting before this are not samples (the caches fill)", minimum=0)
    load: int = option(1, "busy processes of the loaded pass (0: no loaded pass)", minimum=0)
    threads: int = option(1, "torch threads of the timed process", minimum=1)
    profile_seconds: float = option(15.0, "rollout length of the profiled breakdown pass (0: no breakdown)",
                                    minimum=0)
    seed: int = option(0, "noise seed")
    out: str = option("results/perf", "folder of chunk_timing_<device>.json and .md", output="dir")

    def validate(self) -> None:
        require(self.seconds > self.warmup_seconds, "--seconds", self.seconds,
                f"must exceed --warmup-seconds={self.warmup_seconds}")
        self.method_names()  # unknown names and selectors fail here, before any rollout

    def method_names(self) -> list[str]:
        """Method names and sweep selectors (bench/config.py select_methods), joined by ``+`` or ``,``."""
        names: list[str] = []
        for part in self.methods.replace(",", "+").split("+"):
            part = part.strip()
            for name in [part] if part in METHODS else select_methods(part).split(","):
                if name not in names:
                    names.append(name)
        return names


def busy(stop: mp.Event) -> None:
    """A competing job: float work on the CPU until told to stop."""
    x = np.random.default_rng(0).random((256, 256))
    while not stop.is_set():
        x = np.tanh(x @ x.T / 256)


class Load:
    """``n`` busy processes while inside the ``with`` block."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> Load:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.procs = [ctx.Process(target=busy, args=(self.stop,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        time.sleep(0.5 if self.n else 0)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def build_methods(options: TimingOptions, names: list[str]) -> tuple[dict, object]:
    """name -> (method config, run config) at the common budget; and the toy backbone."""
    configs = {}
    for name in names:
        overrides = [f"method={name}", "metrics=none"]
        run = compose_run_config(overrides)
        if hasattr(run.method, "budget_frames"):
            run = compose_run_config([*overrides, f"method.budget_frames={options.budget_frames}"])
        run.method.check(run.geometry(), run.geometry().frames_for_seconds(options.seconds))
        configs[name] = run
    first = next(iter(configs.values()))
    return configs, build_backbone(first.model).eval()


def interleaved_pass(configs: dict, model, frames: int, seed: int) -> dict[str, list[ChunkRecord]]:
    """Every method's rollout to ``frames`` advanced one chunk at a time, the order rotating each round."""
    g = model.geometry
    runs = {name: rollout_chunks(model, build_method(run.method, g), [(0.0, PROMPT)], frames, seed,
                                 FlowSampler(run.steps, model.default_shift, run.sampler))
            for name, run in configs.items()}
    records: dict[str, list[ChunkRecord]] = {name: [] for name in runs}
    names = list(runs)
    for c in range(frames // g.frames_per_chunk):
        for name in names[c % len(names):] + names[:c % len(names)]:
            records[name].append(next(runs[name])[0])
    return records


def summarise_pass(records: dict[str, list[ChunkRecord]], warmup_frames: int) -> dict[str, dict]:
    """Per method: latency of the steady chunks, the method's share of them, KV bytes at the end."""
    out = {}
    for name, chunks in records.items():
        steady = [c for c in chunks if c.frame_start >= warmup_frames]
        wall = np.array([c.wall_s for c in steady])
        out[name] = {**Latency.of(wall).as_dict(), "method_share": float(sum(c.method_s for c in steady) / wall.sum()),
                     "kv_bytes": chunks[-1].kv_bytes}
    window = records.get("sliding_window")
    for name, row in out.items():  # chunk i of a method against chunk i of the window, run moments apart
        row["vs_window"] = None if window is None else float(np.median(
            [c.wall_s / w.wall_s for c, w in zip(records[name], window) if c.frame_start >= warmup_frames]))
    return out


def ranking_agreement(idle: dict[str, dict], loaded: dict[str, dict]) -> dict:
    """Kendall's tau between the passes' p50 rankings, and every pair that swaps, with the idle gap."""
    names = sorted(idle)
    a, b = [idle[n]["p50_s"] for n in names], [loaded[n]["p50_s"] for n in names]
    tau = kendalltau(a, b).statistic
    swaps = []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            if (idle[x]["p50_s"] - idle[y]["p50_s"]) * (loaded[x]["p50_s"] - loaded[y]["p50_s"]) < 0:
                fast, slow = sorted((idle[x]["p50_s"], idle[y]["p50_s"]))
                gap = slow / fast - 1
                swaps.append({"pair": [x, y], "idle_gap": gap})
    return {"kendall_tau": float(tau), "swapped_pairs": sorted(swaps, key=lambda s: -s["idle_gap"])}


def breakdown(configs: dict, model, options: TimingOptions) -> dict[str, dict]:
    """Share of a chunk per part, from torch.profiler's labels (one method after another)."""
    g = model.geometry
    frames = g.frames_for_seconds(options.profile_seconds)
    out = {}
    for name, run in configs.items():
        method = build_method(run.method, g)
        sampler = FlowSampler(run.steps, model.default_shift, run.sampler)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            chunks = [r for r, _ in rollout_chunks(model, method, [(0.0, PROMPT)], frames, options.seed, sampler)]
        label = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in PROFILE_LABELS.values()}
        total = sum(c.wall_s for c in chunks)
        forward, attention, bookkeeping = (label.get(PROFILE_LABELS[k], 0.0) for k in ("forward", "attention", "method"))
        out[name] = {"chunk_s": total / len(chunks), "forward": (forward - attention) / total,
                     "attention": attention / total, "method": bookkeeping / total,
                     "other": max(0.0, 1 - (forward + bookkeeping) / total)}
    return out


def measure(options: TimingOptions) -> dict:
    torch.set_num_threads(options.threads)
    names = options.method_names()
    configs, model = build_methods(options, names)
    g = model.geometry
    warmup, frames = g.frames_for_seconds(options.warmup_seconds), g.frames_for_seconds(options.seconds)
    with torch.no_grad():
        interleaved_pass(configs, model, 2 * g.frames_per_chunk, options.seed)  # first calls: allocations, caches
        idle = summarise_pass(interleaved_pass(configs, model, frames, options.seed), warmup)
        loaded = None
        if options.load:
            with Load(options.load):
                loaded = summarise_pass(interleaved_pass(configs, model, frames, options.seed), warmup)
        parts = breakdown(configs, model, options) if options.profile_seconds else {}
    return {"device": device_name("cpu"), "device_type": "cpu", "dtype": "float32", "threads": options.threads, "options": asdict(options),
            "model": "toy (embedded toy backbone, shipped weights)", "steps": next(iter(configs.values())).steps,
            "idle": idle, "loaded": loaded, "agreement": ranking_agreement(idle, loaded) if loaded else None,
            "breakdown": parts}


def main(argv: list[str] | None = None) -> int:
    options = parse("forcebench time-chunks", argv, TimingOptions, description=__doc__.splitlines()[0])
    out = Path(options.out)
    result = measure(options)
    paths = write_report(result, out)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
