"""Profile attention heads (``forcebench profile``): where does each head look?

Calibration rollouts inside the trained horizon with the full cache, on prompts of the
training split. For every layer and head the kernels report the attention mass each
cache entry receives; it is grouped by temporal distance (in frames, from the start of
the querying chunk; 0 = the chunk itself), and averaged over queries, denoising steps,
prompts and seeds. Also: mass on the first ``sink_frames`` frames, counted only for
chunks starting at frame >= 2 * sink_frames (so the start is not simply nearby), and the
entropy (nats) of the head's mean attention distribution over distances.

Output: a role map JSON (statistics, roles, thresholds and the config that made it) and
a heatmap PNG (layers x heads coloured by role, with the statistics).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.checkpoint_check import check_checkpoint
from bench.cli_args import Parser, add_fields, build
from bench.errors import require
from bench.input_checks import writable_file
from bench.models.base import Backbone, existing_file
from bench.models.toy import ToyConfig, ToyDiT
from bench.records import atomic_write_bytes, write_json
from bench.sampler import FlowSampler
from bench.world import random_scene
from methods.base import CacheMethod
from methods.full import FullConfig
from methods.head_forcing.roles import RoleThresholds, agreement, classify, counts, local_mass


class Profiler(CacheMethod):
    """The full cache, recording attention mass by distance per layer and head."""

    needs_attention_mass = True

    def __init__(self, geometry, sink_frames: int = 3, **kwargs) -> None:
        self.sink_frames = sink_frames
        g = geometry
        self.mass = np.zeros((g.layers, g.heads, g.horizon_frames))
        self.queries = np.zeros((g.layers, g.heads))
        self.sink = np.zeros((g.layers, g.heads))
        self.sink_queries = np.zeros((g.layers, g.heads))
        super().__init__(FullConfig(), geometry, **kwargs)

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        g, store = self.geometry, self.layers[layer]
        start = self.frames_written  # the querying chunk's first frame
        n_queries = self.batch * g.frames_per_chunk * g.tokens_per_frame
        dist = (start - store.frame).clamp(max=g.horizon_frames - 1).cpu().numpy()
        m, heads = mass.double().cpu().numpy(), store.head.cpu().numpy()
        per_head = np.zeros((g.heads, g.horizon_frames))
        np.add.at(per_head, (heads, dist), m)
        per_head[:, 0] = n_queries - per_head.sum(1)  # the chunk's own keys
        self.mass[layer] += per_head
        self.queries[layer] += n_queries
        if start >= 2 * self.sink_frames:
            first = (store.frame < self.sink_frames).cpu().numpy()
            np.add.at(self.sink[layer], heads[first], m[first])
            self.sink_queries[layer] += n_queries

    def summary(self) -> dict[str, np.ndarray]:
        by_distance = self.mass / self.queries[..., None]
        p = np.clip(by_distance, 1e-12, None)
        return {"mass_by_distance": by_distance, "sink_mass": self.sink / np.maximum(self.sink_queries, 1),
                "entropy": -(p * np.log(p)).sum(-1)}


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
    from bench.rollout import generate
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


def save_heatmap(path: Path, role_map: dict) -> None:
    """Layers x heads, coloured by role, each cell annotated with sink / local mass and entropy."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    roles = np.array(role_map["roles"])
    codes = {"local": 0, "anchor": 1, "memory": 2}
    grid = np.vectorize(codes.get)(roles)
    L, H = roles.shape
    fig, ax = plt.subplots(figsize=(1.6 * H + 1.5, 1.0 * L + 1.2))
    ax.imshow(grid, cmap=ListedColormap(["#9ecae1", "#fdae6b", "#a1d99b"]), vmin=0, vmax=2)
    s = role_map["stats"]
    for layer in range(L):
        for head in range(H):
            ax.text(head, layer, f"{roles[layer, head]}\nsink {s['sink_mass'][layer][head]:.2f}\n"
                    f"local {s['local_mass'][layer][head]:.2f}\nH {s['entropy'][layer][head]:.2f}",
                    ha="center", va="center", fontsize=7)
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)])
    ax.set_yticks(range(L), [f"layer {layer}" for layer in range(L)])
    c = role_map["counts"]
    ax.set_title(f"{role_map['model']}: {c['local']} local, {c['anchor']} anchor, {c['memory']} memory heads")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_role_map(path: Path, role_map: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, role_map)
    save_heatmap(path.with_suffix(".png"), role_map)


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
