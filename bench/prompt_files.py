"""Prompt set files for real backbones (``prompts.file``).

Two formats:
- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped; the
  id of the prompt on line n is ``line<n>`` (1-based), so ids stay stable when prompts
  are appended.
- ``.yaml`` / ``.yml``: a list whose items are a prompt string (id ``item<i>``), or a mapping
  ``{id, text}`` or ``{id, schedule: [{at, text}, ...]}`` (a multi-prompt schedule, the
  same format as the toy sets), with an optional ``split``.

Ids must be safe as parts of file names (bench/input_checks.py, checked by PromptEntry);
binary content and malformed items are one-line errors.
"""

from __future__ import annotations

import yaml

from core.errors import ConfigError
from core.paths import existing_file, read_text

SUFFIXES = (".txt", ".yaml", ".yml")
ITEM_KEYS = ("id", "text", "schedule", "split")
STEP_KEYS = ("at", "text")


def read_prompt_file(path: str) -> list[dict]:
    """Entries as dicts (id, text | schedule, split) for PromptEntry."""
    file = existing_file(path, "prompts.file")
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"prompts.file={path!r}: unknown format; allowed suffixes: {', '.join(SUFFIXES)}")
    text = read_text(file, "prompts.file")
    entries = _from_text(text) if file.suffix == ".txt" else _from_yaml(text, path)
    if not entries:
        raise ConfigError(f"prompts.file={path!r}: no prompts in the file")
    return entries


def _from_text(content: str) -> list[dict]:
    entries = []
    for n, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            entries.append({"id": f"line{n}", "text": text})
    return entries


def _from_yaml(content: str, path: str) -> list[dict]:
    try:
        items = yaml.safe_load(content)
    except yaml.YAMLError as err:
        raise ConfigError(f"prompts.file={path!r}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(items, list):
        raise ConfigError(f"prompts.file={path!r}: expected a list of prompts, got {type(items).__name__}")
    entries = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            entries.append({"id": f"item{i}", "text": item})
        elif isinstance(item, dict) and "id" in item and ("text" in item or "schedule" in item):
            unknown = sorted(set(item) - set(ITEM_KEYS), key=str)
            if unknown:
                raise ConfigError(f"prompts.file={path!r}: item {i} has unknown keys {unknown}; "
                                  f"allowed: {', '.join(ITEM_KEYS)}")
            _check_schedule(item.get("schedule"), path, i)
            entries.append(dict(item))
        else:
            raise ConfigError(f"prompts.file={path!r}: item {i} must be a string or a mapping with id and "
                              f"text or schedule; got {item!r}")
    return entries


def _check_schedule(schedule: object, path: str, i: int) -> None:
    """A schedule is a list of ``{at: seconds, text: prompt}`` mappings (or absent)."""
    if schedule is None:
        return
    steps = schedule if isinstance(schedule, list) else [schedule]
    for step in steps:
        ok = (isinstance(schedule, list) and isinstance(step, dict) and set(step) <= set(STEP_KEYS)
              and "text" in step and isinstance(step.get("at", 0), (int, float))
              and not isinstance(step.get("at", 0), bool))
        if not ok:
            raise ConfigError(f"prompts.file={path!r}: item {i} has schedule step {step!r}; allowed: a list of "
                              f"{{at: seconds, text: prompt}} mappings")
