"""Command-line options: a parser whose usage errors are one line, options from dataclass
fields (training, profiling and evaluation commands), and ``key=value`` overrides of a
dataclass (``train backbone --model dim=64``)."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any, NoReturn

from core.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (unknown options, values of the wrong type,
    missing arguments) are one-line ConfigErrors, exit status 2 through the CLI."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}; see {self.prog} --help")


def add_fields(parser: argparse.ArgumentParser, *classes: type) -> None:
    """``--field-name`` for every field of every dataclass, typed and defaulted like the field."""
    for cls in classes:
        for f in fields(cls):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)


def build(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls`` from the parsed options."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def parse_overrides(pairs: list[str], cls: type, option: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``["key=value", ...]`` -> {field: value typed like the field's default} for the fields of
    the dataclass ``cls`` that have a number or string default (not those in ``exclude``)."""
    typed = {f.name: type(f.default) for f in fields(cls)
             if f.default is not MISSING and isinstance(f.default, (int, float, str)) and f.name not in exclude}
    typed = {k: t for k, t in typed.items() if t is not bool}
    allowed = f"allowed: key=value with key one of {', '.join(typed)}"
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in typed:
            raise ConfigError(f"{option} {pair!r}: {'unknown key ' + repr(key) + '; ' if sep else ''}{allowed}")
        try:
            out[key] = typed[key](text)
        except ValueError:
            raise ConfigError(f"{option} {pair!r}: {key} takes {typed[key].__name__} values; {allowed}") from None
    return out
