"""Command-line options from dataclass fields (training, profiling and evaluation commands)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any


def add_fields(parser: argparse.ArgumentParser, *classes: type) -> None:
    """``--field-name`` for every field of every dataclass, typed and defaulted like the field."""
    for cls in classes:
        for f in fields(cls):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)


def build(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls`` from the parsed options."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
