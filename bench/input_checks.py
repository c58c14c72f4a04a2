"""Checks of user input shared by every command: identifiers that become file names,
directories and files a command will write, and files that must be text.

Each check raises a one-line ``ConfigError`` naming the key, the value and what is
allowed, and none of them creates or changes anything on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from core.errors import require

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_ID_CHARS = 100
ID_RULE = (f"allowed: letters, digits, '_', '.' and '-', starting with a letter or digit, without '..', "
           f"at most {MAX_ID_CHARS} characters")


def check_id(value: Any, key: str) -> str:
    """An identifier that becomes part of a file name (a prompt id): ``ID_PATTERN``, no ``..``."""
    ok = (isinstance(value, str) and len(value) <= MAX_ID_CHARS and ID_PATTERN.fullmatch(value) is not None
          and ".." not in value)
    require(ok, key, value, ID_RULE)
    return value


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (absolute)."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def writable_dir(path: Any, key: str) -> Path:
    """A directory a command creates or writes into: a non-empty path that is a directory or
    does not exist yet, below a writable directory. Nothing is created."""
    text = "" if path is None else str(path)
    require(text.strip() != "", key, text, "allowed: a directory path (empty given)")
    folder = Path(text).expanduser()
    require(not folder.exists() or folder.is_dir(), key, text,
            "exists and is not a directory; allowed: a directory, existing or new")
    probe = _nearest_existing(folder)
    require(probe.is_dir(), key, text, f"{probe} is a file, not a directory; allowed: a path below directories")
    require(os.access(probe, os.W_OK | os.X_OK), key, text,
            f"{probe} is not writable; allowed: a directory this user can write to")
    return folder


def writable_file(path: Any, key: str) -> Path:
    """A file a command creates or replaces: not a directory, in a directory it can write."""
    text = "" if path is None else str(path)
    require(text.strip() != "", key, text, "allowed: a file path (empty given)")
    file = Path(text).expanduser()
    require(not file.is_dir(), key, text, "is a directory; allowed: a file path")
    probe = _nearest_existing(file.parent)
    require(probe.is_dir(), key, text, f"{probe} is a file, not a directory; allowed: a path below directories")
    require(os.access(probe, os.W_OK | os.X_OK), key, text,
            f"{probe} is not writable; allowed: a directory this user can write to")
    return file


