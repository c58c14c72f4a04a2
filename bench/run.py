"""Run entry point (Hydra): build the backbone and the method, roll out, write run directories.

One run directory per (model, method and its parameters, prompt entry, seed). The rollout
goes to the longest requested duration; every shorter duration is summarised from its
prefix (and scored on it by the metric suite). Files: config.yaml, meta.json, frames.npy,
video.gif, chunks.csv, cache_heads.csv, metrics.csv, summary.json (written last: its
presence with status ok marks a finished run; a failed run's summary carries its status).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import asdict
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import kernels
from bench.config import (
    CONF_DIR,
    PromptEntry,
    RunConfig,
    register_schemas,
    to_run_config,
    validate,
)
from bench.loggers import RunLogger, build_logger
from bench.models.base import build_backbone, resolve_path
from bench.records import (
    atomic_write_text,
    file_digest,
    is_finished,
    provenance,
    read_summary,
    run_name,
    staged_dir,
    write_json,
)
from bench.rollout import Rollout, frame_timeline, generate
from bench.sampler import FlowSampler
from bench.video import save_gif, save_npy, to_uint8
from bench.world import OTHER_SEED_OFFSET, simulate
from methods.base import build_method
from metrics.base import VideoMeta
from metrics.suite import Suite, build_suite
from metrics.system import LATENCY_INCLUDES, system_summary

log = logging.getLogger("forcebench")
register_schemas()


def run_key(run: RunConfig, prompt: PromptEntry) -> dict:
    """What determines a run's frames: model (and its weights' digest), method, prompt, seed, sampler."""
    return {
        "model": asdict(run.model),
        "weights_sha1": file_digest(resolve_path(run.model.checkpoint)) if run.model.checkpoint else None,
        "method": run.method.params(),
        "prompt": asdict(prompt),
        "seed": run.seed,
        "sampler": {"kind": run.sampler, "steps": run.steps},
        "dtype": run.dtype,
        "prefix_frames": run.prefix(),
        **({"prefix_source": run.prefix_source} if run.prefix_source != "ground_truth" else {}),
    }


def ground_truth_prefix(run: RunConfig, prompt: PromptEntry) -> torch.Tensor | None:
    """The toy world's first ``run.prefix()`` frames of this prompt in model space ([1, P, 3, H, W]
    in [-1, 1]): of this seed, or of another seed with ``prefix_source=other_seed``; None without
    a prefix."""
    if not run.prefix():
        return None
    g = run.geometry()
    seed = run.seed + (OTHER_SEED_OFFSET if run.prefix_source == "other_seed" else 0)
    truth = simulate(frame_timeline(prompt.timeline(), g.fps, g.frames_per_chunk), run.prefix(), seed)
    return torch.from_numpy(truth.frames)[None] * 2 - 1


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def score_prefixes(suite: Suite, run: RunConfig, prompt: PromptEntry, rollout: Rollout, name: str) -> list[dict]:
    """Long-form metric rows for every requested duration (each scored on its prefix)."""
    g = run.geometry()
    frames = rollout.frames.float().clamp(0, 1)
    rows = []
    for seconds, n in zip(run.durations, run.frames()):
        meta = VideoMeta(fps=g.fps, prompts=prompt.timeline(), frames_per_chunk=g.frames_per_chunk,
                         prefix_frames=run.prefix(), seed=run.seed, model=run.model.name, chunks=rollout.chunks)
        rows += [{"run": name, "seconds": seconds, "frames": n, **row} for row in suite.score(frames[:n], meta)]
    return rows


def write_run(stage: Path, run: RunConfig, key: dict, rollout: Rollout, meta: dict, metric_rows: list[dict],
              suite: Suite) -> dict:
    """Write every file of a finished rollout into ``stage``; returns the summary."""
    g = run.geometry()
    atomic_write_text(stage / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(run)))
    frames = to_uint8(rollout.frames)
    save_npy(stage / "frames.npy", frames)
    save_gif(stage / "video.gif", frames, fps=g.fps)
    atomic_write_text(stage / "chunks.csv", _csv([
        {"chunk": c.index, "frame_start": c.frame_start, "frame_end": c.frame_end,
         "prompt_index": c.prompt_index, "wall_s": f"{c.wall_s:.6f}", "kv_bytes": c.kv_bytes,
         "tokens_total": int(c.tokens.sum()), "tokens_per_head_min": int(c.tokens.min()),
         "tokens_per_head_max": int(c.tokens.max())}
        for c in rollout.chunks]))
    atomic_write_text(stage / "cache_heads.csv", _csv([
        {"chunk": c.index, "layer": layer, "head": head, "tokens": int(c.tokens[layer, head])}
        for c in rollout.chunks for layer in range(g.layers) for head in range(g.heads)]))
    atomic_write_text(stage / "metrics.csv", _csv(metric_rows))
    durations = []
    for seconds, frames_needed in zip(run.durations, run.frames()):
        scalars = {r["metric"]: r["value"] for r in metric_rows
                   if r["seconds"] == seconds and r["segment"] == -1 and r["status"] == "ok"}
        durations.append({"seconds_requested": seconds, **system_summary(rollout.chunks, frames_needed, g.fps),
                          "metrics": scalars})
    summary = {
        "status": "ok",
        "run": meta["run"],
        "model": run.model.name,
        "method": run.method.shown_name,
        "method_params": run.method.params(),
        "prompt_id": key["prompt"]["id"],
        "seed": run.seed,
        "frames_generated": int(rollout.frames.shape[0]),
        "rounding": f"durations rounded up to whole chunks of {g.frames_per_chunk} frames at {g.fps:g} frames/s",
        "metrics_version": suite.versions(),
        "metrics_unavailable": suite.unavailable,
        "encoders": suite.encoders,
        "latency_includes": LATENCY_INCLUDES,
        "durations": durations,
    }
    write_json(stage / "meta.json", meta)
    write_json(stage / "summary.json", summary)  # last: marks the run finished
    return summary


class NonFiniteError(RuntimeError):
    pass


def failure_status(err: BaseException) -> str:
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "failed: out of memory"
    if isinstance(err, NonFiniteError):
        return "failed: non-finite values"
    return "failed: error"


def record_failure(final: Path, name: str, key: dict, err: BaseException, device: torch.device) -> dict:
    """Write a failed run's record. A finished result already there (from a shorter
    duration ladder) is never replaced: the failure then goes beside it, ``<run>.failed.json``."""
    summary = {"status": failure_status(err), "message": f"{type(err).__name__}: {err}".splitlines()[0],
               "run": name, "prompt_id": key["prompt"]["id"], "seed": key["seed"], "method": key["method"]["name"]}
    if (read_summary(final) or {}).get("status") == "ok":
        write_json(final.with_name(f"{final.name}.failed.json"), {**summary, **provenance(device)})
        return summary
    with staged_dir(final) as stage:
        write_json(stage / "meta.json", {"run": name, "key": key, **provenance(device)})
        write_json(stage / "summary.json", summary)
    return summary


def execute(run: RunConfig, logger: RunLogger | None = None) -> list[Path]:
    """Run every selected prompt of ``run``; returns the run directories (finished, skipped
    or failed). A failed run is recorded with its status and the others go on."""
    validate(run)
    device = torch.device(run.device)
    kernels.set_backend(None if run.attention == "auto" else run.attention)
    g = run.geometry()
    num_frames = max(run.frames())
    model = build_backbone(run.model).to(device=device, dtype=run.torch_dtype).eval()
    method = build_method(run.method, g, dtype=run.torch_dtype, device=device)
    sampler = FlowSampler(run.steps, model.default_shift, run.sampler)
    suite = build_suite(run.metrics, device)  # with metrics.strict, missing weights fail here, before any rollout
    logger = logger or build_logger(run.logger, run)
    quiet = not run.progress or bool(os.environ.get("CI"))
    out_dirs = []
    prompts = run.prompts.selected()
    for prompt in tqdm(prompts, desc=f"runs of {run.method.name}", unit="run", disable=quiet or len(prompts) < 2):
        key = run_key(run, prompt)
        name = run_name(key)
        final = Path(run.out_dir) / name
        out_dirs.append(final)
        if is_finished(final, num_frames) and not run.force:
            log.info("skip %s (finished)", name)
            continue
        bar = tqdm(total=num_frames // g.frames_per_chunk, desc=f"{method.config.name}:{prompt.id}",
                   unit="chunk", disable=quiet, leave=False)
        try:
            with staged_dir(final) as stage:
                rollout = generate(model, method, prompt.timeline(), num_frames, run.seed, sampler,
                                   on_chunk=lambda _, bar=bar: bar.update(),
                                   prefill=ground_truth_prefix(run, prompt))
                if not torch.isfinite(rollout.frames).all():
                    raise NonFiniteError(f"the rollout produced non-finite frames ({name})")
                meta = {"run": name, "key": key, "method_repr": repr(method),
                        "model_repr": f"{type(model).__name__}({sum(p.numel() for p in model.parameters())} parameters)",
                        "weights": run.model.checkpoint or f"random init (init_seed={getattr(run.model, 'init_seed', None)})",
                        "prompt_encode_s": rollout.prompt_encode_s, **provenance(device)}
                rows = score_prefixes(suite, run, prompt, rollout, name)
                summary = write_run(stage, run, key, rollout, meta, rows, suite)
        except Exception as err:  # recorded; the sweep goes on (KeyboardInterrupt and kills are not caught)
            summary = record_failure(final, name, key, err, device)
            log.error("%s %s: %s", summary["status"], name, summary["message"])
            continue
        finally:
            bar.close()
        logger.log_run(final, summary, rows)
        last = summary["durations"][-1]
        log.info("done %s: %d frames, %.1f ms/chunk, %.2f MiB KV", name, summary["frames_generated"],
                 1000 * last["latency_mean_s"], last["kv_mib"])
    logger.close()
    return out_dirs


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> None:
    execute(to_run_config(cfg))
