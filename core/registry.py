"""One registry pattern for methods, backbones, metrics and encoders.

A registry maps a name to a class and the dataclass that configures it::

    METHODS = Registry("method")

    @METHODS.register("sink", config=SinkConfig)
    class Sink(CacheMethod): ...

``bench/config.py`` turns every registered config dataclass into a Hydra schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# A config field without a default (``name: str = MISSING``): the same string as omegaconf's
# marker, so Hydra's structured configs treat the field as required, while code that only builds
# configs from Python (the GPU check) needs no omegaconf.
MISSING: Any = "???"


class RegistryError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    config: type | None


class Registry:
    """Name -> (class, config dataclass), for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[type], type]:
        def add(cls: type) -> type:
            if name in self._entries and self._entries[name].cls is not cls:
                raise RegistryError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, cls, config)
            cls.registered_name = name
            return cls

        return add

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise RegistryError(
                f"{self.kind} {name!r} is not registered; allowed: {', '.join(self.names())}"
            )
        return self._entries[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name).cls(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())
