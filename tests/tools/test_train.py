"""Training the toy backbone and the toy encoder: the loss falls, checkpoints round-trip, resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.models.toy import ToyConfig, ToyDiT
from bench.tools.train_backbone import (
    TrainConfig,
    chunk_timesteps,
    loss_on_batch,
    sample_clips,
    train_backbone,
)
from bench.tools.train_encoder import EncoderTrainConfig, contrastive_loss, sample_pairs
from core.errors import ConfigError
from core.paths import REPO_DIR
from metrics.encoders import ToyClip, load_encoder

SMALL = dict(dim=32, layers=2, heads=2, mlp_ratio=2)
SHIPPED = REPO_DIR / "bench" / "models" / "weights" / "toy_dit.safetensors"


def test_a_training_step_decreases_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = ToyDiT(ToyConfig(**SMALL)).train()
    rng = np.random.default_rng(0)
    x0, prompts = sample_clips(rng, 2, 21)
    assert x0.shape == (2, 21, 3, 32, 32) and x0.min() >= -1 and x0.max() <= 1
    t = chunk_timesteps(rng, 2, 7, 3, [1.0, 0.75, 0.5, 0.25], 0.5)
    noise = torch.randn_like(x0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = loss_on_batch(model, x0, prompts, t, noise, torch.zeros(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_tiny_training_run_saves_reloads_and_resumes_exactly(tmp_path):
    cfg = ToyConfig(**SMALL)
    straight = tmp_path / "straight.safetensors"
    train_backbone(cfg, TrainConfig(steps=4, batch=2, save_every=2, warmup=1), straight, progress=False)
    resumed = tmp_path / "resumed.safetensors"
    train_backbone(cfg, TrainConfig(steps=2, batch=2, save_every=2, warmup=1), resumed, progress=False)
    train_backbone(cfg, TrainConfig(steps=4, batch=2, save_every=2, warmup=1), resumed, progress=False)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    model = ToyDiT(ToyConfig(**SMALL, checkpoint=str(straight))).eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, a[k])
    assert (tmp_path / "straight.train.json").exists()
    # training state without pickle: tensors as safetensors, the rest as JSON
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("straight.")) == [
        "straight.safetensors", "straight.state.json", "straight.state.safetensors", "straight.train.json"]


def test_a_share_of_chunks_is_trained_at_t_1():
    rng = np.random.default_rng(0)
    t = chunk_timesteps(rng, 400, 7, 3, [1.0, 0.75, 0.5, 0.25], grid_fraction=0.3, t1_fraction=0.4)
    assert t.shape == (400, 21) and (t.view(400, 7, 3) == t.view(400, 7, 3)[..., :1]).all()  # constant per chunk
    per_chunk = t[:, ::3]
    grid_t1 = 0.3 / 4  # the grid also holds 1.0
    assert (per_chunk == 1.0).float().mean().item() == pytest.approx(0.4 + grid_t1, abs=0.03)
    assert ((per_chunk > 0) & (per_chunk <= 1)).all()


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-1"], "--steps=-1: allowed: > 0"),
    (["--t1-fraction", "0.8", "--grid-fraction", "0.5"], "allowed: each >= 0, sum <= 1"),
    (["--out", str(SHIPPED)], "is in the shipped weights folder; allowed: another path, or --overwrite-shipped"),
    (["--out", "x.pt"], "allowed: a path ending in .safetensors"),
])
def test_bad_training_arguments_are_one_line_errors_and_write_nothing(argv, message, tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*")), SHIPPED.stat().st_mtime_ns
    args = ["train", "backbone", *argv] + ([] if "--out" in argv else ["--out", str(tmp_path / "m.safetensors")])
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert (set(tmp_path.rglob("*")), SHIPPED.stat().st_mtime_ns) == before


def test_encoder_loss_decreases_and_loader_errors(tmp_path):
    torch.manual_seed(0)
    model = ToyClip()
    frames, prompts = sample_pairs(np.random.default_rng(0), EncoderTrainConfig(videos=8, frames_per_video=2))
    assert frames.shape == (16, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(10):
        loss = contrastive_loss(model, frames, prompts)
        first = first if first is not None else loss.detach().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.detach().item() < 0.7 * first
    image, text = model.encode_image(frames), model.encode_text(prompts[:3])
    assert image.shape == (16, 64) and text.shape == (3, 64)
    torch.testing.assert_close(image.norm(dim=1), torch.ones(16))
    with pytest.raises(ConfigError, match=r"encoder 'toy-clip': weights file toy_clip.safetensors not found in"):
        load_encoder("toy-clip", tmp_path)
