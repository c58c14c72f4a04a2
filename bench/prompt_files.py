"""Prompt set files for real backbones (``prompts.file``).

Two formats:
- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped; the
  id of the prompt on line n is ``line<n>`` (1-based), so ids stay stable when prompts
  are appended.
- ``.yaml`` / ``.yml``: a list whose items are a prompt string (id ``item<i>``), or a mapping
  ``{id, text}`` or ``{id, schedule: [{at, text}, ...]}`` (a multi-prompt schedule, the
  same format as the toy sets), with an optional ``split``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.errors import ConfigError
from bench.models.base import existing_file

SUFFIXES = (".txt", ".yaml", ".yml")


def read_prompt_file(path: str) -> list[dict]:
    """Entries as dicts (id, text | schedule, split) for PromptEntry."""
    file = existing_file(path, "prompts.file")
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"prompts.file={path!r}: unknown format; allowed suffixes: {', '.join(SUFFIXES)}")
    entries = _from_text(file) if file.suffix == ".txt" else _from_yaml(file, path)
    if not entries:
        raise ConfigError(f"prompts.file={path!r}: no prompts in the file")
    return entries


def _from_text(file: Path) -> list[dict]:
    entries = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            entries.append({"id": f"line{n}", "text": text})
    return entries


def _from_yaml(file: Path, path: str) -> list[dict]:
    try:
        items = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"prompts.file={path!r}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(items, list):
        raise ConfigError(f"prompts.file={path!r}: expected a list of prompts, got {type(items).__name__}")
    entries = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            entries.append({"id": f"item{i}", "text": item})
        elif isinstance(item, dict) and "id" in item and ("text" in item or "schedule" in item):
            unknown = sorted(set(item) - {"id", "text", "schedule", "split"})
            if unknown:
                raise ConfigError(f"prompts.file={path!r}: item {i} has unknown keys {unknown}; "
                                  f"allowed: id, text, schedule, split")
            entries.append(dict(item))
        else:
            raise ConfigError(f"prompts.file={path!r}: item {i} must be a string or a mapping with id and "
                              f"text or schedule; got {item!r}")
    return entries
