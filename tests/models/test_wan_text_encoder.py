"""The UMT5 text encoder of the Wan backbone (``model.text_encoder``, bench/models/wan_io.py).

Real UMT5-XXL weights cannot be fetched here, so these tests make their own files offline: a
tiny T5 tokenizer (Unigram over a few pieces, pad = 0, </s> = 1, unk = 2 as in UMT5) and a
seeded random UMT5 encoder of width text_dim, saved with ``save_pretrained`` as a plain folder
and as a diffusers pipeline folder. Checks: the features equal the tokenizer + model called
directly, zero exactly at padding; long prompts are cut at text_len; the backbone uses them
for prompts and a rollout; missing files and a missing transformers package are one-line
errors naming the path; importing the backbone does not import transformers.
"""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_wan import one_line_error, wan_config

from bench.models.wan import WanDiT
from bench.models.wan_io import Umt5Encoder
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.paths import REPO_DIR
from methods import build_method
from methods.full import FullConfig

WORDS = "a cat dog red fox in the snow on sofa".split()
PROMPTS = ["a red fox in the snow", "a cat"]  # 7 and 3 tokens with </s>: both padded to text_len 8
LONG = "a dog on the sofa and a cat in the snow"  # 14 tokens with </s> ("and" is spelt ▁a n d)


def tiny_tokenizer():
    """T5 tokenizer (transformers' tokenizers-backed ``T5Tokenizer``) over 4 + 26 + 10 pieces:
    the specials, the word boundary, single letters (so any lowercase text encodes) and WORDS."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -5.0) for c in string.ascii_lowercase] + [(f"▁{w}", -1.0) for w in WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_umt5(vocab_size: int, text_dim: int):
    """Random UMT5 encoder: 2 layers, 4 heads of 8, width text_dim, seeded."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size, d_model=text_dim, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UMT5EncoderModel(config).eval()


@pytest.fixture(scope="module")
def umt5(tmp_path_factory) -> dict:
    """The tokenizer and model in memory, saved as {"plain": folder, "diffusers": pipeline folder}."""
    cfg = wan_config()
    tokenizer = tiny_tokenizer()
    model = tiny_umt5(len(tokenizer), cfg.text_dim)
    root = tmp_path_factory.mktemp("umt5")
    for folder in (root / "plain", root / "diffusers" / "tokenizer"):
        tokenizer.save_pretrained(folder)
    for folder in (root / "plain", root / "diffusers" / "text_encoder"):
        model.save_pretrained(folder)
    return {"tokenizer": tokenizer, "model": model, "plain": str(root / "plain"),
            "diffusers": str(root / "diffusers")}


def direct(umt5: dict, texts: list[str], text_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The in-memory tokenizer + model: ids [B, text_len], mask [B, text_len], hidden [B, text_len, text_dim]."""
    batch = umt5["tokenizer"](texts, padding="max_length", max_length=text_len, truncation=True,
                              return_tensors="pt")
    with torch.no_grad():
        hidden = umt5["model"](input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return batch.input_ids, batch.attention_mask.bool(), hidden


def encode(folder: str, texts: list[str], text_len: int) -> torch.Tensor:
    return Umt5Encoder(folder, text_len, wan_config().text_dim)(texts, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("layout", ["plain", "diffusers"])
def test_features_equal_the_model_and_are_zero_at_padding(umt5, layout):
    cfg = wan_config()
    features = encode(umt5[layout], PROMPTS, cfg.text_len)
    assert features.shape == (2, cfg.text_len, cfg.text_dim) and features.dtype == torch.float32
    ids, mask, hidden = direct(umt5, PROMPTS, cfg.text_len)
    assert mask.sum(1).tolist() == [7, 3] and (ids[~mask] == 0).all()
    torch.testing.assert_close(features[mask], hidden[mask], rtol=1e-6, atol=1e-6)
    assert (features[mask].abs().amax(dim=-1) > 0).all()
    assert (features[~mask] == 0).all() and (hidden[~mask] != 0).any()  # zeroed by the encoder, not the model


def test_long_prompt_is_cut_at_text_len(umt5):
    cfg, tokenizer = wan_config(), umt5["tokenizer"]
    full = tokenizer(LONG).input_ids
    assert len(full) == 14 > cfg.text_len and "<unk>" not in tokenizer.convert_ids_to_tokens(full)
    ids, mask, hidden = direct(umt5, [LONG], cfg.text_len)
    assert mask.all() and ids[0].tolist() == full[: cfg.text_len - 1] + [tokenizer.eos_token_id]
    features = encode(umt5["plain"], [LONG], cfg.text_len)
    torch.testing.assert_close(features, hidden, rtol=1e-6, atol=1e-6)
    assert (features.abs().amax(dim=-1) > 0).all()


def test_backbone_encodes_prompts_and_rolls_out_with_it(umt5):
    model = WanDiT(wan_config(text_encoder=umt5["diffusers"])).eval()
    stand_in = WanDiT(wan_config()).eval()
    g = model.geometry
    assert model.sources["text"] == umt5["diffusers"]
    features = model.text_features(PROMPTS)
    assert torch.equal(features, encode(umt5["plain"], PROMPTS, model.cfg.text_len))
    with torch.no_grad():
        tokens = model.encode_prompt(PROMPTS[0])["tokens"]  # [1, text_len, dim]
        assert torch.equal(tokens, model.context(features[:1])["tokens"])
    assert tokens.shape == (1, model.cfg.text_len, model.cfg.dim)
    timeline = [(0.0, PROMPTS[0]), (1.0, PROMPTS[1])]
    frames = 2 * g.frames_per_chunk  # the prompt changes at 1 s = frame 4, in the second chunk
    rollouts = [generate(m, build_method(FullConfig(), g), timeline, frames, seed=0,
                         sampler=FlowSampler(1, m.default_shift)).frames for m in (model, stand_in)]
    assert rollouts[0].shape == (frames, 3, 8, 8) and torch.isfinite(rollouts[0]).all()
    assert not torch.equal(rollouts[0], rollouts[1])  # the prompt features reach the frames


def test_missing_files_are_one_line_errors(umt5, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(lambda: WanDiT(wan_config(text_encoder=str(empty))), f"model.text_encoder={str(empty)!r}",
                   "no config.json", "text_encoder/ and tokenizer/")
    only_model = tmp_path / "only_model"
    umt5["model"].save_pretrained(only_model)
    one_line_error(lambda: Umt5Encoder(str(only_model), 8, 32), str(only_model), "no tokenizer.json",
                   str(only_model.resolve()))
    pipeline = tmp_path / "pipeline"
    umt5["tokenizer"].save_pretrained(pipeline / "tokenizer")
    (pipeline / "text_encoder").mkdir()
    one_line_error(lambda: Umt5Encoder(str(pipeline), 8, 32), "no config.json", str((pipeline / "text_encoder").resolve()))
    (pipeline / "text_encoder" / "config.json").write_text(Path(umt5["plain"], "config.json").read_text())
    encoder = Umt5Encoder(str(pipeline), 8, 32)  # config.json but no weights: transformers' OSError, on one line
    one_line_error(lambda: encoder(["a"], torch.device("cpu"), torch.float32), str(pipeline),
                   "UMT5EncoderModel does not load", "model.safetensors")


def test_preflight_checks_the_folder_and_the_feature_width(umt5, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(lambda: wan_config(text_encoder=str(empty)).check(), "no config.json")
    wide = Umt5Encoder(umt5["plain"], 8, 64)
    one_line_error(lambda: wide(["a"], torch.device("cpu"), torch.float32), "features are 32-d",
                   "allowed: model.text_dim=64")


def test_importing_the_backbone_does_not_import_transformers():
    code = "import sys, bench.models.wan, bench.models.wan_io; print('transformers' in sys.modules)"
    root = REPO_DIR
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
