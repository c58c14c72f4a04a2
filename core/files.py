"""Atomic file writes (write to a temporary name, fsync, rename) and the one reader of JSON-object files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json_object(path: Path) -> dict | None:
    """A JSON object file (summary, failure record, meta) as a dict; None when missing,
    unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_staging(path: Path) -> bool:
    """A staging or replaced directory (``<run>.tmp-<pid>`` / ``<run>.old-<pid>``), never a result."""
    return ".tmp-" in path.name or ".old-" in path.name
