"""One command that checks forcebench on a CUDA GPU: the attention kernels and full-size rollouts.

    python -m bench.tools.gpu_check [--out results/perf] [--dry-run] [--budget-s 420]
    make gpu-check

1. Kernels at Wan2.1-T2V-1.3B shapes (12 heads, head_dim 128, 4680 queries a chunk, bfloat16):
   the Triton kernel, padded SDPA and compiled FlexAttention (kernels/bench_impls.py) on the
   per-head cache lengths of head_forcing, full and sink / uniform (bench/tools/kernel_bench.py).
   Each is checked against the float32 reference first (a failing one is reported, not
   timed), then timed; bandwidth as a fraction of the measured copy bandwidth.
2. Rollouts of the full-size DiT with random bf16 weights (bench/tools/perf_backbone.py) under
   sliding_window, head_forcing and sink at their default configs, to 60 s (5 s is its prefix).
3. The targets, each PASS, FAIL or not measured (bench/tools/gpu_check_report.py).

Writes ``<out>/gpu_check_<device>.json`` and ``.md`` after every shape and method, so a run cut
short leaves its files. Before each step it checks the time left of ``--budget-s`` and skips,
saying so, what would not fit. Configs are the registered dataclasses' defaults: nothing on
this path imports Hydra, omegaconf, diffusers, wandb, lpips, open_clip, scipy or jinja2.

Without a CUDA GPU: one line on stderr, exit status 2, nothing written. ``--dry-run`` runs
the same path on the CPU at tiny shapes (the tiny Wan config, float32; the Triton kernel
only under TRITON_INTERPRET=1) and labels its files: dry run, not a measurement.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from bench.cli_args import Options, error_line, option, parse
from bench.models import Backbone
from bench.models.wan_config import WanConfig, kv_cache_bytes
from bench.models.wan_io import VIDEO_FRAMES_PER_LATENT
from bench.tools.gpu_check_report import markdown, targets
from bench.tools.kernel_bench import (
    attention_flops,
    bytes_moved,
    copy_bandwidth,
    device_slug,
    distributions,
    make_case,
)
from bench.tools.perf_backbone import (
    build_model,
    measure_method,
    method_config,
    model_config,
    synthetic_role_maps,
)
from core.errors import ConfigError, require
from core.files import atomic_write_text, write_json
from core.timing import median_seconds
from kernels import interpreting
from kernels.bench_impls import IMPLEMENTATIONS, Case

PROG = "bench.tools.gpu_check"
IMPLS = {"gpu": ("triton", "sdpa_padded", "flex"), "dry": ("triton", "reference", "sdpa_padded", "flex")}
# max |out - float32 reference| allowed, as a fraction of max |reference| (the same inputs, in float32)
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
ROLLOUT_METHODS = ("sliding_window", "head_forcing", "sink")  # the two the targets compare run first
SECONDS = (5.0, 60.0)
STEPS = 4  # Self Forcing's denoising steps
KERNEL_SHARE = 0.35  # the kernels must be done by this share of the budget; the rollouts get the rest
RESERVE_S = 5.0  # kept back for the last write
PLAN_MARGIN = 1.25  # a duration is started only if this times its estimated time fits


@dataclasses.dataclass
class Check:
    """What one check runs on, and the result it writes as it goes."""

    dry_run: bool
    device: torch.device
    dtype: torch.dtype
    model: WanConfig
    out: Path
    budget_s: float
    result: dict
    start: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def stem(self) -> Path:
        return self.out / f"gpu_check_{self.result['device']}"

    def deadline(self, share: float = 1.0) -> float:
        return self.start + share * self.budget_s - RESERVE_S

    def skip(self, what: str) -> None:
        self.result["skipped"].append(what)
        print(f"{PROG}: skipped {what}", file=sys.stderr)

    def save(self, complete: bool = False) -> None:
        self.result["elapsed_s"] = time.monotonic() - self.start
        self.result["complete"] = complete
        where = {"device": self.result["device_name"], "dtype": self.result["dtype"]}
        self.result["targets"] = [{**t, **where} for t in targets(self.result)]
        write_json(self.stem.with_suffix(".json"), self.result)
        atomic_write_text(self.stem.with_suffix(".md"), markdown(self.result))


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def float32_case(case: Case) -> Case:
    """The same inputs in float32: what the reference is computed from."""
    cache = dataclasses.replace(case.cache, k=case.cache.k.float(), v=case.cache.v.float())
    return dataclasses.replace(case, q=case.q.float(), k_self=case.k_self.float(), v_self=case.v_self.float(),
                               cache=cache)


def check_and_time(c: Check, name: str, case: Case, expected: torch.Tensor, copy_bw: float) -> dict:
    """One implementation on one case: correct within the dtype's tolerance, then timed."""
    dtype = c.result["dtype"]
    if name == "triton" and c.device.type != "cuda" and not interpreting():
        return {"status": "skipped", "note": "the Triton kernel runs on a CPU only under TRITON_INTERPRET=1"}
    if time.monotonic() > c.deadline(KERNEL_SHARE):
        return {"status": "skipped", "note": "the kernels' share of the time budget is spent"}
    try:
        fn = IMPLEMENTATIONS[name](case)
        err = float((fn().float() - expected).abs().max())
        scale = float(expected.abs().max())
        row = {"max_abs_err": err, "reference_max_abs": scale, "tolerance_abs": TOLERANCE[dtype] * scale}
        if not err <= TOLERANCE[dtype] * scale:  # NaN fails too
            return row | {"status": "failed correctness",
                          "note": f"max abs error {err:.2e} > {TOLERANCE[dtype] * scale:.2e}; not timed"}
        warmup, repeats = c.result["kernels"]["warmup"], c.result["kernels"]["repeats"]
        seconds = median_seconds(fn, c.device, warmup, repeats)
    except Exception as exc:  # a compile error or OOM of one implementation must not hide the others
        traceback.print_exc()
        return {"status": "error", "note": one_line(exc)}
    return row | {"status": "ok", "median_ms": 1e3 * seconds, "bandwidth_gbs": bytes_moved(case) / seconds / 1e9,
                  "bandwidth_fraction": bytes_moved(case) / seconds / copy_bw,
                  "tflops": attention_flops(case) / seconds / 1e12}


def run_kernels(c: Check) -> None:
    dists = distributions("wan", c.model.geometry(), stress=False)
    dists = {"head_forcing": dists.pop("head_forcing"), **dists}  # the targets' distribution first
    largest = max(sum(lengths) for lengths in dists.values())
    part = c.result["kernels"]
    if time.monotonic() > c.deadline(KERNEL_SHARE):
        c.skip("all kernel shapes: the kernels' share of the time budget is spent before they start")
        return
    copy_bw = copy_bandwidth(c.device, part["repeats"])
    part["copy_bandwidth_gbs"] = copy_bw / 1e9
    for label, lengths in dists.items():
        if time.monotonic() > c.deadline(KERNEL_SHARE):
            c.skip(f"kernels on {label}: the kernels' share of the time budget ({KERNEL_SHARE:.0%}) is spent")
            continue
        try:
            case = make_case(c.model.geometry(), lengths, part["batch"], c.dtype, c.device)
            expected = IMPLEMENTATIONS["reference"](float32_case(case))().float()
        except Exception as exc:  # without a reference nothing on this shape can be checked; the rest goes on
            traceback.print_exc()
            c.skip(f"kernels on {label}: the float32 reference failed: {one_line(exc)}")
            continue
        shape = {"distribution": label, "lengths": lengths, "largest": sum(lengths) == largest,
                 "bytes": bytes_moved(case), "flops": attention_flops(case), "rows": []}
        part["shapes"].append(shape)
        for name in IMPLS["dry" if c.dry_run else "gpu"]:
            row = check_and_time(c, name, case, expected, copy_bw)
            shape["rows"].append({"implementation": name, **row, "device": c.result["device_name"],
                                  "dtype": c.result["dtype"]})
            c.save()
        del case, expected
        if c.device.type == "cuda":
            torch.cuda.empty_cache()


def plan_seconds(c: Check, name: str, per_chunk_s: float | None, left_s: float) -> list[float]:
    """The durations that fit ``left_s`` at ``per_chunk_s`` (unknown before the first method: all)."""
    g = c.model.geometry()
    if per_chunk_s is None:
        return list(SECONDS)
    needed = {s: PLAN_MARGIN * per_chunk_s * (g.frames_for_seconds(s) // g.frames_per_chunk + 1) for s in SECONDS}
    for s in SECONDS:
        if needed[s] > left_s:
            c.skip(f"{name} at {s:g} s: about {needed[s]:.0f} s needed, {left_s:.0f} s of its share of the budget left")
    return [s for s in SECONDS if needed[s] <= left_s]


def run_method(c: Check, name: str, model: Backbone | None, role_maps: dict[str, str], seconds: list[float],
               share_s: float) -> Backbone | None:
    """One method's rollout into the result; returns the model (built on first use)."""
    cfg = method_config(name, role_maps)
    params = cfg.params()
    if "role_map" in params:
        params["role_map"] = "synthetic (see role_map)"
    entry = c.result["rollout"]["methods"][name] = {"config": params, "rows": [], "notes": []}
    deadline = time.monotonic() + share_s  # building the model counts against the first method's share
    try:
        model = model or build_model(c.model, c.dtype, c.device)
        measured = measure_method(model, cfg, seconds, STEPS, deadline=deadline)
    except Exception as exc:  # one method's failure must not hide the others'
        traceback.print_exc()
        entry["notes"].append(f"failed: {one_line(exc)}")
        return model
    where = {"device": c.result["device_name"], "dtype": c.result["dtype"]}
    entry["rows"] = [{**row, **where} for row in measured["rows"]]
    if measured["stopped"]:
        entry["notes"].append(f"stopped: {measured['stopped']}")
        c.skip(f"{name}: {measured['stopped']}")
    return model


def run_rollouts(c: Check) -> None:
    """The methods one after another, each given an equal share of the time left."""
    g, model, per_chunk_s = c.model.geometry(), None, None
    with tempfile.TemporaryDirectory(dir=c.out) as folder:  # the synthetic role files, removed afterwards
        role_maps, synthetic = synthetic_role_maps(g.layers, g.heads, folder)
        c.result["rollout"]["role_map"] = (f"synthetic: the toy profile's role shares in every layer "
                                           f"({synthetic['roles.json']['counts']} of {g.layers} x {g.heads} "
                                           f"heads), timing only")
        for i, name in enumerate(ROLLOUT_METHODS):
            share_s = (c.deadline() - time.monotonic()) / (len(ROLLOUT_METHODS) - i)
            if share_s <= 0:
                c.skip(f"{name}: the time budget is spent")
                continue
            seconds = plan_seconds(c, name, per_chunk_s, share_s)
            if seconds:
                model = run_method(c, name, model, role_maps, seconds, share_s)
                rows = c.result["rollout"]["methods"][name]["rows"]
                per_chunk_s = rows[-1]["chunk_latency_median_s"] if rows else per_chunk_s
            c.save()


@dataclasses.dataclass
class GpuCheckOptions(Options):
    """The GPU check's options."""

    out: str = option("results/perf", "folder of the .json and .md", output="dir")
    dry_run: bool = option(False, "the same path on the CPU at tiny shapes")
    budget_s: float = option(420.0, "stop starting work after this (seconds)")

    def validate(self) -> None:
        require(self.budget_s > 0, "--budget-s", self.budget_s, "allowed: > 0")
        if not self.dry_run and not torch.cuda.is_available():
            raise ConfigError(f"no CUDA GPU found (torch {torch.__version__}, CUDA build {torch.version.cuda}); run it "
                              f"on a machine with an NVIDIA GPU, or use --dry-run to check the path on the CPU")


def new_check(args: GpuCheckOptions) -> Check:
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    model = model_config("wan_tiny" if args.dry_run else "wan_1_3b")
    g = model.geometry()
    name = "cpu" if args.dry_run else torch.cuda.get_device_name(device)
    dtype_name = str(dtype).removeprefix("torch.")
    try:
        triton = version("triton")
    except PackageNotFoundError:
        triton = None
    result = {
        "device": device_slug(device) + ("-dry-run" if args.dry_run else ""), "device_name": name,
        "dtype": dtype_name, "dry_run": args.dry_run,
        "label": "dry run: not a measurement (tiny Wan config on the CPU; checks the path only)" if args.dry_run
        else None,
        "torch": torch.__version__, "triton": triton, "cuda": torch.version.cuda, "budget_s": args.budget_s,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "elapsed_s": 0.0, "complete": False,
        "skipped": [],
        "kernels": {"shape_of": "the tiny Wan config" if args.dry_run else "Wan2.1-T2V-1.3B", "batch": 1,
                    "heads": g.heads, "head_dim": g.head_dim, "queries": g.frames_per_chunk * g.tokens_per_frame,
                    "tolerance": TOLERANCE[dtype_name], "warmup": 1 if args.dry_run else 3,
                    "repeats": 3 if args.dry_run else 20,
                    "timer": "wall clock" if args.dry_run else "CUDA events", "shapes": []},
        "rollout": {"model": "the tiny Wan config" if args.dry_run else "Wan2.1-T2V-1.3B (30 layers x 12 heads, "
                    "480x832, 1560 tokens a latent frame)",
                    "weights": f"random (init_seed={model.init_seed}), {dtype_name}: speed and memory only",
                    "includes": "Per chunk: the denoising forwards, the clean forward and the cache update; prompt "
                                "encoding (stand-in features) and the VAE decode (stand-in) are not timed.",
                    "budget": ", ".join(f"{m}: budget_frames={method_config(m, {}).budget_frames}"
                                        for m in ROLLOUT_METHODS) + " (each method's default)",
                    "role_map": "not read yet", "seconds": list(SECONDS), "forwards_per_chunk": STEPS + 1,
                    "video_frames_per_latent": VIDEO_FRAMES_PER_LATENT, "video_fps": VIDEO_FRAMES_PER_LATENT * g.fps,
                    "horizon_frames": g.horizon_frames,
                    "dense_horizon_kv_bytes": kv_cache_bytes(model, g.horizon_frames, dtype.itemsize),
                    "methods": {}},
    }
    return Check(args.dry_run, device, dtype, model, Path(args.out), args.budget_s, result)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(PROG, argv, GpuCheckOptions, description=__doc__.split("\n\n")[0])
    except ConfigError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return 2
    c = new_check(args)
    c.out.mkdir(parents=True, exist_ok=True)
    c.save()
    threads = torch.get_num_threads()
    if args.dry_run:  # at tiny shapes a second thread only adds overhead, and stalls for seconds on busy cores
        torch.set_num_threads(1)
    try:
        run_kernels(c)
        run_rollouts(c)
    finally:
        torch.set_num_threads(threads)
    c.save(complete=True)
    print(markdown(c.result))
    print(f"wrote {c.stem}.json and {c.stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
