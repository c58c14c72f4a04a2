"""Command options as dataclasses (bench/cli_args.py): how field types become arguments, that
the same checks run from the command line and from code, and that every command but ``run``
(Hydra) declares its options this way."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import pytest

import bench.cli
from bench.cli_args import Options, option, parse
from core.errors import ConfigError, require
from core.paths import REPO_DIR


@dataclass
class Example(Options):
    """Every kind of field add_fields maps."""

    runs: str = option("runs", "a positional with a default", positional=True)
    count: int = option(3, "a bounded integer", minimum=1)
    ratio: float = option(0.5, "a float")
    mode: str = option("a", "a choice", choices=("a", "b"))
    names: tuple[str, ...] = option(("x", "y"), "a list")
    seconds: tuple[float, ...] = option((1.0,), "a typed list")
    pick: str | None = option(None, "optional; None means not given")
    picks: tuple[str, ...] | None = option(None, "an optional list", choices=("p", "q"))
    dry: bool = option(False, "a flag")
    zero: int = option(0, "a zero")
    out: str | None = option(None, "an output folder, checked writable", output="dir")

    def validate(self) -> None:
        require(self.ratio < self.count, "--ratio", self.ratio, f"allowed: < --count={self.count}")


@dataclass
class Extra:
    """A plain config dataclass parsed beside the options (checks in its own __post_init__)."""

    steps: int = 10

    def __post_init__(self) -> None:
        require(self.steps > 0, "--steps", self.steps, "allowed: > 0")


def test_defaults_are_the_dataclass_defaults():
    assert parse("prog", [], Example) == Example()


def test_each_field_kind_parses_to_its_type():
    got, extra = parse("prog", ["there", "--count", "7", "--ratio", "2.5", "--mode", "b", "--names", "u", "v", "w",
                                "--seconds", "5", "30", "--pick", "me", "--picks", "q", "p", "--dry", "--steps", "4"],
                       Example, Extra)
    assert got == Example(runs="there", count=7, ratio=2.5, mode="b", names=("u", "v", "w"), seconds=(5.0, 30.0),
                          pick="me", picks=("q", "p"), dry=True)
    assert isinstance(got.seconds[0], float) and isinstance(got.names, tuple) and extra == Extra(steps=4)


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count=0: allowed: >= 1"),
    (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
    (["--picks", "p", "z"], "argument --picks: invalid choice: 'z'"),
    (["--count", "many"], "argument --count: invalid int value: 'many'"),
    (["--seconds", "soon"], "argument --seconds: invalid float value: 'soon'"),
    (["--ratio", "5"], "--ratio=5.0: allowed: < --count=3"),
    (["--steps", "0"], "--steps=0: allowed: > 0"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["a", "b"], "unrecognized arguments: b"),
])
def test_bad_values_are_one_line_config_errors(argv, message):
    with pytest.raises(ConfigError) as info:
        parse("prog", argv, Example, Extra)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "--count=0: allowed: >= 1"),
    ({"mode": "c"}, "--mode='c': allowed: a, b"),
    ({"picks": ("p", "z")}, "--picks='z': allowed: p, q"),
    ({"ratio": 5.0}, "--ratio=5.0: allowed: < --count=3"),
])
def test_the_same_checks_run_when_built_in_code(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Example(**kwargs)


def test_an_output_path_is_checked_writable_from_either_side_and_nothing_is_created(tmp_path):
    (tmp_path / "afile").write_text("")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "below"):
        with pytest.raises(ConfigError, match=f"--out='{bad}'"):
            parse("prog", ["--out", str(bad)], Example)
        with pytest.raises(ConfigError, match=f"--out='{bad}'"):
            Example(out=str(bad))
    assert parse("prog", ["--out", str(tmp_path / "new")], Example).out == str(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    with pytest.raises(ConfigError, match="output='folder': allowed: dir, file"):
        option(None, output="folder")


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        parse("prog", ["--help"], Example, Extra)
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    for shown in ("a bounded integer (default: 3)", "a list (default: x y)", "a zero (default: 0)", "a flag", "--steps STEPS",
                  "optional; None means not given", "{a,b}"):
        assert shown in text, shown
    assert "None means not given (default" not in text  # None is not printed as a default


@pytest.mark.parametrize("command", sorted(set(bench.cli.COMMANDS) - {"run", "train"}) + ["train backbone",
                                                                                          "train encoder"])
def test_every_command_builds_its_options_and_answers_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        bench.cli.main([*command.split(), "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: forcebench {command}")


def test_no_command_declares_options_outside_dataclasses():
    """argparse is used in one place: every command's options are dataclass fields."""
    found = []
    for path in sorted((REPO_DIR / "bench").rglob("*.py")):
        if path.name == "cli_args.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("add_argument", "ArgumentParser", "parse_args"):
                found.append(f"{path.relative_to(REPO_DIR)}:{node.lineno} {node.attr}")
    assert not found, "\n".join(found)
