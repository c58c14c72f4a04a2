"""Finding, reading and checking local weights files; building and loading registered models.

Lookup: the directory given (argument or the ``metrics.weights_dir`` config key) and
nothing else; without one, ``$FORCEBENCH_WEIGHTS`` and then the shipped directory
bench/models/weights (which holds only ``toy_clip.safetensors``). In a directory the file
is ``<name with - as _>`` plus the first of .safetensors, .pt, .pth, .bin that exists,
else one of the model's published file names (``aliases``).

.pt/.pth/.bin files are read with ``torch.load(weights_only=True)``: a plain state dict,
or one under a "state_dict" or "model" key; a "module." prefix on every key is dropped.
Every failure is a one-line ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from core.errors import ConfigError
from core.paths import REPO_DIR
from metrics.encoders.base import ENCODERS, FeatureModel

WEIGHTS_ENV = "FORCEBENCH_WEIGHTS"
WEIGHTS_DIR = REPO_DIR / "bench" / "models" / "weights"
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


class EncoderUnavailable(ConfigError):
    """The weights file of a registered model is in none of the directories searched."""


class EncoderWeightsError(ConfigError):
    """A weights file that cannot be read or does not fit the model's architecture."""


def weights_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """Directories searched, in order: ``weights_dir`` alone if given, else
    $FORCEBENCH_WEIGHTS (if set) and the shipped directory."""
    if weights_dir:
        return [Path(weights_dir)]
    env = os.environ.get(WEIGHTS_ENV)
    return ([Path(env)] if env else []) + [WEIGHTS_DIR]


def file_stem(name: str) -> str:
    """'clip-vit-b32' -> 'clip_vit_b32'."""
    return name.replace("-", "_")


def find_weights(name: str, weights_dir: str | Path | None = None) -> Path:
    """The weights file of encoder ``name``; EncoderUnavailable if there is none."""
    entry = ENCODERS.get(name)
    stem, aliases = file_stem(name), getattr(entry.cls, "aliases", ())
    dirs = weights_dirs(weights_dir)
    for folder in dirs:
        for candidate in [stem + s for s in SUFFIXES] + list(aliases):
            if (folder / candidate).is_file():
                return folder / candidate
    where = " or ".join(str(d.resolve()) for d in dirs)
    raise EncoderUnavailable(
        f"encoder {name!r}: weights file {stem}.safetensors not found in {where} "
        f"(also tried {', '.join(SUFFIXES[1:] + tuple(aliases))}); "
        f"set {WEIGHTS_ENV} or metrics.weights_dir to the directory that holds it")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_state_dict(file: str | Path, name: str = "?") -> dict[str, torch.Tensor]:
    """A weights file -> {key: tensor} on the CPU (module doc for the formats accepted)."""
    file = Path(file)
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(file))
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure becomes the one-line error
        raise EncoderWeightsError(
            f"encoder {name!r}: cannot read weights file {file}: {_first_line(err)} "
            "(expected a safetensors file or a state dict saved with torch.save)") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        top = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise EncoderWeightsError(f"encoder {name!r}: weights file {file} holds no state dict (top level: {top})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_state_dict(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                     name: str, file: str | Path) -> None:
    """One-line EncoderWeightsError naming the first missing, unexpected or misshapen keys."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
    if misshapen:
        problems.append(f"{len(misshapen)} keys of another shape (file vs model): {_few(misshapen)}")
    if problems:
        raise EncoderWeightsError(
            f"encoder {name!r}: weights file {file} does not fit the architecture: " + "; ".join(problems))


def build_encoder(name: str, tiny: bool = False, **overrides) -> FeatureModel:
    """The registered model ``name`` with random weights (no file is read), in eval mode.

    tiny: a small random configuration of the same architecture, for tests (a no-op for
    models that are small already, such as toy-clip); overrides: fields of the model's
    config dataclass.
    """
    entry = ENCODERS.get(name)
    fields = {f.name for f in dataclasses.fields(entry.config)} if entry.config else set()
    if tiny and "tiny" in fields:
        overrides["tiny"] = True
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"encoder {name!r}: unknown config fields {unknown}; allowed: {sorted(fields)}")
    model = entry.cls(entry.config(**overrides)) if entry.config else entry.cls()
    return model.eval()


def load_encoder(name: str, weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
                 *, tiny: bool = False, **overrides) -> FeatureModel:
    """Build ``name`` and load its weights file (module doc for the lookup); eval mode,
    no gradients, on ``device``. ``tiny``/``overrides`` as in ``build_encoder`` (a tiny
    model loads a tiny model's file under the same file name)."""
    entry = ENCODERS.get(name)
    file = find_weights(name, weights_dir) if getattr(entry.cls, "needs_weights", True) else None
    model = build_encoder(name, tiny, **overrides)
    if file is not None:
        state = model.adapt_state_dict(read_state_dict(file, name))
        check_state_dict(model.export_state_dict(), state, name, file)
        model.import_state_dict(state)
        model.weights_file = file
    model.requires_grad_(False)
    return model.to(device).eval()
