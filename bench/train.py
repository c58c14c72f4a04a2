"""Train the toy backbone on the toy world (``forcebench train backbone``).

Objective: flow matching with teacher forcing over clips of the trained horizon (21
frames = 7 chunks of 3). One forward sees the sequence [clean clip ; noisy clip] under
``teacher_forcing_mask``: the noisy frames of chunk c attend to the clean frames of
chunks < c and to their own chunk, exactly what chunk c sees in a rollout with a clean
KV cache. Every chunk gets its own timestep: half of the time one of the sampler's
timesteps (so the 4-step sampler is in distribution), otherwise uniform in (0, 1).
The loss is the velocity MSE on the noisy half.

Deterministic given ``seed``; checkpoints (model, optimiser, step, data RNG) are written
atomically every ``save_every`` steps and on exit, and training resumes from them.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.cli_args import add_fields, build
from bench.models.attention import teacher_forcing_mask
from bench.models.toy import ToyConfig, ToyDiT
from bench.records import atomic_write_bytes, save_weights, write_json
from bench.sampler import FlowSampler
from bench.world import random_scene, simulate


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    grid_fraction: float = 0.5  # share of chunks trained at the sampler's own timesteps
    context_noise: float = 0.02  # max std of noise added to the clean context frames
    seed: int = 0
    save_every: int = 200
    max_minutes: float = 60.0
    threads: int = 2


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
                    grid: list[float], grid_fraction: float) -> torch.Tensor:
    """[B, T] timesteps, constant within each chunk."""
    uniform = rng.uniform(0.02, 1.0, (batch, chunks))
    on_grid = rng.choice(grid, (batch, chunks))
    t = np.where(rng.random((batch, chunks)) < grid_fraction, on_grid, uniform)
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


def save_state(path: Path, model: ToyDiT, opt: torch.optim.Optimizer, step: int,
               rng: np.random.Generator, losses: list[float]) -> None:
    """Training state (resumable) as one torch file, and the weights as safetensors."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "losses": losses}, buf)
    atomic_write_bytes(path.with_suffix(".state.pt"), buf.getvalue())
    save_weights(path, model, metadata={"step": str(step)})


def train_backbone(model_cfg: ToyConfig, cfg: TrainConfig, out: Path, resume: bool = True,
                   progress: bool = True) -> dict:
    """Train (or resume) and write ``out`` (safetensors) plus ``out``.state.pt and a log."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = ToyDiT(model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    rng = np.random.default_rng(cfg.seed)
    step, losses = 0, []
    state_file = out.with_suffix(".state.pt")
    if resume and state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, losses = state["step"], state["losses"]
    g = model.geometry
    T = g.horizon_frames
    grid = FlowSampler(steps=4, shift=model_cfg.shift).timesteps()[:-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress)
    while step < cfg.steps:
        x0, prompts = sample_clips(rng, cfg.batch, T)
        t = chunk_timesteps(rng, cfg.batch, T // g.frames_per_chunk, g.frames_per_chunk, grid, cfg.grid_fraction)
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
        out_of_time = (time.perf_counter() - start) / 60 > cfg.max_minutes
        if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
            save_state(out, model, opt, step, rng, losses)
        if out_of_time:
            break
    bar.close()
    log = {"steps_done": step, "minutes": (time.perf_counter() - start) / 60,
           "final_loss_mean_last_100": float(np.mean(losses[-100:])) if losses else None,
           "train": asdict(cfg), "model": asdict(model_cfg)}
    write_json(out.with_suffix(".train.json"), {**log, "losses": losses})
    return log


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="forcebench train backbone")
    add_fields(parser, TrainConfig)
    parser.add_argument("--out", default="bench/models/weights/toy_dit.safetensors")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing training state")
    parser.add_argument("--model", nargs="*", default=[], help="model overrides key=value (sizes)")
    args = parser.parse_args(argv)
    fields = ToyConfig.__dataclass_fields__
    overrides = {k: type(fields[k].default)(v) for k, v in (o.split("=", 1) for o in args.model)}
    model_cfg = ToyConfig(**overrides)
    cfg = build(TrainConfig, args)
    log = train_backbone(model_cfg, cfg, Path(args.out), resume=not args.fresh)
    print(json.dumps(log, indent=2))
    return 0
