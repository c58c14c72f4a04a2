"""Run entry point (Hydra): build the backbone and the method, roll out, write run directories.

One run directory per generation key (bench/run_identity.py: model and weights, method and
its parameters, prompt entry, seed, sampler). The rollout goes to the longest requested
duration; every shorter duration is scored on its prefix. A rerun does only the missing
work: a longer rollout when more frames are needed, else the missing (duration, metric
family) pairs scored from the saved frames; rows already there are kept. A run is claimed
with a lock file first, so concurrent sweeps never compute it twice. Files: see
bench/run_files.py.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

import kernels
from bench.config import CONF_DIR, PromptEntry, RunConfig, register_schemas, to_run_config, validate
from bench.loggers import RunLogger, build_logger
from bench.models.base import Backbone, build_backbone
from bench.records import (
    claim,
    provenance,
    read_summary,
    remove_stale_stages,
    run_name,
    safe_child,
    staged_dir,
)
from bench.rollout import Rollout, generate
from bench.run_files import (
    csv_text,
    merge_rows,
    read_metric_rows,
    read_rollout,
    scalar_metrics,
    write_rollout,
)
from bench.run_identity import Plan, plan_work, run_key, scoring_spec
from bench.sampler import FlowSampler
from bench.video import from_uint8, to_uint8
from core.files import atomic_write_text, read_json_object, write_json
from core.system_numbers import TIMING_DEFINITION, TIMING_PROTOCOL, system_summary
from core.timeline import frame_timeline
from core.timing import device_name
from core.world import OTHER_SEED_OFFSET, simulate
from methods.base import METHODS, build_method
from metrics.base import VideoMeta
from metrics.suite import Suite, build_suite

log = logging.getLogger("forcebench")
register_schemas()


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


def full_cache_reference(run: RunConfig, prompt: PromptEntry, model: Backbone, sampler: FlowSampler,
                         device: torch.device) -> torch.Tensor:
    """The full-cache rollout of the trained horizon ([horizon_frames, C, H, W], quantised as
    saved) of this prompt, seed and prefix: the reference of full_cache_fidelity."""
    g = run.geometry()
    full = build_method(METHODS.get("full").config(), g, dtype=run.torch_dtype, device=device)
    frames = generate(model, full, prompt.timeline(), g.horizon_frames, run.seed, sampler,
                      prefill=ground_truth_prefix(run, prompt)).frames
    return from_uint8(to_uint8(frames))


def score_plan(suite: Suite, run: RunConfig, prompt: PromptEntry, rollout: Rollout, name: str, plan: Plan,
               reference: torch.Tensor | None = None) -> list[dict]:
    """Long-form metric rows of the planned (duration, family) pairs, each duration scored on
    its prefix of the saved (uint8) frames; ``reference``: the full-cache rollout inside the horizon."""
    g = run.geometry()
    rows = []
    for seconds, n in zip(run.durations, run.frames()):
        families = plan.score.get(float(seconds), [])
        if not families:
            continue
        meta = VideoMeta(fps=g.fps, prompts=prompt.timeline(), frames_per_chunk=g.frames_per_chunk,
                         prefix_frames=run.prefix(), seed=run.seed, model=run.model.name, chunks=rollout.chunks,
                         reference_frames=reference)
        rows += [{"run": name, "seconds": seconds, "frames": n, **row}
                 for row in suite.score(rollout.frames[:n], meta, families)]
    return rows


def summarise(run: RunConfig, name: str, key: dict, rollout: Rollout, rows: list[dict], plan: Plan,
              old: dict | None, suite: Suite) -> dict:
    """summary.json: per duration (recorded before or requested now) the system numbers, the
    whole-video metric values and what scored them."""
    g = run.geometry()
    spec = scoring_spec(run.metrics)
    scoring = {float(d["seconds_requested"]): (d["frames"], d.get("scoring", {})) for d in (old or {}).get("durations", [])}
    for seconds, n in zip(run.durations, run.frames()):
        done = dict(scoring.get(float(seconds), (n, {}))[1])
        for family in plan.score.get(float(seconds), []):
            done[family] = {**spec[family], "status": "unavailable" if family in suite.unavailable else "scored"}
        scoring[float(seconds)] = (n, done)
    durations = [{"seconds_requested": seconds,
                  **system_summary(rollout.chunks, frames, g.fps, run.model.video_frames(frames)),
                  "metrics": scalar_metrics(rows, seconds), "scoring": done}
                 for seconds, (frames, done) in sorted(scoring.items())]
    families = {f: s["version"] for d in durations for f, s in d["scoring"].items() if s["status"] == "scored"}
    return {
        "status": "ok",
        "run": name,
        "model": run.model.name,
        "method": run.method.shown_name,
        "method_params": run.method.params(),
        "prompt_id": key["prompt"]["id"],
        "seed": run.seed,
        "frames_generated": int(rollout.frames.shape[0]),
        "rounding": f"durations rounded up to whole chunks of {g.frames_per_chunk} frames at {g.fps:g} frames/s",
        "metrics_version": families,
        "metrics_unavailable": suite.unavailable,
        "encoders": suite.encoders,
        "timing": {"protocol": TIMING_PROTOCOL, "definition": TIMING_DEFINITION, "device": device_name(run.device),
                   "dtype": run.dtype},
        "durations": durations,
    }


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


def realise(run: RunConfig, prompt: PromptEntry, key: dict, final: Path, plan: Plan, old: dict | None,
            parts: tuple, on_chunk) -> tuple[dict, list[dict]]:
    """Do ``plan`` for one run directory and replace it (staged) with the result; returns the
    summary and every metric row. ``parts``: (model, method, sampler, suite, device)."""
    model, method, sampler, suite, device = parts
    g, name = run.geometry(), final.name
    finished = bool(old) and old.get("status") == "ok"
    rollout = None if plan.generate else read_rollout(final, g.layers, g.heads)
    meta = None
    if rollout is None:  # roll out (also when the saved rollout cannot be read back)
        plan = Plan(True, {float(d): suite.names() for d in run.durations})
        frames = max(max(run.frames()), old.get("frames_generated", 0) if finished else 0)
        rollout = generate(model, method, prompt.timeline(), frames, run.seed, sampler, on_chunk=on_chunk,
                           prefill=ground_truth_prefix(run, prompt))
        if not torch.isfinite(rollout.frames).all():
            raise NonFiniteError(f"the rollout produced non-finite frames ({name})")
        rollout = Rollout(from_uint8(to_uint8(rollout.frames)), rollout.chunks, rollout.prompt_encode_s)
        meta = {"run": name, "key": key, "method_repr": repr(method),
                "model_repr": f"{type(model).__name__}({sum(p.numel() for p in model.parameters())} parameters)",
                "weights": run.model.checkpoint or f"random init (init_seed={getattr(run.model, 'init_seed', None)})",
                "prompt_encode_s": rollout.prompt_encode_s, **provenance(device)}
    needs_reference = any("full_cache_fidelity" in families for families in plan.score.values())
    reference = None
    if needs_reference:  # the full cache's own rollout is its reference
        own = run.method.name == "full" and len(rollout.frames) >= g.horizon_frames
        reference = rollout.frames[:g.horizon_frames] if own else full_cache_reference(run, prompt, model, sampler, device)
    rows = merge_rows(read_metric_rows(final) if finished else [],
                      score_plan(suite, run, prompt, rollout, name, plan, reference))
    summary = summarise(run, name, key, rollout, rows, plan, old if finished else None, suite)
    with staged_dir(final) as stage:
        if meta is None:
            for file in final.iterdir():
                if file.name not in ("metrics.csv", "summary.json"):
                    shutil.copy2(file, stage / file.name)
        else:
            write_rollout(stage, run, rollout, meta)
        atomic_write_text(stage / "metrics.csv", csv_text(rows))
        write_json(stage / "summary.json", summary)  # last: marks the run finished
    log.info("done %s (%s): %d frames, %.1f ms/chunk, %.2f MiB KV", name, plan.describe(), summary["frames_generated"],
             1000 * summary["durations"][-1]["latency_mean_s"], summary["durations"][-1]["kv_mib"])
    return summary, rows


def check_requests(run: RunConfig, unavailable: set[str] = frozenset()) -> list[tuple[PromptEntry, dict, Path]]:
    """(prompt, generation key, run directory) of every selected prompt, after checking that the
    request can be done there (a safe name, no metric scored differently); ConfigError if not."""
    spec, jobs = scoring_spec(run.metrics), []
    for prompt in run.prompts.selected():
        key = run_key(run, prompt)
        final = safe_child(Path(run.out_dir), run_name(key))
        plan_work(read_summary(final), max(run.frames()), run.durations, spec, unavailable, run.force, final.name)
        jobs.append((prompt, key, final))
    return jobs


def execute(run: RunConfig, logger: RunLogger | None = None) -> list[Path]:
    """Do every selected prompt's missing work; returns the run directories (finished, skipped
    or failed). A failed run is recorded with its status and the others go on; a run another
    live process has claimed is left to it."""
    validate(run)
    device = torch.device(run.device)
    kernels.set_backend(None if run.attention == "auto" else run.attention)
    g = run.geometry()
    model = build_backbone(run.model).to(device=device, dtype=run.torch_dtype).eval()
    method = build_method(run.method, g, dtype=run.torch_dtype, device=device)
    sampler = FlowSampler(run.steps, model.default_shift, run.sampler)
    suite = build_suite(run.metrics, device)  # with metrics.strict, missing weights fail here, before any rollout
    spec, unavailable = scoring_spec(run.metrics), set(suite.unavailable)
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for removed in remove_stale_stages(out):
        log.info("removed %s (left by a killed run)", removed)
    jobs = check_requests(run, unavailable)
    logger = logger or build_logger(run.logger, run)
    quiet = not run.progress or bool(os.environ.get("CI"))
    for prompt, key, final in tqdm(jobs, desc=f"runs of {run.method.name}", unit="run", disable=quiet or len(jobs) < 2):
        with claim(final) as refresh:
            if refresh is None:
                log.info("skip %s (claimed by another running process)", final.name)
                continue
            old = read_summary(final)  # read again under the claim: another process may have finished it
            plan = plan_work(old, max(run.frames()), run.durations, spec, unavailable, run.force, final.name)
            if not plan:
                log.info("skip %s (finished)", final.name)
                continue
            bar = tqdm(total=max(run.frames()) // g.frames_per_chunk, desc=f"{method.config.name}:{prompt.id}",
                       unit="chunk", disable=quiet, leave=False)

            def on_chunk(_, bar=bar, refresh=refresh):
                bar.update()
                refresh()

            try:
                summary, rows = realise(run, prompt, key, final, plan, old, (model, method, sampler, suite, device),
                                        on_chunk)
            except Exception as err:  # recorded; the sweep goes on (KeyboardInterrupt and kills are not caught)
                summary = record_failure(final, final.name, key, err, device)
                log.error("%s %s: %s", summary["status"], final.name, summary["message"])
                continue
            finally:
                bar.close()
        final.with_name(f"{final.name}.failed.json").unlink(missing_ok=True)
        logger.log_run(final, summary, rows)
    logger.close()
    return [final for _, _, final in jobs]


def failed_runs(runs: list[RunConfig]) -> list[str]:
    """One line per run of ``runs`` whose directory holds a failure (status and reason), after a sweep."""
    lines = []
    for run in runs:
        for prompt in run.prompts.selected():
            final = Path(run.out_dir) / run_name(run_key(run, prompt))
            failure = read_summary(final) or {}
            beside = final.with_name(f"{final.name}.failed.json")
            if beside.exists():
                failure = read_json_object(beside) or failure
            if failure.get("status", "ok") != "ok":
                lines.append(f"{final.name}: {failure['status']}: {failure.get('message', '')}")
    return lines


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> None:
    execute(to_run_config(cfg))
