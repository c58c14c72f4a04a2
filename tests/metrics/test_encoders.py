"""The feature-model registry: tiny architectures, loading, lookup and its errors.

Every architecture runs here in a tiny random configuration; real weights are tested only
where their file is found ($FORCEBENCH_WEIGHTS), else those tests are skipped with the reason.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from metrics.encoders import (
    ENCODERS,
    WEIGHTS_DIR,
    WEIGHTS_ENV,
    Encoder,
    EncoderUnavailable,
    EncoderWeightsError,
    FlowModel,
    PerceptualDistance,
    ToyClip,
    ToyClipConfig,
    build_encoder,
    find_weights,
    load_encoder,
)

IMAGE = ["clip-vit-b32", "clip-vit-l14", "dino-vitb16"]
TEXT = ["clip-vit-b32", "clip-vit-l14", "toy-clip"]
WEIGHTED = ["toy-clip", "clip-vit-b32", "clip-vit-l14", "dino-vitb16", "raft", "lpips-alex", "lpips-vgg"]
FAST = {"raft": {"iters": 2}}  # tiny RAFT with 2 refinement steps
PROMPTS = ["forest blocks, red square bouncing", "desert stripes, camera pans right"]


def frames(n: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def tiny(name: str):
    torch.manual_seed(0)
    # Frozen like a loaded model, so both take the same (no-grad) attention kernels.
    return build_encoder(name, tiny=True, **FAST.get(name, {})).requires_grad_(False)


def outputs(model) -> list[torch.Tensor]:
    """Everything a model computes on fixed inputs."""
    a = frames()
    b = torch.roll(a, shifts=(1, 2), dims=(-2, -1))
    out = []
    if isinstance(model, Encoder):
        out.append(model.encode_image(a))
        if model.name in TEXT:
            out.append(model.encode_text(PROMPTS))
    if isinstance(model, FlowModel):
        out.append(model.flow(a, b))
    if isinstance(model, PerceptualDistance):
        out.append(model.distance(a, b))
    return [o.detach() for o in out]


def save(model, folder, file_name: str | None = None, state: dict | None = None) -> None:
    from safetensors.torch import save_file

    state = model.export_state_dict() if state is None else state
    name = file_name or model.name.replace("-", "_") + ".safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / name))


def test_registry_holds_every_model():
    assert ENCODERS.names() == ["clip-vit-b32", "clip-vit-l14", "dino-vitb16", "flow-blockmatch",
                                "lpips-alex", "lpips-vgg", "raft", "toy-clip"]
    with pytest.raises(ConfigError, match="unknown config fields"):
        build_encoder("raft", tiny=True, radius=3)


@pytest.mark.parametrize("name", IMAGE)
def test_tiny_image_encoders(name):
    model = tiny(name)
    feats = model.encode_image(frames(3))
    assert feats.shape == (3, model.dim) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3))
    grey = model.encode_image(torch.full((2, 3, 32, 32), 0.5))
    assert torch.isfinite(grey).all()
    torch.testing.assert_close(grey[0], grey[1])
    assert model.encode_image(frames(1, 40, 72)).shape == (1, model.dim)  # other aspect ratios
    assert model.encode_image(frames(1)[:, :1]).shape == (1, model.dim)  # one channel: grey RGB
    for bad in (frames(1) * 2 - 0.5, (frames(1) * 255).to(torch.uint8)):
        with pytest.raises(ValueError, match="frames must be"):
            model.encode_image(bad)


@pytest.mark.parametrize("name", ["clip-vit-b32", "clip-vit-l14"])
def test_tiny_clip_text_and_preprocessing(name):
    model = tiny(name)
    text = model.encode_text(PROMPTS + PROMPTS[:1])
    assert text.shape == (3, model.dim) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(text[0], text[2])
    assert not torch.allclose(text[0], text[1])
    # Resize + center crop to the tower's size, then OpenAI mean/std.
    x = model.preprocess(torch.full((1, 3, 48, 64), 0.5))
    assert x.shape == (1, 3, 32, 32)
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(x[0, :, 5, 7], (0.5 - mean) / std)


def test_tiny_dino_preprocessing_keeps_the_aspect_ratio():
    model = tiny("dino-vitb16")
    x = model.preprocess(torch.full((1, 3, 40, 72), 0.5))
    assert x.shape == (1, 3, 32, 56)  # shorter side 32 -> 32 x 57, cut to whole 8-pixel patches
    torch.testing.assert_close(x[0, :, 0, 0], (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize("size", [(32, 32), (36, 50)])
def test_tiny_raft_flow_shape(size):
    model = tiny("raft")
    a = frames(2, *size)
    flow = model.flow(a, torch.roll(a, 1, dims=-1))
    assert flow.shape == (2, 2, *size) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    with pytest.raises(ValueError, match="differ in shape"):
        model.flow(a, a[:1])


@pytest.mark.parametrize("dx, dy", [(0, 0), (2, -1), (-3, 4), (4, 4)])
def test_blockmatch_recovers_an_integer_shift(dx, dy):
    model = load_encoder("flow-blockmatch")
    assert model.weights_file is None and model.describe()["weights_file"] is None
    a = frames(2)
    b = torch.roll(a, shifts=(dy, dx), dims=(-2, -1))  # content moves dx right, dy down
    flow = model.flow(a, b)
    assert flow.shape == (2, 2, 32, 32) and flow.dtype == torch.float32
    m = model.cfg.radius + model.cfg.window // 2
    inner = flow[..., m:-m, m:-m]
    assert (inner[:, 0] == dx).all() and (inner[:, 1] == dy).all()


def test_blockmatch_gives_flat_frames_zero_flow():
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert (build_encoder("flow-blockmatch").flow(flat, flat) == 0).all()


@pytest.mark.parametrize("name", ["lpips-alex", "lpips-vgg"])
def test_tiny_lpips_distance(name):
    model = tiny(name)
    a, b = frames(3), frames(3, seed=1)
    same, other = model.distance(a, a), model.distance(a, b)
    assert same.shape == other.shape == (3,) and other.dtype == torch.float32
    assert (same == 0).all() and (other > 0).all()
    with pytest.raises(ValueError, match="frames must be in"):
        model.distance(a * 2, b)


def test_lpips_heads_come_from_the_installed_package():
    model = build_encoder("lpips-alex")  # full architecture, random trunk, nothing downloaded
    heads = torch.load(model.heads_file, map_location="cpu", weights_only=True)
    state = model.model.state_dict()
    assert heads and all(torch.equal(state[k], v) for k, v in heads.items())
    assert sorted(model.export_state_dict())[:2] == ["features.0.bias", "features.0.weight"]
    a = frames(2, 64, 64)
    assert (model.distance(a, a) == 0).all()


@pytest.mark.parametrize("name", WEIGHTED)
def test_round_trip_through_the_loader(name, tmp_path):
    model = tiny(name)
    save(model, tmp_path)
    loaded = load_encoder(name, tmp_path, tiny=True, **FAST.get(name, {}))
    assert loaded.weights_file == tmp_path / (name.replace("-", "_") + ".safetensors")
    assert loaded.describe()["encoder"] == name and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    for want, got in zip(outputs(model), outputs(loaded), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_torch_save_files_wrapped_and_prefixed_load(tmp_path):
    model = tiny("raft")
    state = {"module." + k: v for k, v in model.export_state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "raft.pt")
    loaded = load_encoder("raft", tmp_path, tiny=True, iters=2)
    assert loaded.weights_file.name == "raft.pt"
    torch.testing.assert_close(outputs(loaded)[0], outputs(model)[0], rtol=0, atol=0)


def test_published_layouts_map_onto_the_file_layout(tmp_path):
    dino = tiny("dino-vitb16")
    state = {"backbone." + k: v for k, v in dino.export_state_dict().items()}
    state["head.last_layer.weight"] = torch.zeros(4, 32)
    torch.save(state, tmp_path / "dino_vitbase16_pretrain.pth")  # DINO's own file name
    loaded = load_encoder("dino-vitb16", tmp_path, tiny=True)
    assert loaded.weights_file.name == "dino_vitbase16_pretrain.pth"
    torch.testing.assert_close(outputs(loaded)[0], outputs(dino)[0], rtol=0, atol=0)

    clip = tiny("clip-vit-b32")
    extra = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(16), "vocab_size": torch.tensor(49408)}
    save(clip, tmp_path, state={**clip.export_state_dict(), **extra})
    torch.testing.assert_close(outputs(load_encoder("clip-vit-b32", tmp_path, tiny=True))[1], outputs(clip)[1])

    lp = tiny("lpips-alex")  # torchvision's own file name, with its classifier
    torch.save({**lp.export_state_dict(), "classifier.1.weight": torch.zeros(2, 2)},
               tmp_path / "alexnet-owt-7be5be79.pth")
    loaded = load_encoder("lpips-alex", tmp_path, tiny=True)
    torch.testing.assert_close(outputs(loaded)[0], outputs(lp)[0], rtol=0, atol=0)


def test_missing_file_is_one_line_naming_file_and_directory(tmp_path, monkeypatch):
    with pytest.raises(EncoderUnavailable) as err:
        load_encoder("clip-vit-b32", tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in msg
    assert "clip_vit_b32.safetensors" in msg and str(tmp_path.resolve()) in msg
    assert WEIGHTS_ENV in msg and "metrics.weights_dir" in msg
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(EncoderUnavailable, match=str(WEIGHTS_DIR)):
        load_encoder("raft")
    with pytest.raises(ConfigError, match=r"encoder 'toy-clip': weights file toy_clip.safetensors not found in"):
        load_encoder("toy-clip", tmp_path)


def test_wrong_keys_and_shapes_are_one_line_naming_keys(tmp_path):
    model = tiny("dino-vitb16")
    state = model.export_state_dict()
    state["norm.gamma"] = state.pop("norm.weight")
    del state["cls_token"]
    save(model, tmp_path, state=state)
    with pytest.raises(EncoderWeightsError) as err:
        load_encoder("dino-vitb16", tmp_path, tiny=True)
    msg = str(err.value)
    assert "\n" not in msg and "2 missing keys: cls_token, norm.weight" in msg
    assert "1 unexpected keys: norm.gamma" in msg and "dino_vitb16.safetensors" in msg

    state = model.export_state_dict()
    state["pos_embed"] = state["pos_embed"][:, :3]
    save(model, tmp_path, state=state)
    with pytest.raises(EncoderWeightsError, match=r"pos_embed \(1, 3, 32\) vs \(1, 17, 32\)"):
        load_encoder("dino-vitb16", tmp_path, tiny=True)
    # A tiny file does not fit the full architecture either (checked before loading).
    with pytest.raises(EncoderWeightsError, match="another shape"):
        load_encoder("raft", _with(tmp_path, tiny("raft")))


def _with(folder, model):
    save(model, folder)
    return folder


def test_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "lpips_vgg.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderWeightsError) as err:
        load_encoder("lpips-vgg", tmp_path, tiny=True)
    assert "\n" not in str(err.value) and "cannot read weights file" in str(err.value)


def test_environment_variable_sets_the_weights_dir(tmp_path, monkeypatch):
    env, explicit = tmp_path / "env", tmp_path / "explicit"
    env.mkdir()
    explicit.mkdir()
    model = tiny("lpips-vgg")
    save(model, env)
    monkeypatch.setenv(WEIGHTS_ENV, str(env))
    assert find_weights("lpips-vgg") == env / "lpips_vgg.safetensors"
    assert load_encoder("lpips-vgg", tiny=True).weights_file == env / "lpips_vgg.safetensors"
    with pytest.raises(EncoderUnavailable, match=str(explicit)):  # a dir given is the only one
        load_encoder("lpips-vgg", explicit, tiny=True)
    # toy-clip falls back to the shipped weights when the env dir lacks it.
    toy = load_encoder("toy-clip")
    assert toy.weights_file == WEIGHTS_DIR / "toy_clip.safetensors"


def test_toy_clip_loads_the_shipped_weights_as_before(monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    model = load_encoder("toy-clip")
    assert isinstance(model, ToyClip) and model.weights_file == WEIGHTS_DIR / "toy_clip.safetensors"
    ref = ToyClip(ToyClipConfig())
    ref.load_state_dict(load_file(str(WEIGHTS_DIR / "toy_clip.safetensors")))
    for want, got in zip(outputs(ref), outputs(model), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def _real(name):
    try:
        find_weights(name)
    except EncoderUnavailable as err:
        pytest.skip(f"no real weights: {err}")
    return load_encoder(name)


@pytest.mark.parametrize("name", [n for n in WEIGHTED if n != "toy-clip"])
def test_real_weights(name):
    model = _real(name)
    assert model.weights_file is not None
    a = frames(2, 64, 64)
    if isinstance(model, Encoder):
        feats = model.encode_image(a)
        assert feats.shape == (2, model.dim) and torch.isfinite(feats).all()
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
        if name in TEXT:
            assert model.encode_text(PROMPTS).shape == (2, model.dim)
    if isinstance(model, PerceptualDistance):
        assert (model.distance(a, a) == 0).all() and (model.distance(a, frames(2, 64, 64, 1)) > 0).all()
    if isinstance(model, FlowModel):
        # A smooth texture moved 3 pixels right: the median flow in the interior is close to (3, 0).
        smooth = F.interpolate(frames(1, 32, 32), size=(128, 128), mode="bicubic").clamp(0, 1)
        flow = model.flow(smooth, torch.roll(smooth, 3, dims=-1))[0, :, 16:-16, 16:-16]
        assert abs(float(flow[0].median()) - 3) < 0.5 and abs(float(flow[1].median())) < 0.5
