"""Load a prompt set from conf/prompts/ outside of a Hydra run (training, evaluation)."""

from __future__ import annotations

from omegaconf import OmegaConf

from bench.config import CONF_DIR, PromptSetConfig
from core.errors import ConfigError


def load_prompt_set(name: str) -> PromptSetConfig:
    file = CONF_DIR / "prompts" / f"{name}.yaml"
    if not file.is_file():
        options = sorted(p.stem for p in file.parent.glob("*.yaml"))
        raise ConfigError(f"prompts={name!r}: no such prompt set; allowed: {', '.join(options)}")
    merged = OmegaConf.merge(OmegaConf.structured(PromptSetConfig), OmegaConf.load(file))
    return OmegaConf.to_object(merged)
