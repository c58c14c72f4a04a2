"""Train the toy image-text encoder ``toy-clip`` (``forcebench train encoder``).

Pairs are (frame, prompt) from toy-world videos of the training split; the loss is the
symmetric InfoNCE of CLIP over in-batch negatives (identical prompts in a batch count as
positives). Retrieval accuracy is measured on videos with seeds training never used.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench.cli_args import Options, option, parse
from bench.prompt_sets import load_prompt_set
from bench.records import save_weights
from core.files import write_json
from core.world import random_scene, simulate
from metrics.encoders import ToyClip, ToyClipConfig

EVAL_SEED_BASE = 1_000_000  # evaluation seeds start here; training seeds stay below


@dataclass
class EncoderTrainConfig:
    steps: int = 800
    videos: int = 32  # per batch
    frames_per_video: int = 4
    clip_frames: int = 12
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2


def sample_pairs(rng: np.random.Generator, cfg: EncoderTrainConfig) -> tuple[torch.Tensor, list[str]]:
    frames, prompts = [], []
    for _ in range(cfg.videos):
        scene = random_scene(rng, "train")
        video = simulate([(0, scene.text())], cfg.clip_frames, int(rng.integers(EVAL_SEED_BASE)))
        for t in rng.choice(cfg.clip_frames, cfg.frames_per_video, replace=False):
            frames.append(video.frames[t])
            prompts.append(scene.text())
    return torch.from_numpy(np.stack(frames)), prompts


def contrastive_loss(model: ToyClip, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    image = model.encode_image(frames)
    unique = sorted(set(prompts))
    text = model.encode_text(unique)
    target = torch.tensor([unique.index(p) for p in prompts])
    logits = model.logit_scale.exp().clamp(max=100) * image @ text.T  # [N, U]
    positives = F.one_hot(target, len(unique)).float()
    image_loss = F.cross_entropy(logits, target)
    text_loss = -(torch.log_softmax(logits.T, dim=1) * positives.T).sum(1) / positives.T.sum(1)
    return image_loss + text_loss.mean()


@torch.no_grad()
def retrieval_accuracy(model: ToyClip, prompts: list[str], seeds: list[int], frames: int = 40,
                       every: int = 4) -> list[float]:
    """Per prompt: share of its videos' frames whose nearest prompt (among all ``prompts``) is it."""
    text = model.encode_text(prompts)
    accuracy = []
    for i, prompt in enumerate(prompts):
        hits = total = 0
        for seed in seeds:
            video = simulate([(0, prompt)], frames, seed)
            image = model.encode_image(torch.from_numpy(video.frames[::every]))
            hits += int((image @ text.T).argmax(1).eq(i).sum())
            total += image.shape[0]
        accuracy.append(hits / total)
    return accuracy


def accuracy_by_split(model: ToyClip, prompts: list[str], splits: list[str], seeds: list[int]) -> dict[str, float]:
    per_prompt = retrieval_accuracy(model, prompts, seeds)
    out = {"all": float(np.mean(per_prompt))}
    for split in sorted(set(splits)):
        out[split] = float(np.mean([a for a, s in zip(per_prompt, splits) if s == split]))
    return out


def train_encoder(cfg: EncoderTrainConfig, out: Path, eval_prompts: list[str], eval_splits: list[str],
                  progress: bool = True) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = ToyClip(ToyClipConfig()).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    start, losses = time.perf_counter(), []
    for _ in tqdm(range(cfg.steps), desc="train toy-clip", disable=not progress):
        frames, prompts = sample_pairs(rng, cfg)
        loss = contrastive_loss(model, frames, prompts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
    model.eval()
    seeds = [EVAL_SEED_BASE + s for s in range(3)]
    accuracy = accuracy_by_split(model, eval_prompts, eval_splits, seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, model)
    log = {"minutes": (time.perf_counter() - start) / 60, "final_loss": float(np.mean(losses[-50:])),
           "retrieval_accuracy": accuracy, "eval_seeds": seeds, "train": asdict(cfg)}
    write_json(out.with_suffix(".train.json"), {**log, "losses": losses})
    return log


@dataclass
class TrainEncoderOptions(Options):
    """``forcebench train encoder``'s options beside EncoderTrainConfig's."""

    out: str = option("bench/models/weights/toy_clip.safetensors", "weights file (its .train.json beside it)",
                      output="file")
    prompts: str = option("toy", "prompt set whose prompts are retrieved")


def main(argv: list[str]) -> int:
    options, cfg = parse("forcebench train encoder", argv, TrainEncoderOptions, EncoderTrainConfig)
    entries = load_prompt_set(options.prompts).prompts
    log = train_encoder(cfg, Path(options.out), [e.text for e in entries], [e.split for e in entries])
    print(json.dumps(log, indent=2))
    return 0
