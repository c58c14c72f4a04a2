"""``forcebench profile``: where does each attention head look? Calibration rollouts of the toy
backbone with a recording cache (Head Forcing's ``Profiler``, Pyramid Forcing's ``LogitProfiler``),
the head classifiers run on them, and the role map / labels files the methods read
(results/head_roles/). Methods keep their recorders and classifiers; this module drives them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.checkpoint_check import check_checkpoint
from bench.cli_args import Parser, add_fields, build
from bench.input_checks import writable_file
from bench.models.base import Backbone
from bench.models.toy import ToyConfig, ToyDiT
from bench.report.head_roles_plot import save_heatmap
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import require
from core.files import write_json
from core.paths import existing_file
from core.world import random_scene
from methods.head_forcing.profile import Profiler
from methods.pyramid_profile import LogitProfiler, PyramidThresholds, classify_pyramid, periodicity
from methods.roles import RoleThresholds, agreement, classify, counts, local_mass


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


def profile_heads(model: Backbone, cfg: ProfileConfig, thresholds: RoleThresholds,
                  exclude_prompts: frozenset[str] = frozenset()) -> dict:
    """Run the calibration rollouts (training-split prompts not in ``exclude_prompts``) and classify every head."""
    g = model.geometry
    rng = np.random.default_rng(cfg.rng_seed)
    profiler = Profiler(g, sink_frames=thresholds.sink_frames)
    calibration = []
    used = set(exclude_prompts)
    for _ in range(cfg.prompts):
        prompt = random_scene(rng, "train").text()
        while prompt in used:
            prompt = random_scene(rng, "train").text()
        used.add(prompt)
        for _ in range(cfg.seeds):
            seed = int(rng.integers(2**31))
            calibration.append({"prompt": prompt, "seed": seed})
            # accumulate across rollouts: generate() resets the cache, not the statistics
            generate(model, profiler, [(0.0, prompt)], g.horizon_frames, seed,
                     FlowSampler(cfg.steps, model.default_shift))
    stats = profiler.summary()
    roles = classify(stats["sink_mass"], stats["mass_by_distance"], thresholds)
    return {"stats": stats, "roles": roles, "calibration": calibration}


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
    stats = profiler.summary()
    labels = classify_pyramid(stats["sign_rate"], stats["mean_logit"], stats["logit_by_distance"],
                              stats["rollout_logit_by_distance"], thresholds)
    bins, agreement = periodicity(stats["logit_by_distance"], stats["rollout_logit_by_distance"])
    stats["period"] = (g.horizon_frames - 1) / bins
    stats["period_agreement"] = agreement
    return {"labels": labels, "stats": stats, "calibration": calibration, "thresholds": thresholds}


def toy_calibration(prompts: int = 8, seeds: int = 2, rng_seed: int = 0) -> tuple[list[str], list[int]]:
    """Distinct training-split prompts of the toy world and seeds (as `forcebench profile` draws them)."""
    rng = np.random.default_rng(rng_seed)
    chosen: list[str] = []
    while len(chosen) < prompts:
        text = random_scene(rng, "train").text()
        if text not in chosen:
            chosen.append(text)
    return chosen, [int(rng.integers(2**31)) for _ in range(seeds)]


def main(argv: list[str]) -> int:
    """``forcebench profile``: profile the toy backbone, write the role map and its heatmap."""
    parser = Parser(prog="forcebench profile")
    parser.add_argument("--weights", default="bench/models/weights/toy_dit.safetensors")
    parser.add_argument("--out", default="results/head_roles/toy.json")
    add_fields(parser, ProfileConfig, RoleThresholds)
    parser.add_argument("--compare-rng-seed", type=int, default=None,
                        help="profile again on disjoint prompts and seeds and report role agreement")
    args = parser.parse_args(argv)
    cfg = build(ProfileConfig, args)
    thresholds = build(RoleThresholds, args)
    writable_file(args.out, "--out")
    check_checkpoint(existing_file(args.weights, "--weights"), "--weights", args.weights,
                     ToyConfig().checkpoint_state())
    torch.set_num_threads(2)
    model = ToyDiT(ToyConfig(checkpoint=args.weights)).eval()
    result = profile_heads(model, cfg, thresholds)
    role_map = role_map_json("toy", result, cfg, thresholds, args.weights)
    if args.compare_rng_seed is not None:
        other_cfg = ProfileConfig(**{**asdict(cfg), "rng_seed": args.compare_rng_seed})
        first_prompts = frozenset(c["prompt"] for c in result["calibration"])
        other = profile_heads(model, other_cfg, thresholds, exclude_prompts=first_prompts)
        first_seeds = {c["seed"] for c in result["calibration"]}
        role_map["stability"] = {
            "rng_seed": args.compare_rng_seed, "agreement": agreement(result["roles"], other["roles"]),
            "other_counts": counts(other["roles"]), "other_roles": other["roles"].tolist(),
            "other_local_mass": local_mass(other["stats"]["mass_by_distance"], thresholds.local_frames).tolist(),
            "other_sink_mass": other["stats"]["sink_mass"].tolist(),
            "shared_prompts": sum(c["prompt"] in first_prompts for c in other["calibration"]),
            "shared_seeds": sum(c["seed"] in first_seeds for c in other["calibration"])}
    write_role_map(Path(args.out), role_map)
    print(json.dumps({k: role_map[k] for k in ("counts", "thresholds")} | {"stability": role_map.get("stability", {}).get("agreement")}, indent=2))
    return 0
