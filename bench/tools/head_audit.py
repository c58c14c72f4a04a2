"""``forcebench audit-heads``: do the head classifiers of Head Forcing, Forcing-KV, Pyramid Forcing
and Dummy Forcing agree, are they stable, what do they cost, and do the heads they call
long-range matter?

On the toy backbone (``--weights``), with the calibration of ``forcebench profile`` (the same
prompts and seeds, ``draw_calibration``; 32 prompts x 2 seeds x 4 steps by default, the
calibration of results/head_roles/toy.json):

1. labels: every classifier on the same full-cache calibration rollouts (one
   ``CalibrationRecorder`` per rollout records what all four need; its per-rollout statistics
   are summed over any subset of rollouts, which is what a calibration on that subset records);
2. agreement between classifiers: the common binary "long-range vs not" mapping
   (bench/tools/head_audit_stats.py, ``BINARY``, and a stricter ``ALTERNATIVE``), confusion
   matrices, Cohen's kappa, and the full contingency tables with the adjusted Rand index;
3. stability of each classifier with itself: disjoint prompt halves, the two seeds of every
   prompt, and ``--steps`` vs ``--stability-steps`` denoising steps on the same prompts and
   seeds (the steps split rolls every calibration entry out a second time);
4. cost: CPU seconds (``time.process_time``) per calibration rollout of each classifier's
   recorder alone, of a plain full-cache rollout, and of the classification itself, on the
   first ``--cost-rollouts`` calibration entries;
5. ablation: for each classifier, a head-masked cache (``HeadMaskedWindow``, private to this
   module, not a registered method): the heads it calls long-range see only the current
   chunk, every other head a sliding window of the last ``--ablation-window`` frames (default
   horizon - chunk = 18: the full cache inside the trained horizon, repacked positions), against
   ``--ablation-draws`` random head sets of the same size; scored by continuation PSNR
   (metrics/oracle.py) after a ground-truth prefix, paired over prompts x seeds with
   bench/report/stats.py's ``paired_comparison`` (bootstrap interval, sign-flip p, MDD).

Writes ``--out`` (default results/head_audit/): report.json, report.md, labels.png (one panel
per classifier) and ablation.png. Every input is checked before any work; a bad one is a
one-line ConfigError (exit 2) and nothing is written.
"""

from __future__ import annotations

import os
import platform
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.cli_args import Options, option, parse
from bench.config import WORLD_FRAME_SHAPE
from bench.models.base import Backbone
from bench.prompt_sets import load_prompt_set
from bench.report.stats import paired_comparison
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.tools.head_audit_report import write_report
from bench.tools.head_audit_stats import ALTERNATIVE, BINARY, compare, to_binary
from bench.tools.profile import (
    CLASSIFIERS,
    CalibrationRecorder,
    ClassifierOptions,
    ProfileConfig,
    draw_calibration,
    dummy_result,
    forcing_kv_result,
    head_forcing_labels,
    label_counts,
    load_toy,
    pyramid_result,
)
from bench.video import from_uint8, to_uint8
from core.errors import require
from core.geometry import Geometry
from core.paths import REPO_DIR
from core.timeline import frame_timeline
from core.world import simulate
from methods.base import build_method
from methods.bounded import BoundedMethod
from methods.full import FullConfig
from methods.head_forcing.profile import Profiler
from methods.pyramid_profile import LogitProfiler, PyramidThresholds
from methods.roles import RoleThresholds, local_mass
from methods.sliding_window import SlidingWindowConfig
from metrics.oracle import oracle_scores

PROFILER_KEYS = ("mass", "queries", "sink", "sink_queries")
LOGIT_KEYS = ("frame_sum", "frame_positive", "frame_count", "token_positive", "token_count")
SHIPPED = {"head_forcing": "results/head_roles/toy.json", "pyramid_forcing": "results/head_roles/toy_pyramid.json"}
MACHINE_NOTE = ("CPU seconds are time.process_time of this process (torch on --threads threads) on a machine "
                "shared with other work (load averages below): they count this process's own CPU time, but "
                "contention for cores, caches and memory bandwidth inflates them; compare them with each other, "
                "not with other machines")


@dataclass
class AuditConfig:
    """The audit's sizes (the calibration's are ProfileConfig's)."""

    stability_steps: int = 1  # the second denoising-step setting of the stability check
    cost_rollouts: int = 4  # calibration entries timed per recorder
    ablation_prompts: int = 4  # the first train-split prompts of conf/prompts/toy.yaml
    ablation_seeds: int = 2  # seeds 0 .. n-1
    ablation_seconds: float = 10.0  # video length (rounded up to whole chunks)
    ablation_steps: int = 4  # denoising steps of the ablation rollouts
    ablation_draws: int = 6  # random head sets per classifier
    ablation_window: int = 18  # frames the unmasked heads keep (repacked; <= horizon - chunk)
    prefix_frames: int = 18  # ground-truth frames before generation (a multiple of the chunk)
    ablation_rng_seed: int = 0  # random head sets and bootstrap streams
    resamples: int = 2000  # bootstrap resamples
    alpha: float = 0.05  # level of the one-sided tests and the MDD (power 0.8)
    threads: int = 1  # torch CPU threads

    def __post_init__(self) -> None:
        for key in ("stability_steps", "ablation_steps"):
            require(1 <= getattr(self, key) <= 1000, f"--{key.replace('_', '-')}", getattr(self, key),
                    "allowed: 1 to 1000")
        for key in ("cost_rollouts", "ablation_prompts", "ablation_seeds", "ablation_draws", "ablation_window",
                    "threads"):
            require(getattr(self, key) >= 1, f"--{key.replace('_', '-')}", getattr(self, key), "allowed: an integer >= 1")
        require(0 < self.ablation_seconds <= 600, "--ablation-seconds", self.ablation_seconds, "allowed: > 0 and <= 600")
        require(self.prefix_frames >= 1, "--prefix-frames", self.prefix_frames,
                "continuation PSNR needs a ground-truth prefix; allowed: >= 1 (a multiple of the chunk)")
        require(self.resamples >= 100, "--resamples", self.resamples, "allowed: >= 100")
        require(0 < self.alpha < 1, "--alpha", self.alpha, "allowed: between 0 and 1")

    def frames(self, g: Geometry) -> int:
        """Frames of an ablation video: the seconds rounded up to whole chunks."""
        F = g.frames_per_chunk
        return int(np.ceil(self.ablation_seconds * g.fps / F - 1e-9)) * F

    def check(self, g: Geometry, train_prompts: int) -> None:
        """Checks that need the backbone's geometry and the prompt set (one-line ConfigErrors)."""
        F, T = g.frames_per_chunk, g.horizon_frames
        require(tuple(g.frame_shape) == WORLD_FRAME_SHAPE, "--weights", tuple(g.frame_shape),
                f"continuation PSNR compares with toy-world frames; allowed: a backbone of {WORLD_FRAME_SHAPE} frames")
        require(self.ablation_window + F <= T, "--ablation-window", self.ablation_window,
                f"the window plus one chunk must fit the trained horizon of {T} frames (repacked positions); "
                f"allowed: 1 to {T - F}")
        require(self.prefix_frames % F == 0, "--prefix-frames", self.prefix_frames,
                f"allowed: a multiple of the chunk ({F} frames)")
        frames = self.frames(g)
        require(self.prefix_frames < frames, "--prefix-frames", self.prefix_frames,
                f"a {self.ablation_seconds:g} s video has {frames} frames; allowed: a multiple of {F} below {frames}")
        require(self.ablation_prompts <= train_prompts, "--ablation-prompts", self.ablation_prompts,
                f"conf/prompts/toy.yaml has {train_prompts} train-split prompts; allowed: 1 to {train_prompts}")


# -- calibration: per-rollout statistics --------------------------------------------------------

@dataclass
class RolloutRecord:
    """What one calibration rollout recorded for every classifier, and its CPU seconds."""

    entry: dict
    steps: int
    profiler: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]
    dummy: dict
    cpu_s: float


def record_rollouts(model: Backbone, calibration: list[dict], steps: int, thresholds: RoleThresholds,
                    options: ClassifierOptions) -> list[RolloutRecord]:
    """One full-cache rollout per calibration entry, a fresh ``CalibrationRecorder`` (all
    classifiers) each, so that any subset of rollouts can be pooled afterwards."""
    g = model.geometry
    out = []
    for entry in calibration:
        recorder = CalibrationRecorder(g, CLASSIFIERS, thresholds, options)
        start = time.process_time()
        generate(model, recorder, [(0.0, entry["prompt"])], g.horizon_frames, int(entry["seed"]),
                 FlowSampler(steps, model.default_shift))
        recorder.finish()
        cpu = time.process_time() - start
        logits = {k: getattr(recorder.logits, k) for k in LOGIT_KEYS}
        logits["rollout"] = recorder.logits.rollouts[0]
        out.append(RolloutRecord(entry, steps, {k: getattr(recorder.profiler, k) for k in PROFILER_KEYS}, logits,
                                 recorder.dummy_records[0], cpu))
    return out


def pooled_labels(records: list[RolloutRecord], g: Geometry, thresholds: RoleThresholds, pyramid: PyramidThresholds,
                  options: ClassifierOptions, classifiers: tuple[str, ...] = CLASSIFIERS) -> dict[str, dict]:
    """Each classifier on the pooled statistics of ``records`` (sums, as one recorder over those
    rollouts accumulates): {classifier: {"labels" [L, H], ...its statistics}}."""
    out = {}
    if {"head_forcing", "forcing_kv"} & set(classifiers):
        profiler = Profiler(g, sink_frames=thresholds.sink_frames)
        for key in PROFILER_KEYS:
            setattr(profiler, key, sum(r.profiler[key] for r in records))
        stats = profiler.summary()
        if "head_forcing" in classifiers:
            out["head_forcing"] = {"labels": head_forcing_labels(stats, thresholds), "stats": stats,
                                   "local_mass": local_mass(stats["mass_by_distance"], thresholds.local_frames)}
        if "forcing_kv" in classifiers:
            out["forcing_kv"] = {**forcing_kv_result(stats, g, options), "stats": stats}
    if "pyramid_forcing" in classifiers:
        logits = LogitProfiler(g)
        for key in LOGIT_KEYS:
            setattr(logits, key, sum(r.logits[key] for r in records))
        logits.rollouts = [r.logits["rollout"] for r in records]
        out["pyramid_forcing"] = pyramid_result(logits.summary(), g, pyramid)
    if "dummy_forcing" in classifiers:
        out["dummy_forcing"] = dummy_result([r.dummy for r in records], options.dummy_config().num_dummy(g))
    return out


def stability_splits(calibration: list[dict], seeds: int) -> dict[str, tuple[list[int], list[int], str]]:
    """Pairs of disjoint calibration subsets (indices) with what differs between them."""
    prompts = list(dict.fromkeys(c["prompt"] for c in calibration))
    splits = {}
    if len(prompts) >= 2:
        first = set(prompts[: len(prompts) // 2])
        a = [i for i, c in enumerate(calibration) if c["prompt"] in first]
        b = [i for i, c in enumerate(calibration) if c["prompt"] not in first]
        splits["prompts"] = (a, b, f"prompts 1-{len(first)} vs {len(first) + 1}-{len(prompts)} (disjoint), all their seeds")
    if seeds >= 2:
        slot = [i % seeds for i in range(len(calibration))]  # draw_calibration: each prompt's seeds in a row
        a = [i for i in range(len(calibration)) if slot[i] == 0]
        b = [i for i in range(len(calibration)) if slot[i] == 1]
        splits["seeds"] = (a, b, "the same prompts, each with its first vs its second seed (all seeds distinct)")
    return splits


# -- cost -------------------------------------------------------------------------------------------

def measure_costs(model: Backbone, calibration: list[dict], steps: int, thresholds: RoleThresholds,
                  options: ClassifierOptions) -> dict:
    """CPU seconds per rollout (mean over ``calibration``) of a plain full cache and of each
    classifier's recorder alone; Dummy Forcing also rolled out only to its classify chunk."""
    g = model.geometry
    F = g.frames_per_chunk
    variants = {
        "full_cache": (lambda: build_method(FullConfig(), g), g.horizon_frames),
        "head_forcing": (lambda: CalibrationRecorder(g, ["head_forcing"], thresholds, options), g.horizon_frames),
        "forcing_kv": (lambda: CalibrationRecorder(g, ["forcing_kv"], thresholds, options), g.horizon_frames),
        "pyramid_forcing": (lambda: CalibrationRecorder(g, ["pyramid_forcing"], thresholds, options), g.horizon_frames),
        "dummy_forcing": (lambda: CalibrationRecorder(g, ["dummy_forcing"], thresholds, options), g.horizon_frames),
        "dummy_forcing_to_classify_chunk": (lambda: CalibrationRecorder(g, ["dummy_forcing"], thresholds, options),
                                            (options.classify_chunk + 1) * F),
    }
    out = {}
    for name, (make, frames) in variants.items():
        spent = []
        for entry in calibration:
            method = make()
            start = time.process_time()
            generate(model, method, [(0.0, entry["prompt"])], frames, int(entry["seed"]),
                     FlowSampler(steps, model.default_shift))
            spent.append(time.process_time() - start)
        out[name] = {"cpu_s_per_rollout": float(np.mean(spent)), "rollouts_timed": len(spent), "frames": frames}
    return out


def classification_costs(records: list[RolloutRecord], g: Geometry, thresholds: RoleThresholds,
                         pyramid: PyramidThresholds, options: ClassifierOptions) -> dict[str, float]:
    """CPU seconds of pooling the recorded statistics and classifying, per classifier."""
    out = {}
    for classifier in CLASSIFIERS:
        start = time.process_time()
        pooled_labels(records, g, thresholds, pyramid, options, (classifier,))
        out[classifier] = time.process_time() - start
    return out


# -- ablation -----------------------------------------------------------------------------------------

class HeadMaskedWindow(BoundedMethod):
    """A sliding window of the last ``window`` frames (repacked positions) for every head but the
    masked ones, which keep nothing: they see only the current chunk. Private to the audit (not
    registered, so no sweep picks it up). mask: [L, H] bool."""

    def __init__(self, geometry: Geometry, mask: np.ndarray, window: int, **kwargs) -> None:
        self.mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        require(tuple(self.mask.shape) == (geometry.layers, geometry.heads), "mask", tuple(self.mask.shape),
                f"allowed: [{geometry.layers}, {geometry.heads}]")
        config = SlidingWindowConfig(budget_frames=window, positions="repacked", label="head_masked")
        super().__init__(config, geometry, **kwargs)

    def evict(self, layer: int, store) -> None:
        keep = store.frame >= self.frames_written - self.config.budget_frames
        keep &= ~self.mask[layer].to(store.head.device)[store.head]
        store.keep(keep)


def ablation_prompts(n: int) -> list[tuple[str, str]]:
    """The first ``n`` train-split prompts of the benchmark's toy prompt set: [(id, text)]."""
    train = [p for p in load_prompt_set("toy").prompts if p.split == "train" and p.text is not None]
    return [(p.id, p.text) for p in train[:n]]


def train_prompt_count() -> int:
    return len([p for p in load_prompt_set("toy").prompts if p.split == "train" and p.text is not None])


def continuation_psnr(model: Backbone, mask: np.ndarray, text: str, seed: int, audit: AuditConfig) -> float:
    """Continuation PSNR (metrics/oracle.py) of one head-masked rollout after the ground-truth prefix."""
    g = model.geometry
    frames = audit.frames(g)
    truth = simulate(frame_timeline([(0.0, text)], g.fps, g.frames_per_chunk), frames, seed)
    prefill = torch.from_numpy(truth.frames[: audit.prefix_frames])[None] * 2 - 1
    method = HeadMaskedWindow(g, mask, audit.ablation_window)
    video = generate(model, method, [(0.0, text)], frames, seed, FlowSampler(audit.ablation_steps, model.default_shift),
                     prefill=prefill).frames
    saved = from_uint8(to_uint8(video)).numpy()  # scored as a run scores its saved frames
    return float(oracle_scores(saved, truth, prefix_frames=audit.prefix_frames)["continuation_psnr"])


def head_sets(labels: dict[str, np.ndarray], g: Geometry, audit: AuditConfig) -> dict[str, dict]:
    """For each classifier its long-range heads (BINARY) and ``ablation_draws`` random head sets
    of the same size (uniform without replacement, one stream per classifier)."""
    out = {}
    for i, classifier in enumerate(CLASSIFIERS):
        mask = to_binary(labels[classifier], classifier)
        k = int(mask.sum())
        rng = np.random.default_rng([audit.ablation_rng_seed, i])
        draws = []
        for _ in range(audit.ablation_draws):
            flat = np.zeros(g.layers * g.heads, dtype=bool)
            flat[rng.choice(g.layers * g.heads, size=k, replace=False)] = True
            draws.append(flat.reshape(g.layers, g.heads))
        out[classifier] = {"mask": mask, "random": draws}
    return out


def run_ablation(model: Backbone, sets: dict[str, dict], audit: AuditConfig) -> dict:
    """Scores of every condition on every video (prompt x seed); a mask met twice is rolled out once."""
    g = model.geometry
    videos = [(pid, text, seed) for pid, text in ablation_prompts(audit.ablation_prompts)
              for seed in range(audit.ablation_seeds)]
    conditions = {"none": np.zeros((g.layers, g.heads), dtype=bool)}
    for classifier, s in sets.items():
        conditions[classifier] = s["mask"]
        for d, mask in enumerate(s["random"]):
            conditions[f"{classifier}/random{d}"] = mask
    cache: dict[tuple[bytes, int], float] = {}
    scores = {name: [] for name in conditions}
    start, rollouts = time.process_time(), 0
    for v, (_, text, seed) in enumerate(videos):
        for name, mask in conditions.items():
            key = (mask.tobytes(), v)
            if key not in cache:
                cache[key] = continuation_psnr(model, mask, text, seed, audit)
                rollouts += 1
            scores[name].append(cache[key])
    return {"videos": [{"prompt_id": pid, "prompt": text, "seed": seed} for pid, text, seed in videos],
            "conditions": {name: {"heads": conditions[name].astype(int).tolist(), "scores": scores[name]}
                           for name in conditions},
            "rollouts": rollouts, "cpu_s": time.process_time() - start}


def ablation_comparisons(result: dict, audit: AuditConfig) -> list[dict]:
    """Paired comparisons per classifier over the videos: masking its long-range heads vs no mask,
    random heads vs no mask, and random vs its heads (H1 > 0: its heads matter more)."""
    cond = result["conditions"]
    none = np.array(cond["none"]["scores"])
    rows = []
    for i, classifier in enumerate(CLASSIFIERS):
        masked = np.array(cond[classifier]["scores"])
        draws = [np.array(cond[f"{classifier}/random{d}"]["scores"]) for d in range(audit.ablation_draws)]
        random = np.mean(draws, axis=0)
        for j, (name, diff) in enumerate((("none - masked", none - masked), ("none - random", none - random),
                                          ("random - masked", random - masked))):
            p = paired_comparison(diff, audit.resamples, [audit.ablation_rng_seed, i, j], audit.alpha)
            row = {"classifier": classifier, "comparison": name, "long_range_heads": int(np.sum(cond[classifier]["heads"])),
                   **asdict(p), "random_draw_means": [float(x.mean()) for x in draws] if j else None,
                   "draws_at_or_below_masked": None}
            if j:  # how many random sets hurt at least as much as the classifier's (mean over the videos)
                row["draws_at_or_below_masked"] = int(sum(x.mean() <= masked.mean() for x in draws))
            rows.append(row)
    return rows


# -- the audit --------------------------------------------------------------------------------------------

@dataclass
class Audit:
    """Everything the audit measured (``report_json`` turns it into report.json)."""

    calibration: list[dict]
    labels: dict[str, dict]
    pairwise: dict = field(default_factory=dict)
    stability: dict = field(default_factory=dict)
    shipped: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)


def audit_heads(model: Backbone, cfg: ProfileConfig, audit: AuditConfig, thresholds: RoleThresholds,
                pyramid: PyramidThresholds, options: ClassifierOptions) -> Audit:
    g = model.geometry
    calibration = draw_calibration(cfg)
    start = time.process_time()
    main = record_rollouts(model, calibration, cfg.steps, thresholds, options)
    calibration_cpu = time.process_time() - start
    pooled = pooled_labels(main, g, thresholds, pyramid, options)
    labels = {c: pooled[c]["labels"] for c in CLASSIFIERS}
    result = Audit(calibration, pooled)
    result.pairwise = {f"{a}|{b}": compare(labels[a], labels[b], a, b)
                       for i, a in enumerate(CLASSIFIERS) for b in CLASSIFIERS[i + 1:]}
    splits = {name: ([main[i] for i in a], [main[i] for i in b], what)
              for name, (a, b, what) in stability_splits(calibration, cfg.seeds).items()}
    other_steps = None
    if audit.stability_steps != cfg.steps:
        start = time.process_time()
        other_steps = record_rollouts(model, calibration, audit.stability_steps, thresholds, options)
        steps_cpu = time.process_time() - start
        splits["steps"] = (main, other_steps, f"the same prompts and seeds at {cfg.steps} vs {audit.stability_steps} "
                                              "denoising steps")
    for name, (a, b, what) in splits.items():
        la = pooled_labels(a, g, thresholds, pyramid, options)
        lb = pooled_labels(b, g, thresholds, pyramid, options)
        result.stability[name] = {"what": what, "rollouts": [len(a), len(b)],
                                  "classifiers": {c: {**compare(la[c]["labels"], lb[c]["labels"], c, c),
                                                      "labels": [np.asarray(la[c]["labels"]).tolist(),
                                                                 np.asarray(lb[c]["labels"]).tolist()]}
                                                  for c in CLASSIFIERS}}
    result.shipped = shipped_comparison(labels, pooled_labels(other_steps, g, thresholds, pyramid, options)
                                        if other_steps else None, calibration, cfg, audit)
    costs = measure_costs(model, calibration[: audit.cost_rollouts], cfg.steps, thresholds, options)
    result.cost = {"per_rollout": costs, "classify_cpu_s": classification_costs(main, g, thresholds, pyramid, options),
                   "calibration_cpu_s": calibration_cpu, "calibration_rollouts": len(main),
                   "stability_steps_cpu_s": steps_cpu if other_steps else None,
                   "stability_steps_rollouts": len(other_steps) if other_steps else 0,
                   "mean_shared_rollout_cpu_s": float(np.mean([r.cpu_s for r in main]))}
    sets = head_sets(labels, g, audit)
    result.ablation = run_ablation(model, sets, audit)
    result.ablation["comparisons"] = ablation_comparisons(result.ablation, audit)
    return result


def shipped_comparison(labels: dict, other_steps: dict | None, calibration: list[dict], cfg: ProfileConfig,
                       audit: AuditConfig) -> dict:
    """The audit's labels against the committed labels files (results/head_roles/)."""
    import json

    out = {}
    for classifier, path in SHIPPED.items():
        file = REPO_DIR / path
        if not file.is_file():
            continue
        data = json.loads(file.read_text())
        shipped = np.array(data["roles"], dtype=object)
        if shipped.shape != np.asarray(labels[classifier]).shape:
            continue
        entry = {"file": path, "profile": data.get("profile"),
                 "same_calibration": data.get("calibration") == calibration,
                 "audit_steps": cfg.steps, **compare(labels[classifier], shipped, classifier, classifier)}
        if other_steps is not None:
            entry["at_stability_steps"] = {"steps": audit.stability_steps,
                                           **compare(other_steps[classifier]["labels"], shipped, classifier, classifier)}
        out[classifier] = entry
    return out


# -- command ------------------------------------------------------------------------------------------------

@dataclass
class AuditOptions(Options):
    """``forcebench audit-heads``' options beside the audit's, the profiler's and the classifiers' configs."""

    weights: str = option("bench/models/weights/toy_dit.safetensors", "toy DiT checkpoint")
    out: str = option("results/head_audit", "directory of report.md / report.json / figures", output="dir")


def main(argv: list[str]) -> int:
    """``forcebench audit-heads``: the head-classifier audit of the toy backbone (module docstring)."""
    cpu_start, wall_start, load_start = time.process_time(), time.time(), _load()
    args, cfg, audit, thresholds, pyramid, options = parse(
        "forcebench audit-heads", argv, AuditOptions, ProfileConfig, AuditConfig, RoleThresholds, PyramidThresholds,
        ClassifierOptions)
    out = Path(args.out)
    model = load_toy(args.weights)
    g = model.geometry
    options.check(g)
    audit.check(g, train_prompt_count())
    torch.set_num_threads(audit.threads)
    result = audit_heads(model, cfg, audit, thresholds, pyramid, options)
    command = "forcebench audit-heads" + "".join(f" {shlex.quote(a)}" for a in argv)
    run = {"command": command, "weights": args.weights, "profile": asdict(cfg), "audit": asdict(audit),
           "thresholds": asdict(thresholds), "pyramid_thresholds": asdict(pyramid), "options": asdict(options),
           "binary_mapping": BINARY, "alternative_mapping": ALTERNATIVE, "machine": MACHINE_NOTE,
           "host": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "load_average_start": load_start, "load_average_end": _load()},
           "cpu_s_total": time.process_time() - cpu_start, "wall_s_total": time.time() - wall_start}
    write_report(out, result, run, g)
    print(f"forcebench audit-heads: wrote {out}/report.md, report.json, labels.png, ablation.png "
          f"({run['cpu_s_total']:.0f} CPU s)")
    return 0


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


__all__ = ["AuditConfig", "HeadMaskedWindow", "audit_heads", "label_counts", "main"]
