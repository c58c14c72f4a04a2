"""The tolerance file of ``forcebench regress`` (``conf/regress/<name>.yaml``), read and checked.

Keys: ``default`` and ``metrics`` (per-metric ``{abs, rel}`` entries, exact keys or ``*``
patterns), ``skip`` (metric patterns left out of the check) and ``sweep`` (the
``forcebench run -m`` overrides that the reference covers).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.paths import read_text

CONFIG_KEYS = ("default", "metrics", "skip", "sweep")
TOLERANCE_KEYS = ("abs", "rel")
DEFAULT_NAME = "toy_ci"


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation: ``max(abs, rel * |reference|)``."""

    abs: float = 0.0
    rel: float = 0.0

    def allowed(self, reference: float) -> float:
        return max(self.abs, self.rel * abs(reference))

    def __str__(self) -> str:
        parts = [f"{k} {getattr(self, k):g}" for k in TOLERANCE_KEYS if getattr(self, k)]
        return ", ".join(parts) or "exact"


def _pattern(text: str) -> re.Pattern:
    """``*`` matches any run of characters; everything else (brackets included) is literal."""
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


@dataclass
class Tolerances:
    """A tolerance file: default, per-metric entries (exact keys or ``*`` patterns), skips, sweep."""

    path: str
    default: Tolerance = Tolerance()
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    sweep: tuple[str, ...] = ()

    def for_metric(self, metric: str) -> Tolerance:
        """The exact entry, else the first pattern (in file order) that matches, else the default."""
        if metric in self.metrics:
            return self.metrics[metric]
        for pattern, tol in self.metrics.items():
            if "*" in pattern and _pattern(pattern).fullmatch(metric):
                return tol
        return self.default

    def skipped(self, metric: str) -> bool:
        return any(_pattern(p).fullmatch(metric) for p in self.skip)

    def unmatched(self, metrics: set[str]) -> list[str]:
        """Entries of ``metrics:`` and ``skip:`` that match none of ``metrics`` (likely typos)."""
        return [p for p in (*self.metrics, *self.skip) if not any(_pattern(p).fullmatch(m) for m in metrics)]


def _number(path: str, key: str, value) -> float:
    if isinstance(value, bool):
        value = None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number >= 0 or math.isinf(number):
        raise ConfigError(f"{path}: {key}={value!r}: not a tolerance; allowed: a number >= 0")
    return number


def _tolerance(path: str, key: str, entry) -> Tolerance:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {key}={entry!r}: not a mapping; allowed: {{abs: X, rel: Y}}")
    for name in entry:
        if name not in TOLERANCE_KEYS:
            raise ConfigError(f"{path}: {key}.{name}: unknown key; allowed: {', '.join(TOLERANCE_KEYS)}")
    return Tolerance(**{name: _number(path, f"{key}.{name}", v) for name, v in entry.items()})


def _strings(path: str, key: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path}: {key}={value!r}: allowed: a list of strings")
    return tuple(value)


def load_tolerances(path: Path) -> Tolerances:
    """Read and check a tolerance file; any bad key or value is a one-line ConfigError."""
    name = shown_path(path)
    if not Path(path).exists():
        raise ConfigError(f"tolerances={name!r}: no such file; allowed: a YAML file such as "
                          f"conf/regress/{DEFAULT_NAME}.yaml")
    try:
        data = yaml.safe_load(read_text(path, "tolerances"))
    except yaml.YAMLError as err:
        raise ConfigError(f"tolerances={name!r}: not valid YAML ({str(err).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"tolerances={name!r}: not a mapping; allowed keys: {', '.join(CONFIG_KEYS)}")
    for key in data:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"{name}: {key}: unknown key; allowed: {', '.join(CONFIG_KEYS)}")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ConfigError(f"{name}: metrics={metrics!r}: allowed: a mapping of metric key -> {{abs: X, rel: Y}}")
    return Tolerances(
        path=name,
        default=_tolerance(name, "default", data["default"]) if data.get("default") is not None else Tolerance(),
        metrics={str(k): _tolerance(name, f"metrics.{k}", v) for k, v in metrics.items()},
        skip=_strings(name, "skip", data.get("skip")),
        sweep=_strings(name, "sweep", data.get("sweep")),
    )


def shown_path(path: Path | str) -> str:
    """A path as typed, or relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel
