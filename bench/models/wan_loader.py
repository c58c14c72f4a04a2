"""Wan2.1 DiT checkpoints from local files, mapped onto forcebench's module.

forcebench's Wan module (bench/models/wan.py) uses the parameter names of the original
Wan2.1 code (``blocks.N.self_attn.q.weight``, ``head.modulation``, ...), so three layouts
load:

- Wan original / Self Forcing / CausVid: a ``.pt`` / ``.pth`` / ``.safetensors`` file,
  possibly nested under ``generator_ema``, ``generator``, ``model``, ``state_dict`` or
  ``module`` and with a ``model.`` (or ``module.``, ``diffusion_model.``,
  ``_orig_mod.``) prefix on every key.
- diffusers ``WanTransformer3DModel``: a folder with ``config.json`` and
  ``diffusion_pytorch_model.safetensors`` (or shards listed in
  ``diffusion_pytorch_model.safetensors.index.json``); a pipeline folder with a
  ``transformer/`` subfolder works too. Keys are renamed to the Wan names.

Every key must be used and every parameter filled; the first missing or unexpected keys
are reported in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from core.errors import ConfigError
from core.paths import existing_path

NESTED_KEYS = ("generator_ema", "generator", "model", "state_dict", "module")
PREFIXES = ("model.", "module.", "diffusion_model.", "_orig_mod.")
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"

# diffusers name -> Wan name, applied in order (the two layouts swap norm2 / norm3: Wan's
# affine cross-attention norm is norm3, diffusers' is norm2; the FFN norm has no weights).
DIFFUSERS_TO_WAN = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^(blocks\.\d+)\.attn1\.", r"\1.self_attn."),
    (r"^(blocks\.\d+)\.attn2\.", r"\1.cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
]


def diffusers_to_wan(name: str) -> str:
    for pattern, repl in DIFFUSERS_TO_WAN:
        name = re.sub(pattern, repl, name)
    return name


def _read_file(file: Path, key: str) -> dict:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    try:
        try:  # memory-mapped: a Self Forcing file holds two 1.3B-parameter copies
            return torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files of the legacy (non-zip) format cannot be mapped
            return torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with objects, a truncated file, ...
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}={str(file)!r}: cannot be read as a tensor checkpoint ({msg})") from None


def _read_diffusers(folder: Path, key: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (folder / "transformer").is_dir():
        folder = folder / "transformer"
    index = folder / f"{DIFFUSERS_WEIGHTS}.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / DIFFUSERS_WEIGHTS).is_file():
        shards = [DIFFUSERS_WEIGHTS]
    else:
        raise ConfigError(f"{key}={str(folder)!r}: a folder needs {DIFFUSERS_WEIGHTS} or its .index.json "
                          f"(diffusers WanTransformer3DModel layout)")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(str(folder / shard)))
    return {diffusers_to_wan(k): v for k, v in state.items()}


def _unwrap(obj: dict, path: str, key: str, nested_key: str | None) -> dict[str, torch.Tensor]:
    """Descend into a Self Forcing / CausVid style wrapper down to the flat tensor dict."""
    if nested_key is not None:
        if nested_key not in obj:
            raise ConfigError(f"model.checkpoint_key={nested_key!r} is not in {key}={path!r}; "
                              f"top-level keys: {sorted(obj)[:8]}")
        obj = obj[nested_key]
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((k for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise ConfigError(f"{key}={path!r}: no tensor dict found; top-level keys {sorted(obj)[:8]}, "
                              f"expected one of {list(NESTED_KEYS)} or parameter names")
        obj = obj[inner]
    state = dict(obj)
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def read_state_dict(path: str, key: str = "model.checkpoint", nested_key: str | None = None
                    ) -> dict[str, torch.Tensor]:
    """Any supported checkpoint at ``path`` -> {Wan parameter name: tensor}."""
    file = existing_path(path, key, "file or folder")
    if file.is_dir():
        return _read_diffusers(file, key)
    state = _unwrap(_read_file(file, key), path, key, nested_key)
    if any(k.startswith(("condition_embedder.", "proj_out.")) for k in state):
        state = {diffusers_to_wan(k): v for k, v in state.items()}  # a single diffusers file
    return state


def load_wan_checkpoint(module: nn.Module, path: str, key: str = "model.checkpoint",
                        nested_key: str | None = None) -> None:
    """Fill every parameter of ``module`` from ``path``; every checkpoint key must be used."""
    state = read_state_dict(path, key, nested_key)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ConfigError(
            f"{key}={path!r} does not match the Wan architecture: "
            f"missing keys {missing[:3]} ({len(missing)} in all), "
            f"unexpected keys {unexpected[:3]} ({len(unexpected)} in all)"
        )
    for k, tensor in own.items():
        if tensor.shape != state[k].shape:
            raise ConfigError(f"{key}={path!r}: {k} has shape {tuple(state[k].shape)}, "
                              f"the model expects {tuple(tensor.shape)} (check the model sizes)")
    with torch.no_grad():
        for k, tensor in own.items():
            tensor.copy_(state[k])
