"""The Wan2.1 / Self Forcing backbone on forcebench's contracts, at a tiny size on the CPU.

Checks: the chunked rollout with the full cache equals one block-causal forward; every
cache method runs past the horizon; checkpoints in the Self Forcing, Wan and diffusers
layouts load to identical outputs, and match diffusers' own WanTransformer3DModel; the
full-size geometry matches REFERENCE.md without building the model; missing files are
one-line errors naming the path. The UMT5 text encoder: tests/models/test_wan_text_encoder.py.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from conftest import fast_configs
from omegaconf import OmegaConf
from safetensors.torch import save_file

from bench.config import CONF_DIR
from bench.models.attention import block_causal_mask, teacher_forcing_mask
from bench.models.wan import WanDiT
from bench.models.wan_config import WanConfig, kv_cache_bytes, parameter_count
from bench.preflight import check_command_line, model_geometry
from bench.rollout import generate
from bench.sampler import FlowSampler
from core.errors import ConfigError
from kernels import RaggedKV
from methods import METHODS, build_method
from methods.full import FullConfig


def wan_config(name: str = "wan_tiny", **overrides) -> WanConfig:
    """conf/model/<name>.yaml on the WanConfig schema (what Hydra composes), with overrides."""
    raw = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    raw.pop("defaults")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(WanConfig), raw, overrides))


@pytest.fixture
def tiny() -> WanDiT:
    return WanDiT(wan_config()).eval()


def one_line_error(fn, *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def empty_views(model: WanDiT) -> list[RaggedKV]:
    """Cache views of a first chunk (nothing cached; queries at frames 0..F-1)."""
    g = model.geometry
    none = torch.zeros(1, 0, g.head_dim)
    view = RaggedKV(none, none, torch.zeros(0, dtype=torch.long), torch.zeros(g.heads + 1, dtype=torch.long),
                    torch.arange(g.frames_per_chunk).expand(g.heads, -1))
    return [view] * g.layers


def chunk_output(model: WanDiT, seed: int = 0, t: float = 0.9375) -> torch.Tensor:
    g = model.geometry
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, g.frames_per_chunk, *g.frame_shape), generator=gen)
    with torch.no_grad():
        out, _ = model.forward_chunk(x, torch.full((1, g.frames_per_chunk), t), model.encode_prompt("a cat"),
                                     empty_views(model))
    return out


# -- the cache path equals one block-causal forward -------------------------------------
@pytest.mark.parametrize("sampler_kind", ["euler", "renoise"])
def test_full_cache_rollout_equals_block_causal_forward(tiny, sampler_kind):
    g, F, steps = tiny.geometry, tiny.geometry.frames_per_chunk, 3
    T = g.horizon_frames
    calls = []
    inner = tiny.forward_chunk

    def spy(x, t, context, views, return_kv=False, observer=None):
        v, kv = inner(x, t, context, views, return_kv=return_kv, observer=observer)
        calls.append((x.clone(), t.clone(), v.clone()))
        return v, kv

    tiny.forward_chunk = spy
    prompt = "a red fox in the snow"
    sampler = FlowSampler(steps, tiny.default_shift, sampler_kind)
    generate(tiny, build_method(FullConfig(), g), [(0.0, prompt)], T, seed=3, sampler=sampler)
    chunks = T // F
    per_chunk = [calls[c * (steps + 1):(c + 1) * (steps + 1)] for c in range(chunks)]
    context = tiny.encode_prompt(prompt)
    clean = torch.cat([pc[steps][0] for pc in per_chunk], dim=1)  # [1, T, C, h, w]
    worst = 0.0
    with torch.no_grad():
        out = tiny.forward_sequence(clean, torch.zeros(1, T), context, torch.arange(T), block_causal_mask(T, F))
        expected = torch.cat([pc[steps][2] for pc in per_chunk], dim=1)
        assert expected.abs().max() > 0
        worst = max(worst, float((out - expected).abs().max()))
        for s in range(steps):  # denoising step s of every chunk: one teacher-forcing forward
            noisy = torch.cat([pc[s][0] for pc in per_chunk], dim=1)
            t = torch.cat([pc[s][1] for pc in per_chunk], dim=1)
            out = tiny.forward_sequence(torch.cat((clean, noisy), dim=1), torch.cat((torch.zeros(1, T), t), dim=1),
                                        context, torch.arange(T).repeat(2), teacher_forcing_mask(T, F))
            expected = torch.cat([pc[s][2] for pc in per_chunk], dim=1)
            worst = max(worst, float((out[:, T:] - expected).abs().max()))
    assert worst <= 1e-5, worst


def test_every_method_runs_past_the_horizon(tiny, role_map_file):
    g = tiny.geometry
    frames = 2 * g.horizon_frames  # 18 latent frames, 4.5 s
    configs = fast_configs(role_map_file)
    assert sorted(configs) == METHODS.names()
    for name, config in configs.items():
        config.check(g, frames)
        out = generate(tiny, build_method(config, g), [(0.0, "a"), (2.0, "b")], frames, seed=0,
                       sampler=FlowSampler(1, tiny.default_shift))
        assert out.frames.shape == (frames, 3, 8, 8), name
        assert torch.isfinite(out.frames).all() and len(out.chunks) == frames // 3, name


# -- checkpoints --------------------------------------------------------------------------
def test_self_forcing_pt_and_wan_safetensors_round_trip(tmp_path, tiny):
    state = tiny.state_dict()
    sf = tmp_path / "self_forcing.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()},
                "generator_ema": {f"model.{k}": v + 1 for k, v in state.items()}}, sf)
    st = tmp_path / "wan.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    reference = chunk_output(tiny)
    for path, key in ((sf, "generator"), (st, None)):
        loaded = WanDiT(wan_config(init_seed=7, checkpoint=str(path), checkpoint_key=key)).eval()
        assert torch.equal(chunk_output(loaded), reference), path.name
    ema = WanDiT(wan_config(checkpoint=str(sf))).eval()  # no key given: generator_ema comes first
    assert torch.equal(ema.blocks[0].modulation, tiny.blocks[0].modulation + 1)


def test_diffusers_folder_matches_diffusers_forward(tmp_path):
    from diffusers import WanTransformer3DModel

    cfg = wan_config()
    torch.manual_seed(0)
    theirs = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=cfg.heads, attention_head_dim=cfg.dim // cfg.heads,
        in_channels=16, out_channels=16, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim,
        num_layers=cfg.layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=cfg.eps,
    ).eval()
    theirs.save_pretrained(tmp_path / "one")
    theirs.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    ours = WanDiT(wan_config(checkpoint=str(tmp_path / "one"))).eval()
    sharded = WanDiT(wan_config(checkpoint=str(tmp_path / "sharded"))).eval()
    assert torch.equal(chunk_output(ours), chunk_output(sharded))

    g = ours.geometry
    x = torch.randn(1, g.frames_per_chunk, *g.frame_shape)
    features = ours.text_features(["a cat on a sofa"])  # [1, text_len, text_dim]
    for t in ([0.9375] * 3, [1.0, 0.5, 0.0]):  # one timestep, then one per frame
        t = torch.tensor([t])
        with torch.no_grad():
            mine, _ = ours.forward_chunk(x, t, ours.context(features), empty_views(ours))
            per_token = (1000 * t).repeat_interleave(g.tokens_per_frame, dim=1)  # [1, F * S]
            ref = theirs(x.transpose(1, 2), per_token, features).sample.transpose(1, 2)
        assert (mine - ref).abs().max() <= 1e-4 * ref.abs().max(), float((mine - ref).abs().max())


def test_bad_checkpoints_are_one_line_errors(tmp_path, tiny):
    state = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    dropped = dict(state)
    del dropped["blocks.1.cross_attn.norm_k.weight"]
    save_file(dropped, str(tmp_path / "missing.safetensors"))
    one_line_error(lambda: WanDiT(wan_config(checkpoint=str(tmp_path / "missing.safetensors"))),
                   "missing keys ['blocks.1.cross_attn.norm_k.weight']", "unexpected keys [] (0 in all)")
    renamed = dict(state)
    renamed["head.mod"] = renamed.pop("head.modulation")
    torch.save({"generator": {f"model.{k}": v for k, v in renamed.items()}}, tmp_path / "renamed.pt")
    one_line_error(lambda: WanDiT(wan_config(checkpoint=str(tmp_path / "renamed.pt"))),
                   "missing keys ['head.modulation']", "unexpected keys ['head.mod']")
    one_line_error(lambda: WanDiT(wan_config(dim=96, checkpoint=str(tmp_path / "missing.safetensors"))),
                   "model.checkpoint=")
    save_file({**state, "head.head.bias": torch.zeros(3)}, str(tmp_path / "shape.safetensors"))
    one_line_error(lambda: WanDiT(wan_config(checkpoint=str(tmp_path / "shape.safetensors"))),
                   "head.head.bias has shape (3,)")
    one_line_error(lambda: WanDiT(wan_config(checkpoint=str(tmp_path / "renamed.pt"), checkpoint_key="ema")),
                   "model.checkpoint_key='ema'", "generator")


# -- full-size facts (REFERENCE.md section 2), without building the model --------------------
def test_full_size_geometry_matches_the_reference():
    (run,) = check_command_line(["model=wan_1_3b", "model.checkpoint=null", "model.vae=null",
                                 "model.text_encoder=null", "durations=[5,60]", "metrics=none"], False)
    cfg, g = run.model, run.geometry()
    assert (cfg.dim, cfg.layers, cfg.heads, cfg.ffn_dim, cfg.text_len, cfg.text_dim) == (1536, 30, 12, 8960, 512, 4096)
    assert g.head_dim == 128 and g.rope_split == (44, 42, 42) and g.frame_shape == (16, 60, 104)
    assert g.tokens_per_frame == 1560 and g.frames_per_chunk * g.tokens_per_frame == 4680
    assert run.frames() == [21, 240]  # 5 s = the trained horizon; 60 s = 240 latent frames
    assert g.horizon_frames * g.tokens_per_frame == 32760
    per_layer = kv_cache_bytes(cfg, 21) / cfg.layers
    assert round(per_layer / 1e6) == 201 and round(kv_cache_bytes(cfg, 21) / 1e9, 1) == 6.0  # bf16
    assert round(kv_cache_bytes(cfg, 1) / 1e9, 2) == 0.29
    assert parameter_count(cfg) == 1_418_996_800
    assert parameter_count(wan_config()) == sum(p.numel() for p in WanDiT(wan_config()).parameters())


def test_self_forcing_timesteps_are_the_sampler_with_shift_5(tiny):
    warped = [5 * t / (1 + 4 * t) for t in (1.0, 0.75, 0.5, 0.25)]  # Self Forcing's 1000, 750, 500, 250
    assert tiny.default_shift == 5.0
    assert FlowSampler(4, tiny.default_shift).timesteps() == pytest.approx(warped + [0.0], abs=1e-12)


# -- files: prompts, VAE, missing paths ---------------------------------------------------------
def test_missing_files_are_one_line_errors(tmp_path):
    one_line_error(lambda: check_command_line(["model=wan_1_3b"], False),
                   "model.checkpoint='weights/self_forcing/self_forcing_dmd.pt'", "not found")
    cases = {"vae": "model.vae=", "text_encoder": "model.text_encoder=", "text_embeddings": "model.text_embeddings=",
             "checkpoint": "model.checkpoint="}
    for key, needle in cases.items():
        path = str(tmp_path / f"no_{key}")
        one_line_error(lambda key=key, path=path: wan_config(**{key: path}).check(), needle, path)
        one_line_error(lambda key=key, path=path: WanDiT(wan_config(**{key: path})), path)
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: wan_config(vae=str(tmp_path / "empty")).check(), "no config.json")
    one_line_error(lambda: wan_config(text_encoder="a", text_embeddings="b"), "not both")


def test_text_encoder_without_transformers_is_a_one_line_error(tmp_path, monkeypatch):
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    model = WanDiT(wan_config(text_encoder=str(tmp_path)))
    one_line_error(lambda: model.encode_prompt("a"), f"model.text_encoder={str(tmp_path)!r}", "transformers",
                   "model.text_embeddings")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_precomputed_text_embeddings(tmp_path, tiny, suffix):
    table = {"a cat": torch.randn(3, 32), "a dog on a sofa": torch.randn(8, 32)}
    path = tmp_path / f"prompts{suffix}"
    save_file(table, str(path)) if suffix == ".safetensors" else torch.save(table, path)
    model = WanDiT(wan_config(text_embeddings=str(path))).eval()
    features = model.text_features(["a cat", "a dog on a sofa"])  # [2, text_len, text_dim]
    assert torch.equal(features[0, :3], table["a cat"]) and (features[0, 3:] == 0).all()
    assert torch.equal(features[1], table["a dog on a sofa"])
    one_line_error(lambda: model.encode_prompt("a bird"), "no entry for the prompt 'a bird'", str(path))
    bad = tmp_path / "wide.safetensors"
    save_file({"a cat": torch.randn(3, 31)}, str(bad))
    one_line_error(lambda: WanDiT(wan_config(text_embeddings=str(bad))).encode_prompt("a cat"), "allowed: [L, 32]")


def test_stand_in_text_is_deterministic(tiny):
    a, b, a2 = tiny.text_features(["a cat", "a dog", "a cat"])
    assert torch.equal(a, a2) and not torch.equal(a, b) and (a[3:] == 0).all()
    assert "stand-in" in tiny.sources["text"] and "stand-in" in tiny.sources["decode"]


@pytest.fixture
def vae_folder(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
    vae.save_pretrained(tmp_path / "vae")
    return str(tmp_path / "vae")


def test_vae_decode_and_stream(vae_folder):
    model = WanDiT(wan_config(vae=vae_folder)).eval()
    x = torch.randn(1, 6, 16, 8, 8)
    frames = model.decode(x)
    assert frames.shape == (1, 6, 3, 64, 64) and 0 <= frames.min() and frames.max() <= 1
    assert model.vae.decode(x, all_frames=True).shape == (1, 21, 3, 64, 64)  # 1 + 4 (T - 1) video frames
    stream = model.decode_stream()
    chunked = torch.cat([stream(x[:, :3]), stream(x[:, 3:])], dim=1)
    assert (chunked - frames).abs().max() <= 1e-5  # the causal cache carried across chunks


def test_perf_backbone_paths(tmp_path, vae_folder):
    from bench.tools import perf_backbone

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            perf_backbone.main(["--model", "wan_1_3b", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="method 'fast' is not registered; allowed: control_no_history"):
        perf_backbone.main(["--model", "wan_tiny", "--methods", "fast", "--out", str(tmp_path)])
    result = perf_backbone.main(["--model", "wan_tiny", "--methods", "full", "head_forcing", "deep_forcing",
                                 "--seconds", "1.5", "4.5", "--vae", vae_folder, "--dtype", "float32",
                                 "--out", str(tmp_path / "perf")])
    written = json.loads(next((tmp_path / "perf").glob("backbone_*_wan_tiny.json")).read_text())
    assert written == json.loads(json.dumps(result)) and "random" in written["weights"]
    assert "synthetic" in written["role_map"] and "budget_frames=16" in written["skipped"]["deep_forcing"]
    rows = {(r["method"], r["seconds"]): r for r in written["rows"]}
    assert sorted(rows) == [("full", 1.5), ("full", 4.5), ("head_forcing", 1.5), ("head_forcing", 4.5)]
    assert [rows["full", s]["chunks"] for s in (1.5, 4.5)] == [2, 6]
    # the full cache grows with the video (3 chunks' K/V more), Head Forcing's is bounded below it
    assert rows["full", 4.5]["kv_cache_mib"] == pytest.approx(3 * rows["full", 1.5]["kv_cache_mib"])
    assert rows["head_forcing", 4.5]["kv_cache_mib"] < rows["full", 4.5]["kv_cache_mib"]
    for r in rows.values():
        assert 0 < r["video_fps_with_decode"] < r["video_fps"]
        # FPS is frames over the summed chunk times, and at least half the chunks take the median or longer
        # (a bound that holds under any load, unlike a ratio to the median)
        assert r["video_fps"] <= 4 * r["frames"] / (math.ceil(r["chunks"] / 2) * r["chunk_latency_median_s"]) * (1 + 1e-9)
        assert r["video_fps"] <= 4 * r["frames"] / r["first_chunk_latency_s"] * (1 + 1e-9)
        assert r["chunk_latency_p95_s"] >= r["chunk_latency_median_s"] > 0
    assert "| head_forcing | 4.5 | 6 |" in (tmp_path / "perf" / "backbone_cpu_wan_tiny.md").read_text()


def test_every_default_method_fits_the_full_size_model_for_60_s(tmp_path):
    """What perf_backbone runs on a GPU: each method's default config, at 60 s, on wan_1_3b."""
    from bench.tools import perf_backbone

    g = model_geometry("wan_1_3b")
    role_maps, written = perf_backbone.synthetic_role_maps(g.layers, g.heads, str(tmp_path))
    assert {name: json.loads(open(path).read()) for name, path in role_maps.items()} == written
    assert written["roles.json"]["counts"] == {"local": 210, "anchor": 60, "memory": 90}  # 7 / 2 / 3 of 12 heads
    assert written["pyramid_labels.json"]["counts"] == {"anchor": 210, "wave": 120, "veil": 30}  # toy: 10 / 5 / 1 of 16
    for name in METHODS.names():
        run = perf_backbone.load_run_config("wan_1_3b", name, None, None, role_maps)
        run.method.check(g, g.frames_for_seconds(60))
