"""The one error type for bad user input: a single line naming the key, the value and what is allowed."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """Bad configuration or input, reported as one line before any work is done."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError("key=value: allowed")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r}: {allowed}")
