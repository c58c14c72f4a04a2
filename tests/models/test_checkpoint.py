"""Backbone weights load from a local safetensors file, with one-line errors."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from safetensors.torch import save_file

from bench.models.toy import ToyConfig, ToyDiT
from core.errors import ConfigError


def outputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 3, 16, 16, generator=g)
    t = torch.full((1, 3), 0.5)
    mask = torch.ones(3, 3, dtype=torch.bool)
    with torch.no_grad():
        return model.forward_sequence(x, t, model.encode_prompt("red ball"), torch.arange(3), mask)


def test_checkpoint_round_trip(tmp_path, tiny_model):
    path = tmp_path / "toy.safetensors"
    save_file(tiny_model.state_dict(), str(path))
    other_init = ToyDiT(ToyConfig(**TINY, init_seed=1)).eval()
    assert (outputs(other_init) - outputs(tiny_model)).abs().max() > 1e-3
    loaded = ToyDiT(ToyConfig(**TINY, init_seed=1, checkpoint=str(path))).eval()
    assert torch.equal(outputs(loaded), outputs(tiny_model))


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ConfigError, match=f"model.checkpoint='{missing}': file not found"):
        ToyDiT(ToyConfig(**TINY, checkpoint=str(missing)))


def test_checkpoint_with_wrong_keys_or_shapes(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    state["blocks.0.qkv.weight_renamed"] = state.pop("blocks.0.qkv.weight")
    path = tmp_path / "renamed.safetensors"
    save_file(state, str(path))
    with pytest.raises(ConfigError, match=r"missing keys \['blocks.0.qkv.weight'\], unexpected keys \['blocks.0.qkv.weight_renamed'\]"):
        ToyDiT(ToyConfig(**TINY, checkpoint=str(path)))
    bigger = ToyDiT(ToyConfig(**{**TINY, "mlp_ratio": 4}))
    path = tmp_path / "bigger.safetensors"
    save_file(bigger.state_dict(), str(path))
    with pytest.raises(ConfigError, match=r"blocks.0.mlp.0.weight has shape \(128, 32\), the model expects \(64, 32\)"):
        ToyDiT(ToyConfig(**TINY, checkpoint=str(path)))


def test_weights_digest_of_a_checkpoint_folder_covers_names_and_contents(tmp_path):
    from bench.records import file_digest

    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"abc")
    first = file_digest(folder)
    assert len(first) == 12 and file_digest(folder) == first
    (folder / "model.safetensors").write_bytes(b"abd")
    assert file_digest(folder) != first
    (folder / "model.safetensors").write_bytes(b"abc")
    (folder / "config.json").rename(folder / "other.json")
    assert file_digest(folder) != first
