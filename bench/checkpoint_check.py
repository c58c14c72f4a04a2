"""Model checkpoints checked from their safetensors headers, without reading the weights.

A safetensors file starts with a JSON header naming every tensor with its dtype, shape and
byte range; ``safe_open`` parses it and checks that the ranges cover the file. That finds
an empty, truncated, corrupt or random-bytes file at once. When the backbone says which
tensors a checkpoint must hold exactly (``ModelConfig.checkpoint_state``), names, shapes and
dtypes are compared as well. Every failure is one line naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from core.errors import ConfigError

# safetensors dtype names -> torch names (for messages); floating-point ones may fill float tensors
DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
               "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
Header = dict[str, tuple[tuple[int, ...], str]]  # tensor name -> (shape, safetensors dtype)


def read_header(file: Path, key: str, shown: str) -> Header:
    """Names, shapes and dtypes of a safetensors file; one-line ConfigError when it is not one."""
    try:
        size = file.stat().st_size
    except OSError as err:
        raise ConfigError(f"{key}={shown!r}: cannot be read ({err.strerror or type(err).__name__})") from None
    if size == 0:
        raise ConfigError(f"{key}={shown!r}: empty file; allowed: a safetensors checkpoint")
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = {}
            for name in handle.keys():
                tensor = handle.get_slice(name)
                header[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
            return header
    except (SafetensorError, OSError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{key}={shown!r}: not a valid safetensors file ({reason}); "
                          "allowed: a safetensors checkpoint, complete and uncorrupted") from None


def compare(header: Header, expected: dict[str, torch.Tensor], key: str, shown: str) -> None:
    """Every expected tensor present with its shape and a usable dtype, nothing else."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ConfigError(f"{key}={shown!r} does not match the architecture: missing keys {missing[:5]}, "
                          f"unexpected keys {unexpected[:5]}")
    for name, tensor in expected.items():
        shape, dtype = header[name]
        if shape != tuple(tensor.shape):
            raise ConfigError(f"{key}={shown!r}: {name} has shape {shape}, the model expects {tuple(tensor.shape)}")
        usable = dtype in FLOAT_DTYPES if tensor.is_floating_point() else DTYPE_NAMES.get(dtype) == str(
            tensor.dtype).removeprefix("torch.")
        if not usable:
            allowed = ", ".join(DTYPE_NAMES[d] for d in FLOAT_DTYPES) if tensor.is_floating_point() else tensor.dtype
            raise ConfigError(f"{key}={shown!r}: {name} has dtype {DTYPE_NAMES.get(dtype, dtype)}; allowed: {allowed}")


def safetensors_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder (or of its ``transformer/`` subfolder)."""
    if (folder / "transformer").is_dir():
        folder = folder / "transformer"
    return sorted(folder.glob("*.safetensors"))


def check_checkpoint(file: Path, key: str, shown: str, expected: dict[str, torch.Tensor] | None = None) -> None:
    """Check the checkpoint at ``file`` (an existing path) from its header(s).

    expected: the tensors it must hold exactly (the file is then read as safetensors whatever
    its suffix); None: only safetensors files (the file itself, or those of a folder) have
    their headers checked, other formats are left to the loader."""
    if file.is_dir():
        for part in safetensors_files(file):
            read_header(part, key, f"{shown}/{part.name}")
        return
    if expected is None and file.suffix != ".safetensors":
        return
    header = read_header(file, key, shown)
    if expected is not None:
        compare(header, expected, key, shown)
