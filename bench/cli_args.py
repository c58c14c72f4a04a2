"""Command-line options as dataclasses, one way for every command but ``run`` (Hydra).

A command declares its options as a dataclass deriving from ``Options``; each field is an
option (``--field-name``), typed and defaulted like the field, with what ``option()`` adds:
a help text, allowed choices, a lower bound, a positional argument, and for an output path
(``output="dir"`` or ``"file"``) the check that it can be written (bench/input_checks.py;
nothing is created). Field types map to
argparse so:

    int / float / str       --name VALUE                     (type converted, argparse's error)
    bool (default False)    --name                           (a flag)
    X | None                --name VALUE, default None       ("not given")
    tuple[X, ...]           --name V [V ...] (nargs "+", or the option's nargs)

``parse(prog, argv, Options, *configs)`` builds the parser from the classes, parses ``argv``
and returns their instances; constructing them runs the same checks as constructing them in
code (``Options.__post_init__``: choices and bounds from the field metadata, then the class's
own ``validate``). Plain config dataclasses (a trainer's, a profiler's) take part the same
way through their own ``__post_init__``. Every usage error and every failed check is one
ConfigError line, exit status 2 through the CLI. ``parse_overrides`` reads ``key=value`` pairs
onto a dataclass (``train backbone --model dim=64``).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, NoReturn, Union, get_args, get_origin, get_type_hints

from bench.input_checks import writable_dir, writable_file
from core.errors import ConfigError, require


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (unknown options, values of the wrong type,
    missing arguments) are one-line ConfigErrors, exit status 2 through the CLI."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}; see {self.prog} --help")


OUTPUT_CHECKS = {"dir": writable_dir, "file": writable_file}


def option(default: Any = MISSING, help: str = "", *, choices: Sequence[Any] | None = None,
           minimum: float | None = None, positional: bool = False, nargs: str | None = None,
           metavar: str | None = None, output: str | None = None) -> Any:
    """A dataclass field that is also a command-line option (module docstring). ``minimum``
    is an inclusive lower bound; ``nargs`` overrides "+" of a tuple field (e.g. "*");
    ``output`` ("dir" or "file") marks a path the command writes."""
    require(output in (None, *OUTPUT_CHECKS), "output", output, f"allowed: {', '.join(OUTPUT_CHECKS)}")
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "minimum": minimum,
            "positional": positional, "nargs": nargs, "metavar": metavar, "output": output}
    return field(default=default, metadata=meta)


def flag_name(f: Field) -> str:
    """How the field is written on the command line: ``--field-name``, or ``field`` if positional."""
    return f.name if f.metadata.get("positional") else f"--{f.name.replace('_', '-')}"


@dataclass
class Options:
    """Base of a command's options: the field metadata's choices, bounds and output paths are
    checked on construction, then ``validate`` (checks across fields), each failure one ConfigError."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not f.init:  # derived in validate
                continue
            value, choices, minimum = getattr(self, f.name), f.metadata.get("choices"), f.metadata.get("minimum")
            values = value if isinstance(value, (tuple, list)) else (value,)
            for v in values if value is not None else ():
                if choices is not None:
                    require(v in choices, flag_name(f), v, f"allowed: {', '.join(map(str, choices))}")
                if minimum is not None:
                    require(v >= minimum, flag_name(f), v, f"allowed: >= {minimum:g}")
            if value is not None and f.metadata.get("output"):
                OUTPUT_CHECKS[f.metadata["output"]](value, flag_name(f))
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields (one-line ConfigError); none by default."""


def field_kind(hint: Any) -> tuple[type, bool]:
    """A field's annotation -> (the type of one value, is it a sequence?); ``X | None`` -> X."""
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) in (tuple, list):
        return get_args(hint)[0], True
    return hint, False


def _default_text(default: Any) -> str:
    if isinstance(default, (tuple, list)):
        return " ".join(map(str, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


def add_fields(parser: argparse.ArgumentParser, *classes: type) -> None:
    """An argument for every init field of every dataclass (module docstring for the mapping)."""
    for cls in classes:
        hints = get_type_hints(cls)
        for f in fields(cls):
            if not f.init:
                continue
            kind, many = field_kind(hints[f.name])
            meta, default = f.metadata, f.default
            text = meta.get("help", "")
            if not any(default is empty for empty in (MISSING, None, False)) and default != ():
                text = f"{text} (default: {_default_text(default)})".strip()
            kw: dict[str, Any] = {"help": text or None}
            if kind is bool and not many:
                parser.add_argument(flag_name(f), action="store_true" if not default else argparse.BooleanOptionalAction,
                                    default=bool(default), **kw)
                continue
            kw["type"] = kind
            if meta.get("choices") is not None:
                kw["choices"] = meta["choices"]
            if meta.get("metavar"):
                kw["metavar"] = meta["metavar"]
            if many:
                kw["nargs"] = meta.get("nargs") or "+"
            if meta.get("positional"):
                if default is not MISSING:
                    kw.setdefault("nargs", "?")
                    kw["default"] = default
                parser.add_argument(f.name, **kw)
            else:
                parser.add_argument(flag_name(f), default=None if default is MISSING else default,
                                    required=default is MISSING, **kw)


def build(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls`` from the parsed options (sequences as tuples)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.init}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def parse(prog: str, argv: Sequence[str] | None, *classes: type, description: str = "") -> Any:
    """Parse ``argv`` into instances of ``classes`` (one: the instance; several: a tuple)."""
    parser = Parser(prog=prog, description=description or None)
    add_fields(parser, *classes)
    args = parser.parse_args(None if argv is None else list(argv))
    built = tuple(build(cls, args) for cls in classes)
    return built[0] if len(built) == 1 else built


def error_line(prog: str, err: ConfigError) -> str:
    """The one stderr line of a bad input to a command run on its own (``python -m ...``): the
    parser's errors already start with the program's name, the checks' do not."""
    text = str(err)
    return text if text.startswith(f"{prog}: ") else f"{prog}: {text}"


def parse_overrides(pairs: Sequence[str], cls: type, flag: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
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
            raise ConfigError(f"{flag} {pair!r}: {'unknown key ' + repr(key) + '; ' if sep else ''}{allowed}")
        try:
            out[key] = typed[key](text)
        except ValueError:
            raise ConfigError(f"{flag} {pair!r}: {key} takes {typed[key].__name__} values; {allowed}") from None
    return out
