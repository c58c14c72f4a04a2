"""Train the toy backbone on the toy world (``forcebench train backbone``).

Objective: flow matching with teacher forcing over clips of the trained horizon (21
frames = 7 chunks of 3). One forward sees the sequence [clean clip ; noisy clip] under
``teacher_forcing_mask``: the noisy frames of chunk c attend to the clean frames of
chunks < c and to their own chunk, exactly what chunk c sees in a rollout with a clean
KV cache. Every chunk gets its own timestep: ``t1_fraction`` of the chunks at t = 1
(pure noise: only the cache can say what comes next; with few-step sampling, every later
step is easy to classify from the noisy input alone, so this is where the model learns
to use its context), ``grid_fraction`` at one of the sampler's timesteps (so the 4-step
sampler is in distribution), the rest uniform in (0, 1). The loss is the MSE of the
network's prediction on the noisy half.

Deterministic given ``seed``. Checkpoints are written atomically every ``save_every``
steps and on exit, without pickle: weights (``out``), optimiser and RNG tensors
(``out`` with suffix ``.state.safetensors``) and the rest as JSON (``.state.json``);
training resumes from them. Every ``diag_every`` steps the cache-use diagnostic
(bench/tools/toy_diagnostic.py) runs and is appended to ``.diag.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm import tqdm

from bench.checkpoint_check import check_checkpoint, read_header
from bench.cli_args import Options, option, parse, parse_overrides
from bench.models.attention import teacher_forcing_mask
from bench.models.toy import ToyConfig, ToyDiT
from bench.records import save_weights
from bench.sampler import FlowSampler
from bench.tools.toy_diagnostic import diagnostic
from core.errors import ConfigError, require
from core.files import atomic_write_bytes, write_json
from core.paths import REPO_DIR, read_text
from core.world import random_scene, simulate

SHIPPED_DIR = REPO_DIR / "bench" / "models" / "weights"


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    t1_fraction: float = 0.4  # share of chunks trained at t = 1 (pure noise)
    grid_fraction: float = 0.3  # share of chunks trained at the sampler's own timesteps
    context_noise: float = 0.02  # max std of noise added to the clean context frames
    seed: int = 0
    save_every: int = 100
    diag_every: int = 250  # steps between cache-use diagnostics (0: never)
    max_minutes: float = 60.0
    threads: int = 2

    def __post_init__(self) -> None:
        for key in ("steps", "batch", "save_every", "threads"):
            require(getattr(self, key) > 0, f"--{key.replace('_', '-')}", getattr(self, key), "allowed: > 0")
        for key in ("warmup", "diag_every"):
            require(getattr(self, key) >= 0, f"--{key.replace('_', '-')}", getattr(self, key), "allowed: >= 0")
        require(self.lr > 0 and self.max_minutes > 0, "--lr/--max-minutes", (self.lr, self.max_minutes),
                "allowed: > 0")
        require(0 <= self.t1_fraction and 0 <= self.grid_fraction and self.t1_fraction + self.grid_fraction <= 1,
                "--t1-fraction/--grid-fraction", (self.t1_fraction, self.grid_fraction),
                "allowed: each >= 0, sum <= 1")


def sample_clips(rng: np.random.Generator, batch: int, frames: int) -> tuple[torch.Tensor, list[str]]:
    """A batch of world clips from the training split: x0 [B, T, 3, 32, 32] in [-1, 1]."""
    videos, prompts = [], []
    for _ in range(batch):
        scene = random_scene(rng, "train")
        video = simulate([(0, scene.text())], frames, int(rng.integers(2**31)))
        videos.append(video.frames)
        prompts.append(scene.text())
    return torch.from_numpy(np.stack(videos)) * 2 - 1, prompts


def chunk_timesteps(rng: np.random.Generator, batch: int, chunks: int, frames_per_chunk: int,
                    grid: list[float], grid_fraction: float, t1_fraction: float = 0.0) -> torch.Tensor:
    """[B, T] timesteps, constant within each chunk: 1.0 with probability ``t1_fraction``,
    one of ``grid`` with probability ``grid_fraction``, else uniform in (0.02, 1)."""
    uniform = rng.uniform(0.02, 1.0, (batch, chunks))
    on_grid = rng.choice(grid, (batch, chunks))
    u = rng.random((batch, chunks))
    t = np.where(u < t1_fraction, 1.0, np.where(u < t1_fraction + grid_fraction, on_grid, uniform))
    return torch.from_numpy(np.repeat(t, frames_per_chunk, axis=1)).float()


def loss_on_batch(model: ToyDiT, x0: torch.Tensor, prompts: list[str], t: torch.Tensor,
                  noise: torch.Tensor, context_noise: torch.Tensor) -> torch.Tensor:
    """Teacher-forcing flow-matching loss. x0, noise: [B, T, C, H, W]; t: [B, T].

    The loss is on what the network predicts: x0 (MSE to the clean frames) or the velocity."""
    B, T = t.shape
    F = model.geometry.frames_per_chunk
    tt = t[:, :, None, None, None]
    noisy = (1 - tt) * x0 + tt * noise
    clean = x0 + context_noise[:, None, None, None, None] * torch.randn_like(x0)
    seq = torch.cat((clean, noisy), dim=1)
    times = torch.cat((torch.zeros(B, T), t), dim=1)
    pos = torch.arange(T).repeat(2)
    context = model.encode_prompts(prompts)
    out = model.forward_sequence(seq, times, context, pos, teacher_forcing_mask(T, F), raw=True)[:, T:]
    target = x0 if model.cfg.prediction == "x0" else noise - x0
    return ((out - target) ** 2).mean()


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def state_paths(out: Path) -> tuple[Path, Path]:
    """(tensor state .safetensors, JSON state) beside the weights file ``out``."""
    return out.with_suffix(".state.safetensors"), out.with_suffix(".state.json")


def save_state(out: Path, model: ToyDiT, opt: torch.optim.Optimizer, step: int,
               rng: np.random.Generator, losses: list[float], diags: list[dict]) -> None:
    """Resumable training state without pickle, and the weights as safetensors."""
    opt_state = opt.state_dict()
    tensors = {"torch_rng": torch.get_rng_state()}
    for index, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{index}.{name}"] = value.detach().contiguous()
    tensor_file, json_file = state_paths(out)
    atomic_write_bytes(tensor_file, save(tensors))
    write_json(json_file, {"step": step, "rng": rng.bit_generator.state, "losses": losses, "diagnostics": diags,
                           "param_groups": opt_state["param_groups"]})
    save_weights(out, model, metadata={"step": str(step)})


def load_state(out: Path, model: ToyDiT, opt: torch.optim.Optimizer,
               rng: np.random.Generator) -> tuple[int, list[float], list[dict]]:
    """Restore what ``save_state`` wrote; returns (step, losses, diagnostics). Files that
    cannot be read back are one-line errors (start over with --fresh)."""
    tensor_file, json_file = state_paths(out)
    check_checkpoint(out, "--out", str(out), model.state_dict())
    read_header(tensor_file, "--out", str(tensor_file))
    try:
        meta = json.loads(read_text(json_file, "--out"))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not all(k in meta for k in ("step", "param_groups", "rng", "losses")):
        raise ConfigError(f"--out={str(out)!r}: the training state {json_file.name} is not readable; "
                          "allowed: a state written by this command, or --fresh")
    tensors = load_file(str(tensor_file))
    model.load_state_dict(load_file(str(out)))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng.bit_generator.state = meta["rng"]
    torch.set_rng_state(tensors["torch_rng"])
    return meta["step"], meta["losses"], meta.get("diagnostics", [])


def train_backbone(model_cfg: ToyConfig, cfg: TrainConfig, out: Path, resume: bool = True,
                   progress: bool = True) -> dict:
    """Train (or resume) and write ``out`` (safetensors) plus ``out``.state.pt and a log."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = ToyDiT(model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    rng = np.random.default_rng(cfg.seed)
    step, losses, diags = 0, [], []
    if resume and all(p.exists() for p in (out, *state_paths(out))):
        step, losses, diags = load_state(out, model, opt, rng)
    g = model.geometry
    T = g.horizon_frames
    grid = FlowSampler(steps=4, shift=model_cfg.shift).timesteps()[:-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress)
    while step < cfg.steps:
        x0, prompts = sample_clips(rng, cfg.batch, T)
        t = chunk_timesteps(rng, cfg.batch, T // g.frames_per_chunk, g.frames_per_chunk, grid,
                            cfg.grid_fraction, cfg.t1_fraction)
        noise = torch.randn_like(x0)
        ctx_noise = torch.rand(cfg.batch) * cfg.context_noise
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss = loss_on_batch(model, x0, prompts, t, noise, ctx_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        losses.append(loss.detach().item())
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if cfg.diag_every and step % cfg.diag_every == 0:
            model.eval()
            with torch.random.fork_rng(devices=[]):
                diags.append({"step": step, "loss": float(np.mean(losses[-50:])),
                              **{k: v for k, v in diagnostic(model).items() if k != "rows"}})
            model.train()
            bar.write(json.dumps(diags[-1]))
        out_of_time = (time.perf_counter() - start) / 60 > cfg.max_minutes
        if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
            save_state(out, model, opt, step, rng, losses, diags)
        if out_of_time:
            break
    bar.close()
    log = {"steps_done": step, "minutes": (time.perf_counter() - start) / 60,
           "final_loss_mean_last_100": float(np.mean(losses[-100:])) if losses else None,
           "train": asdict(cfg), "model": asdict(model_cfg)}
    write_json(out.with_suffix(".train.json"), {**log, "losses": losses, "diagnostics": diags})
    return log


@dataclass
class TrainBackboneOptions(Options):
    """``forcebench train backbone``'s options beside TrainConfig's; ``model_config`` is the
    toy config with the ``--model`` overrides, built when the options are."""

    out: str = option("runs/train/toy_dit.safetensors", "weights file (.safetensors; its training state beside it)",
                      output="file")
    fresh: bool = option(False, "ignore an existing training state")
    overwrite_shipped: bool = option(False, "allow --out inside the shipped weights folder bench/models/weights/")
    model: tuple[str, ...] = option((), "model overrides key=value (sizes)", nargs="*", metavar="KEY=VALUE")
    model_config: ToyConfig = field(init=False)

    def validate(self) -> None:
        out = Path(self.out)
        require(out.suffix == ".safetensors", "--out", self.out, "allowed: a path ending in .safetensors")
        require(SHIPPED_DIR not in out.resolve().parents or self.overwrite_shipped, "--out", self.out,
                "is in the shipped weights folder; allowed: another path, or --overwrite-shipped")
        self.model_config = ToyConfig(**parse_overrides(self.model, ToyConfig, "--model", exclude=("name",)))


def main(argv: list[str]) -> int:
    options, cfg = parse("forcebench train backbone", argv, TrainBackboneOptions, TrainConfig)
    log = train_backbone(options.model_config, cfg, Path(options.out), resume=not options.fresh)
    print(json.dumps(log, indent=2))
    return 0
