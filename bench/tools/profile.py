"""``forcebench profile``: where does each attention head look? Calibration rollouts of the toy
backbone with a recording cache, the head classifiers run on them, and the role map / labels
files the methods read (results/head_roles/). Methods keep their recorders and classifiers;
this module drives them.

``--classifier`` picks the classifier; every one runs on the same calibration rollouts (the
prompts and seeds ``draw_calibration`` draws, as Head Forcing's profile always has):

- ``head_forcing`` (default): Head Forcing's ``Profiler`` and ``classify`` -> local / anchor /
  memory, the role map results/head_roles/toy.json (unchanged by the other classifiers);
- ``forcing_kv``: Forcing-KV's ``static_scores`` / ``classify_static`` on the same ``Profiler``
  statistics -> static / dynamic, with the per-head scores (``forcing_kv_json``);
- ``pyramid_forcing``: a ``LogitProfiler`` riding the rollouts -> anchor / wave / veil, the
  labels file ``read_pyramid_labels`` reads (``labels_json``);
- ``dummy_forcing``: Dummy Forcing's online classification, made per calibration rollout at its
  classify chunk by ``DummyForcing`` itself fed the rollout's attention mass: per rollout p0,
  p1, cost and roles, then the majority role and each head's agreement with it (``dummy_json``).

``CalibrationRecorder`` is the full cache that feeds any of these recorders from one rollout
(a forward reports attention mass and logit statistics in one call), so asking for several
classifiers costs one set of rollouts. ``--calibration grid`` draws every prompt with every
seed instead (``toy_calibration``, how results/head_roles/toy_pyramid.json was drawn):
``forcebench profile --classifier pyramid_forcing --calibration grid --prompts 8 --seeds 2
--steps 1 --out results/head_roles/toy_pyramid.json`` remakes that file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.checkpoint_check import check_checkpoint
from bench.cli_args import Options, option, parse
from bench.input_checks import writable_file
from bench.models.base import Backbone
from bench.models.toy import ToyConfig, ToyDiT
from bench.report.head_roles_plot import save_heatmap
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.tools.head_audit_plots import save_labels_heatmap
from core.errors import require
from core.files import write_json
from core.geometry import Geometry
from core.paths import existing_file
from core.world import random_scene
from methods.base import CacheMethod
from methods.dummy_forcing import ROLE_NAMES, DummyForcing, DummyForcingConfig, classify_heads
from methods.forcing_kv import classify_static, static_scores
from methods.full import FullConfig
from methods.head_forcing.profile import Profiler
from methods.pyramid_profile import (
    LogitProfiler,
    PyramidThresholds,
    classify_pyramid,
    labels_json,
    periodicity,
    write_pyramid_labels,
)
from methods.roles import RoleThresholds, agreement, classify, counts, local_mass

CLASSIFIERS = ("head_forcing", "forcing_kv", "pyramid_forcing", "dummy_forcing")
LABELS = {"head_forcing": ("local", "anchor", "memory"), "forcing_kv": ("static", "dynamic"),
          "pyramid_forcing": ("anchor", "wave", "veil"), "dummy_forcing": ("sink", "local", "dummy")}
DRAWS = ("profile", "grid")


def default_out(classifier: str) -> str:
    """Where ``forcebench profile --classifier`` writes by default (Head Forcing keeps toy.json)."""
    return "results/head_roles/toy.json" if classifier == "head_forcing" else f"results/head_roles/toy_{classifier}.json"


@dataclass
class ProfileConfig:
    prompts: int = 32
    seeds: int = 2
    rng_seed: int = 0
    steps: int = 4

    def __post_init__(self) -> None:
        for key in ("prompts", "seeds"):
            require(getattr(self, key) >= 1, f"--{key}", getattr(self, key), "allowed: an integer >= 1")
        require(1 <= self.steps <= 1000, "--steps", self.steps, "allowed: 1 to 1000")


@dataclass
class ClassifierOptions:
    """The parameters of the classifiers other than Head Forcing's and Pyramid Forcing's
    thresholds: Forcing-KV's score (published defaults) and Dummy Forcing's classification."""

    static_threshold: float = 0.8  # forcing_kv: score >= this is a static head
    score_last_frames: int = 4  # forcing_kv: the last key frames of the score
    dummy_fraction: float = 0.5  # dummy_forcing: share of heads made dummy
    classify_chunk: int = 1  # dummy_forcing: the chunk whose clean pass classifies

    def __post_init__(self) -> None:
        require(0 <= self.static_threshold <= 1, "--static-threshold", self.static_threshold, "allowed: 0 to 1")
        require(0 <= self.dummy_fraction <= 1, "--dummy-fraction", self.dummy_fraction, "allowed: 0 to 1")
        require(self.classify_chunk >= 1, "--classify-chunk", self.classify_chunk,
                "the first chunk has no cache to measure; allowed: >= 1")

    def check(self, g: Geometry) -> None:
        """Checks that need the backbone's geometry (one-line ConfigErrors)."""
        F = g.frames_per_chunk
        require(F <= self.score_last_frames <= g.horizon_frames + F - 1, "--score-last-frames",
                self.score_last_frames, f"the profile counts the chunk's {F} frames together and has "
                f"{g.horizon_frames} distances; allowed: {F} to {g.horizon_frames + F - 1}")
        chunks = g.horizon_frames // F
        require(self.classify_chunk < chunks, "--classify-chunk", self.classify_chunk,
                f"a calibration rollout has {chunks} chunks; allowed: 1 to {chunks - 1}")

    def dummy_config(self) -> DummyForcingConfig:
        return DummyForcingConfig(dummy_fraction=self.dummy_fraction, classify_chunk=self.classify_chunk)


# -- the calibration set -----------------------------------------------------------------------

def _distinct_prompt(rng: np.random.Generator, used: set[str]) -> str:
    prompt = random_scene(rng, "train").text()
    while prompt in used:
        prompt = random_scene(rng, "train").text()
    used.add(prompt)
    return prompt


def draw_calibration(cfg: ProfileConfig, exclude_prompts: frozenset[str] = frozenset(),
                     draw: str = "profile") -> list[dict]:
    """The calibration rollouts [{"prompt", "seed"}]: ``cfg.prompts`` distinct training-split
    prompts not in ``exclude_prompts`` and ``cfg.seeds`` seeds each, from
    ``default_rng(cfg.rng_seed)``. ``profile`` (Head Forcing's profile): each prompt is followed
    by its own seeds; ``grid`` (``toy_calibration``): the prompts first, then seeds shared by
    every prompt."""
    require(draw in DRAWS, "--calibration", draw, f"allowed: {', '.join(DRAWS)}")
    rng = np.random.default_rng(cfg.rng_seed)
    used = set(exclude_prompts)
    if draw == "grid":
        prompts = [_distinct_prompt(rng, used) for _ in range(cfg.prompts)]
        seeds = [int(rng.integers(2**31)) for _ in range(cfg.seeds)]
        return [{"prompt": p, "seed": s} for p in prompts for s in seeds]
    calibration = []
    for _ in range(cfg.prompts):
        prompt = _distinct_prompt(rng, used)
        for _ in range(cfg.seeds):
            calibration.append({"prompt": prompt, "seed": int(rng.integers(2**31))})
    return calibration


def run_calibration(model: Backbone, calibration: list[dict], steps: int, recorder: CacheMethod,
                    after_each: Callable[[int], None] | None = None) -> None:
    """One full-cache rollout of the trained horizon per calibration entry under ``recorder``
    (statistics accumulate across rollouts: ``generate`` resets the cache, not them)."""
    g = model.geometry
    for i, entry in enumerate(calibration):
        generate(model, recorder, [(0.0, entry["prompt"])], g.horizon_frames, int(entry["seed"]),
                 FlowSampler(steps, model.default_shift))
        if after_each is not None:
            after_each(i)


def toy_calibration(prompts: int = 8, seeds: int = 2, rng_seed: int = 0) -> tuple[list[str], list[int]]:
    """Distinct training-split prompts of the toy world and seeds (``draw_calibration``'s grid)."""
    grid = draw_calibration(ProfileConfig(prompts=prompts, seeds=seeds, rng_seed=rng_seed), draw="grid")
    return [c["prompt"] for c in grid[::seeds]], [c["seed"] for c in grid[:seeds]]


# -- one rollout, every recorder -------------------------------------------------------------

class CalibrationRecorder(CacheMethod):
    """The full cache, feeding the recorders of the classifiers asked for from the same rollout:
    Head Forcing's ``Profiler`` (head_forcing, forcing_kv: ``profiler``), Pyramid Forcing's
    ``LogitProfiler`` (``logits``) and a ``DummyForcing`` that classifies the heads at its
    classify chunk (``dummy``; one entry of ``dummy_records`` per rollout: p0, p1 [L, H] mean
    mass per query row on the first frame and on the frames after it, cost [L, H] =
    max(p0n, p1n), roles [L, H] names). The recorders read this cache's store (shared, never
    their own), so they see exactly what a full-cache rollout's attention saw.

    Dummy Forcing's own cache keeps every head's sink frame and last chunk until it classifies;
    at the published ``classify_chunk`` = 1 that is the whole first chunk, the full cache, so
    its p0, p1 and roles here are those ``DummyForcing`` computes in its own rollout of the same
    prompt, seed and sampler (tested). At a later classify chunk they are the full cache's."""

    def __init__(self, geometry: Geometry, classifiers: tuple[str, ...] | list[str],
                 thresholds: RoleThresholds | None = None, options: ClassifierOptions | None = None,
                 **kwargs) -> None:
        unknown = [c for c in classifiers if c not in CLASSIFIERS]
        require(not unknown, "--classifier", unknown[0] if unknown else None, f"allowed: {', '.join(CLASSIFIERS)}")
        thresholds, options = thresholds or RoleThresholds(), options or ClassifierOptions()
        wants = set(classifiers)
        self.profiler = (Profiler(geometry, sink_frames=thresholds.sink_frames, **kwargs)
                         if wants & {"head_forcing", "forcing_kv"} else None)
        self.logits = LogitProfiler(geometry, **kwargs) if "pyramid_forcing" in wants else None
        self.dummy = DummyForcing(options.dummy_config(), geometry, **kwargs) if "dummy_forcing" in wants else None
        self.dummy_records: list[dict] = []
        self.needs_attention_mass = self.profiler is not None or self.dummy is not None
        self.needs_attention_logits = self.logits is not None
        super().__init__(FullConfig(), geometry, **kwargs)

    def _recorders(self) -> list[CacheMethod]:
        return [r for r in (self.profiler, self.logits, self.dummy) if r is not None]

    def _share(self) -> None:
        for recorder in self._recorders():
            recorder.layers, recorder.frames_written = self.layers, self.frames_written

    def reset(self) -> None:
        for recorder in self._recorders():
            recorder.reset()  # the logit profiler closes the previous rollout's profile
        super().reset()
        self._share()

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        self._share()
        for recorder in (self.profiler, self.dummy):
            if recorder is not None:
                recorder.observe_attention(layer, mass)

    def observe_logits(self, layer, stats) -> None:
        self._share()
        self.logits.observe_logits(layer, stats)

    def write(self, kv, chunk_start: int) -> None:
        self._share()
        if self.dummy is not None and self.dummy._classifying():  # before the chunk is stored, as DummyForcing
            self.dummy._classify()
            p0, p1 = (m.double().numpy() for m in self.dummy.head_mass)
            self.dummy_records.append({"p0": p0, "p1": p1, "cost": dummy_cost(p0, p1),
                                       "roles": role_names(self.dummy.roles.numpy())})
        super().write(kv, chunk_start)

    def finish(self) -> None:
        """Close the last rollout's logit profile (``LogitProfiler.summary`` also does)."""
        if self.logits is not None:
            self.logits.finish()


def dummy_cost(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Dummy Forcing's cost per head, max(p0n, p1n), each mass normalised over all heads
    (``classify_heads``'s; the normalisation makes it the same for sums or means per query)."""
    tiny = np.finfo(float).tiny
    return np.maximum(p0 / max(p0.sum(), tiny), p1 / max(p1.sum(), tiny))


def role_names(codes: np.ndarray) -> np.ndarray:
    """Dummy Forcing's role codes [L, H] -> names (sink / local / dummy)."""
    return np.vectorize(ROLE_NAMES.get, otypes=[object])(np.asarray(codes))


# -- classifiers on recorded statistics ------------------------------------------------------

def head_forcing_labels(stats: dict, thresholds: RoleThresholds) -> np.ndarray:
    return classify(stats["sink_mass"], stats["mass_by_distance"], thresholds)


def forcing_kv_result(stats: dict, geometry: Geometry, options: ClassifierOptions) -> dict:
    """Forcing-KV's labels from a ``Profiler`` summary: {"labels" [L, H] static / dynamic,
    "scores" [L, H]} (the scores ``ForcingKVConfig.scores`` computes from a role map)."""
    scores = static_scores(stats["mass_by_distance"], stats["sink_mass"], geometry.frames_per_chunk,
                           options.score_last_frames)
    labels = np.where(classify_static(scores, options.static_threshold), "static", "dynamic").astype(object)
    return {"labels": labels, "scores": scores}


def pyramid_result(stats: dict, geometry: Geometry, thresholds: PyramidThresholds) -> dict:
    """Pyramid Forcing's labels from a ``LogitProfiler`` summary (``stats`` gains "period" and
    "period_agreement")."""
    labels = classify_pyramid(stats["sign_rate"], stats["mean_logit"], stats["logit_by_distance"],
                              stats["rollout_logit_by_distance"], thresholds)
    bins, share = periodicity(stats["logit_by_distance"], stats["rollout_logit_by_distance"])
    stats["period"] = (geometry.horizon_frames - 1) / bins
    stats["period_agreement"] = share
    return {"labels": labels, "stats": stats, "thresholds": thresholds}


def dummy_result(records: list[dict], num_dummy: int) -> dict:
    """Dummy Forcing's per-rollout roles summarised: "labels" [L, H] the majority role over the
    rollouts (a tie goes to the role ``classify_heads`` gives the masses summed over the
    rollouts, "pooled"), "agreement" [L, H] the share of rollouts with the majority role,
    "mean_p0" / "mean_p1" / "mean_cost" [L, H]."""
    require(len(records) >= 1, "calibration", len(records), "allowed: at least one rollout")
    roles = np.stack([r["roles"] for r in records])  # [R, L, H]
    p0, p1 = np.stack([r["p0"] for r in records]), np.stack([r["p1"] for r in records])
    pooled = role_names(classify_heads(torch.from_numpy(p0.sum(0)), torch.from_numpy(p1.sum(0)), num_dummy).numpy())
    votes = np.stack([(roles == name).sum(0) for name in LABELS["dummy_forcing"]])  # [3, L, H]
    top = votes.max(0)
    labels = pooled.copy()
    for i, name in enumerate(LABELS["dummy_forcing"]):
        clear = (votes[i] == top) & ((votes == top).sum(0) == 1)
        labels[clear] = name
    return {"labels": labels, "agreement": (roles == labels[None]).mean(0), "pooled": pooled,
            "mean_p0": p0.mean(0), "mean_p1": p1.mean(0), "mean_cost": np.stack([r["cost"] for r in records]).mean(0)}


def label_counts(labels: np.ndarray, classifier: str) -> dict[str, int]:
    return {name: int((np.asarray(labels) == name).sum()) for name in LABELS[classifier]}


def profile_heads(model: Backbone, cfg: ProfileConfig, thresholds: RoleThresholds,
                  exclude_prompts: frozenset[str] = frozenset()) -> dict:
    """Run the calibration rollouts (training-split prompts not in ``exclude_prompts``) and classify every head."""
    calibration = draw_calibration(cfg, exclude_prompts)
    profiler = Profiler(model.geometry, sink_frames=thresholds.sink_frames)
    run_calibration(model, calibration, cfg.steps, profiler)
    stats = profiler.summary()
    return {"stats": stats, "roles": head_forcing_labels(stats, thresholds), "calibration": calibration}


def profile_classifier(model: Backbone, cfg: ProfileConfig, classifier: str, thresholds: RoleThresholds,
                       pyramid: PyramidThresholds, options: ClassifierOptions,
                       exclude_prompts: frozenset[str] = frozenset(), draw: str = "profile") -> dict:
    """One classifier on the calibration rollouts (``draw_calibration``), through a
    ``CalibrationRecorder``: {"labels" [L, H], "calibration", ...the classifier's own entries}."""
    g = model.geometry
    if classifier == "head_forcing" and draw == "profile":
        result = profile_heads(model, cfg, thresholds, exclude_prompts)
        return {**result, "labels": result["roles"]}
    calibration = draw_calibration(cfg, exclude_prompts, draw)
    recorder = CalibrationRecorder(g, [classifier], thresholds, options)
    run_calibration(model, calibration, cfg.steps, recorder)
    recorder.finish()
    if classifier == "head_forcing":
        stats = recorder.profiler.summary()
        roles = head_forcing_labels(stats, thresholds)
        return {"stats": stats, "roles": roles, "labels": roles, "calibration": calibration}
    if classifier == "forcing_kv":
        stats = recorder.profiler.summary()
        return {**forcing_kv_result(stats, g, options), "stats": stats, "calibration": calibration}
    if classifier == "pyramid_forcing":
        return {**pyramid_result(recorder.logits.summary(), g, pyramid), "calibration": calibration}
    num_dummy = options.dummy_config().num_dummy(g)
    return {**dummy_result(recorder.dummy_records, num_dummy), "records": recorder.dummy_records,
            "num_dummy": num_dummy, "calibration": calibration}


def profile_pyramid(backbone: Backbone, prompts: list[str], seeds: list[int], sampler: FlowSampler,
                    thresholds: PyramidThresholds | None = None) -> dict:
    """Run the calibration rollouts and classify every head: every prompt with every seed, the
    full cache, the trained horizon long, with ``sampler``. Returns {"labels":
    [L, H], "stats": LogitProfiler.summary() plus "period" / "period_agreement" [L, H],
    "calibration": [{"prompt", "seed"}], "thresholds": PyramidThresholds}."""
    require(len(prompts) >= 1, "prompts", prompts, "allowed: at least one prompt")
    require(len(seeds) >= 1, "seeds", seeds, "allowed: at least one seed")
    thresholds = thresholds or PyramidThresholds()
    g = backbone.geometry
    profiler = LogitProfiler(g)
    calibration = []
    for prompt in prompts:
        for seed in seeds:
            calibration.append({"prompt": prompt, "seed": int(seed)})
            # statistics accumulate across rollouts: generate() resets only the cache
            generate(backbone, profiler, [(0.0, prompt)], g.horizon_frames, int(seed), sampler)
    return {**pyramid_result(profiler.summary(), g, thresholds), "calibration": calibration}


# -- files ---------------------------------------------------------------------------------------

def role_map_json(model_name: str, result: dict, cfg: ProfileConfig, thresholds: RoleThresholds,
                  weights: str | None) -> dict:
    stats = result["stats"]
    local = local_mass(stats["mass_by_distance"], thresholds.local_frames)
    return {
        "model": model_name,
        "weights": weights,
        "profile": asdict(cfg),
        "thresholds": asdict(thresholds),
        "counts": counts(result["roles"]),
        "roles": result["roles"].tolist(),
        "stats": {"sink_mass": stats["sink_mass"].tolist(), "local_mass": local.tolist(),
                  "entropy": stats["entropy"].tolist(), "mass_by_distance": stats["mass_by_distance"].tolist()},
        "calibration": result["calibration"],
    }


def write_role_map(path: Path, role_map: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, role_map)
    save_heatmap(path.with_suffix(".png"), role_map)


def profile_record(cfg: ProfileConfig, geometry: Geometry, draw: str) -> dict:
    """What calibrated a labels file: prompts, seeds, rng_seed, denoising steps, rollout frames,
    and (when not the grid of results/head_roles/toy_pyramid.json) how prompts and seeds were drawn."""
    record = {**asdict(cfg), "frames": geometry.horizon_frames}
    return record if draw == "grid" else {**record, "draw": draw}


def forcing_kv_json(model_name: str, result: dict, profile: dict, options: ClassifierOptions,
                    thresholds: RoleThresholds, weights: str | None) -> dict:
    """Forcing-KV's labels file: "roles" [L][H] static / dynamic, "stats.static_score" and the
    profile statistics the score reads (sink mass on the first ``sink_frames`` frames)."""
    stats = result["stats"]
    return {
        "model": model_name, "weights": weights, "method": "forcing_kv", "profile": profile,
        "thresholds": {"static_threshold": options.static_threshold, "score_last_frames": options.score_last_frames,
                       "sink_frames": thresholds.sink_frames},
        "counts": label_counts(result["labels"], "forcing_kv"),
        "roles": np.asarray(result["labels"]).tolist(),
        "note": "layer 0 is labelled but never split by the method (unsplit_layers = 1)",
        "stats": {"static_score": result["scores"].tolist(), "sink_mass": stats["sink_mass"].tolist(),
                  "mass_by_distance": stats["mass_by_distance"].tolist()},
        "calibration": result["calibration"],
    }


def dummy_json(model_name: str, result: dict, profile: dict, options: ClassifierOptions,
               weights: str | None) -> dict:
    """Dummy Forcing's labels file: per calibration rollout its p0, p1, cost and roles at the
    classify chunk; "roles" the majority role, "stats.agreement" the share of rollouts with it."""
    records = [{"prompt": c["prompt"], "seed": c["seed"], "p0": r["p0"].tolist(), "p1": r["p1"].tolist(),
                "cost": r["cost"].tolist(), "roles": r["roles"].tolist(),
                "counts": label_counts(r["roles"], "dummy_forcing")}
               for c, r in zip(result["calibration"], result["records"])]
    agree = result["agreement"]
    return {
        "model": model_name, "weights": weights, "method": "dummy_forcing", "profile": profile,
        "config": {"dummy_fraction": options.dummy_fraction, "classify_chunk": options.classify_chunk,
                   "num_dummy": result["num_dummy"], "sink_frames": options.dummy_config().sink_frames},
        "counts": label_counts(result["labels"], "dummy_forcing"),
        "roles": np.asarray(result["labels"]).tolist(),
        "note": "Dummy Forcing classifies online, per rollout; roles is the majority over the calibration "
                "rollouts (ties: the roles of the summed masses, stats.pooled_roles)",
        "stats": {"agreement": agree.tolist(), "mean_agreement": float(agree.mean()),
                  "pooled_roles": np.asarray(result["pooled"]).tolist(), "mean_p0": result["mean_p0"].tolist(),
                  "mean_p1": result["mean_p1"].tolist(), "mean_cost": result["mean_cost"].tolist()},
        "per_rollout": records,
        "calibration": result["calibration"],
    }


def cell_notes(classifier: str, data: dict) -> list[list[str]]:
    """Per head, the statistics a labels heatmap prints under the label."""
    s = data["stats"]
    L, H = np.array(data["roles"], dtype=object).shape
    if classifier == "head_forcing":
        return [[f"sink {s['sink_mass'][i][j]:.2f}\nlocal {s['local_mass'][i][j]:.2f}" for j in range(H)] for i in range(L)]
    if classifier == "forcing_kv":
        return [[f"score {s['static_score'][i][j]:.2f}" for j in range(H)] for i in range(L)]
    if classifier == "pyramid_forcing":
        return [[f"sign {s['sign_rate'][i][j]:.2f}\nlogit {s['mean_logit'][i][j]:.2f}" for j in range(H)] for i in range(L)]
    return [[f"agree {s['agreement'][i][j]:.2f}\ncost {s['mean_cost'][i][j]:.3f}" for j in range(H)] for i in range(L)]


def write_labels(path: Path, classifier: str, data: dict) -> None:
    """A labels file (JSON, atomic) and its heatmap (PNG beside it)."""

    if classifier == "head_forcing":
        write_role_map(path, data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if classifier == "pyramid_forcing":
        write_pyramid_labels(path, data)
    else:
        write_json(path, data)
    shown = ", ".join(f"{n} {name}" for name, n in data["counts"].items())
    save_labels_heatmap(path.with_suffix(".png"), np.array(data["roles"], dtype=object),
                        f"{data['model']} {classifier}: {shown}", cell_notes(classifier, data))


def labels_file(model_name: str, classifier: str, result: dict, cfg: ProfileConfig, geometry: Geometry,
                thresholds: RoleThresholds, options: ClassifierOptions, weights: str | None, draw: str) -> dict:
    """The file ``forcebench profile --classifier`` writes for ``result``."""
    profile = profile_record(cfg, geometry, draw)
    if classifier == "head_forcing":
        data = role_map_json(model_name, result, cfg, thresholds, weights)
        return data if draw == "profile" else {**data, "profile": profile}
    if classifier == "forcing_kv":
        return forcing_kv_json(model_name, result, profile, options, thresholds, weights)
    if classifier == "pyramid_forcing":
        return labels_json(model_name, result, weights, profile=profile)
    return dummy_json(model_name, result, profile, options, weights)


def load_toy(weights: str) -> ToyDiT:
    """The toy backbone from ``weights`` (checked first: a one-line ConfigError if unusable)."""
    check_checkpoint(existing_file(weights, "--weights"), "--weights", weights, ToyConfig().checkpoint_state())
    return ToyDiT(ToyConfig(checkpoint=weights)).eval()


@dataclass
class ProfileOptions(Options):
    """``forcebench profile``'s options beside the profiler's and the classifiers' configs."""

    classifier: str = option("head_forcing", "which head classifier to run on the calibration rollouts",
                             choices=CLASSIFIERS)
    weights: str = option("bench/models/weights/toy_dit.safetensors", "toy DiT checkpoint")
    out: str | None = option(None, "labels file (default: results/head_roles/toy.json for head_forcing, "
                                   "results/head_roles/toy_<classifier>.json otherwise)")
    calibration: str = option("profile", "how prompts and seeds are drawn: profile (each prompt its own seeds, "
                                         "Head Forcing's) or grid (every prompt with every seed, toy_pyramid.json's)",
                              choices=DRAWS)
    threads: int = option(2, "torch CPU threads", minimum=1)
    compare_rng_seed: int | None = option(None, "profile again on disjoint prompts and seeds and report label "
                                                "agreement")

    def validate(self) -> None:
        writable_file(self.labels_file(), "--out")

    def labels_file(self) -> str:
        return self.out if self.out is not None else default_out(self.classifier)


def main(argv: list[str]) -> int:
    """``forcebench profile``: profile the toy backbone, write the labels file and its heatmap."""
    args, cfg, thresholds, pyramid, options = parse("forcebench profile", argv, ProfileOptions, ProfileConfig,
                                                    RoleThresholds, PyramidThresholds, ClassifierOptions)
    classifier, out = args.classifier, args.labels_file()
    model = load_toy(args.weights)
    options.check(model.geometry)
    torch.set_num_threads(args.threads)
    result = profile_classifier(model, cfg, classifier, thresholds, pyramid, options, draw=args.calibration)
    data = labels_file("toy", classifier, result, cfg, model.geometry, thresholds, options, args.weights,
                       args.calibration)
    if args.compare_rng_seed is not None:
        other_cfg = ProfileConfig(**{**asdict(cfg), "rng_seed": args.compare_rng_seed})
        first_prompts = frozenset(c["prompt"] for c in result["calibration"])
        other = profile_classifier(model, other_cfg, classifier, thresholds, pyramid, options,
                                   exclude_prompts=first_prompts, draw=args.calibration)
        first_seeds = {c["seed"] for c in result["calibration"]}
        data["stability"] = stability_entry(classifier, args.compare_rng_seed, result, other, thresholds)
        data["stability"].update(
            shared_prompts=sum(c["prompt"] in first_prompts for c in other["calibration"]),
            shared_seeds=sum(c["seed"] in first_seeds for c in other["calibration"]))
    write_labels(Path(out), classifier, data)
    print(json.dumps({"counts": data["counts"], "thresholds": data.get("thresholds", data.get("config"))}
                     | {"stability": data.get("stability", {}).get("agreement")}, indent=2))
    return 0


def stability_entry(classifier: str, rng_seed: int, result: dict, other: dict, thresholds: RoleThresholds) -> dict:
    """The ``stability`` entry of a labels file: agreement with a disjoint calibration set."""
    if classifier == "head_forcing":
        return {"rng_seed": rng_seed, "agreement": agreement(result["roles"], other["roles"]),
                "other_counts": counts(other["roles"]), "other_roles": other["roles"].tolist(),
                "other_local_mass": local_mass(other["stats"]["mass_by_distance"], thresholds.local_frames).tolist(),
                "other_sink_mass": other["stats"]["sink_mass"].tolist()}
    return {"rng_seed": rng_seed, "agreement": agreement(result["labels"], other["labels"]),
            "other_counts": label_counts(other["labels"], classifier), "other_roles": np.asarray(other["labels"]).tolist()}
