"""Where things are: the repository root, user paths resolved against it, and checked reads of user files."""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError

REPO_DIR = Path(__file__).resolve().parents[1]


def resolve_path(path: str) -> Path:
    """A user path; a relative one not found from the working directory is tried from the repository root."""
    file = Path(path).expanduser()
    if not file.is_absolute() and not file.exists() and (REPO_DIR / file).exists():
        return REPO_DIR / file
    return file


PATH_KINDS = {"file": Path.is_file, "folder": Path.is_dir, "file or folder": Path.exists}


def existing_path(path: str, key: str, kind: str = "file") -> Path:
    """``resolve_path(path)`` that is a ``kind`` (file, folder, or file or folder), or a
    one-line ConfigError naming ``key`` and where it looked."""
    found = resolve_path(path)
    if not PATH_KINDS[kind](found):
        raise ConfigError(f"{key}={path!r}: {kind} not found (looked at {found.resolve()})")
    return found


def existing_file(path: str, key: str) -> Path:
    """``existing_path`` for a file."""
    return existing_path(path, key, "file")


def read_text(path: Path | str, key: str) -> str:
    """A file's UTF-8 text; a missing file, a folder, binary content or an unreadable file
    is a one-line ConfigError naming ``key`` and the path."""
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{key}={shown!r}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{key}={shown!r}: is a directory; allowed: a text file") from None
    except OSError as err:
        raise ConfigError(f"{key}={shown!r}: cannot be read ({err.strerror or type(err).__name__})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ConfigError(f"{key}={shown!r}: binary content, not UTF-8 text; allowed: a text file")
    return text
